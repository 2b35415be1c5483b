"""The record locator: which member (custodian) holds which document for which patient record.

An entry is registered by reference (the content stays at the custodian, which the node calls
to retrieve it) or by value (the content is kept in the node's document storage). Entries hang
off the custodian's own PatientRecord, so they follow the record through merges and splits.
"""

from django.db import models
from django.db.models import Q


class DocumentStatus(models.TextChoices):
    # DocumentReference.status
    CURRENT = "current"
    SUPERSEDED = "superseded"
    ENTERED_IN_ERROR = "entered-in-error"


class DocumentEntry(models.Model):
    custodian = models.ForeignKey("orgs.Organization", on_delete=models.PROTECT, related_name="document_entries")
    record = models.ForeignKey("matching.PatientRecord", on_delete=models.PROTECT, related_name="document_entries")
    # DocumentReference.masterIdentifier: unique per custodian, what makes a repeated submission idempotent
    master_system = models.CharField(max_length=255)
    master_value = models.CharField(max_length=255)
    submission_set = models.CharField(max_length=255, blank=True, help_text="SubmissionSet (List) identifier")
    status = models.CharField(max_length=20, choices=DocumentStatus.choices, default=DocumentStatus.CURRENT)
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by")
    # Searchable metadata (codes as "system|code")
    type_code = models.CharField(max_length=255, blank=True)
    categories = models.JSONField(default=list, blank=True)
    date = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    creation = models.DateTimeField(null=True, blank=True)
    author_given = models.JSONField(default=list, blank=True)
    author_family = models.JSONField(default=list, blank=True)
    facility = models.CharField(max_length=255, blank=True)
    events = models.JSONField(default=list, blank=True)
    setting = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=255, blank=True)
    security_labels = models.JSONField(default=list, blank=True, help_text="Codes, e.g. N, R, PSY, 42CFRPart2")
    related = models.JSONField(default=list, blank=True, help_text="context.related identifiers, 'system|value'")
    # The content
    content_type = models.CharField(max_length=120)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha1 = models.CharField(max_length=40, blank=True, help_text="hex")
    sha256 = models.CharField(max_length=64, blank=True, help_text="hex")
    url = models.URLField(max_length=1000, blank=True, help_text="Where the custodian serves it (by reference)")
    stored = models.FileField(upload_to="documents/%Y/%m/", blank=True, help_text="The content (by value)")
    prefetched = models.FileField(
        upload_to="prefetched/%Y/%m/", blank=True, help_text="A checked copy of by-reference content (gather jobs)"
    )
    title = models.CharField(max_length=255, blank=True)
    # The DocumentReference as the node answers it, less what depends on the request (ids, URLs).
    resource = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["custodian", "master_system", "master_value"], name="document_entry_unique_per_custodian"
            ),
            models.CheckConstraint(condition=Q(url="") | Q(stored=""), name="document_entry_by_reference_or_by_value"),
        ]
        indexes = [models.Index(fields=["record", "status"]), models.Index(fields=["master_value"])]

    def __str__(self) -> str:
        return f"document entry {self.pk} ({self.status})"

    @property
    def by_reference(self) -> bool:
        return bool(self.url)


class CustodianAccess(models.Model):
    """The node's own client credentials at a member's FHIR server, used to fetch documents it holds
    (OAuth2 client credentials grant at `token_url`). The secret is the member's to rotate."""

    organization = models.OneToOneField("orgs.Organization", on_delete=models.CASCADE, related_name="custodian_access")
    token_url = models.URLField(max_length=500)
    client_id = models.CharField(max_length=200)
    client_secret = models.CharField(max_length=500)
    scope = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"access to the documents of organization {self.organization_id}"


class SubmissionSet(models.Model):
    """An MHD SubmissionSet (the List of an ITI-65 submission): which documents a custodian sent
    together, for one patient record. Kept as sent (its entries pointed at the stored documents),
    readable and searchable as a List (ITI-66)."""

    custodian = models.ForeignKey("orgs.Organization", on_delete=models.PROTECT, related_name="submission_sets")
    record = models.ForeignKey("matching.PatientRecord", on_delete=models.PROTECT, related_name="submission_sets")
    # List.identifier: the uniqueId (official), what makes a repeated submission idempotent
    identifier_system = models.CharField(max_length=255)
    identifier_value = models.CharField(max_length=255)
    entries = models.ManyToManyField(DocumentEntry, related_name="submission_sets")
    # The List as the node answers it, less what depends on the request (id, entry references).
    resource = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["custodian", "identifier_system", "identifier_value"],
                name="submission_set_unique_per_custodian",
            )
        ]
        indexes = [models.Index(fields=["record"]), models.Index(fields=["identifier_value"])]

    def __str__(self) -> str:
        return f"submission set {self.pk}"
