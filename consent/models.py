"""Consents (shaped as FHIR R4 Consent under IHE PCF), the deployment's implicit policy per member,
and break-the-glass grants."""

from django.conf import settings
from django.db import models


class ConsentStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive", "inactive (withdrawn or ended)"
    ENTERED_IN_ERROR = "entered-in-error"


class PolicyRule(models.TextChoices):
    # http://terminology.hl7.org/CodeSystem/v3-ActCode
    OPTIN = "OPTIN", "opt-in"
    OPTOUT = "OPTOUT", "opt-out"
    OPTINR = "OPTINR", "opt-in with restrictions"
    OPTOUTE = "OPTOUTE", "opt-out with exceptions"


class ConsentSource(models.TextChoices):
    FORM = "form", "signed form"
    VERBAL = "verbal"
    PORTAL = "portal"


class ImplicitPolicy(models.TextChoices):
    ALL_NORMAL = "all-normal", "opt-out: normal data for any permitted purpose unless denied"
    BASIC_NORMAL = "basic-normal", "normal data for treatment only"
    BREAK_GLASS_ONLY = "break-glass-only", "only under break-the-glass"
    DENY = "deny", "opt-in: nothing until permitted"


class Consent(models.Model):
    """One consent of a patient, recorded under any identifier of theirs (a member's or the EUID).

    It belongs to whichever person that identifier is linked to at the moment of a decision, so
    merges and unmerges carry it along without being rewritten. The provisions are kept in the
    shape of FHIR Consent.provision (one root, one level of nested exceptions); see
    consent/provisions.py for what they may hold.
    """

    patient_system = models.CharField(max_length=255)
    patient_value = models.CharField(max_length=128)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices, default=ConsentStatus.ACTIVE)
    policy_rule = models.CharField(max_length=8, choices=PolicyRule.choices)
    date_recorded = models.DateTimeField()
    source = models.CharField(max_length=8, choices=ConsentSource.choices)
    attachment = models.FileField(upload_to="consent-forms/%Y/%m/", blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="recorded_consents"
    )
    collected_by = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="collected_consents"
    )
    # The member that recorded it through the API, and so the only member that may read, change or
    # withdraw it, and whose own data alone its permits release (consent/access.py). Empty when HIE
    # staff recorded it in the console: such a consent speaks for the whole exchange.
    recorded_by_organization = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="recorded_consents"
    )
    provision = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["patient_system", "patient_value"]),
            models.Index(fields=["status", "date_recorded"]),
        ]

    def __str__(self) -> str:
        return f"consent {self.pk} v{self.version} ({self.status})"


class ConsentVersion(models.Model):
    """Append-only: the consent as it was after each change."""

    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    provision = models.JSONField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    changed_by_organization = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consent", "version"], name="consent_version_unique")]

    def __str__(self) -> str:
        return f"consent {self.consent_id} v{self.version}"


class MemberPolicy(models.Model):
    """A member's own implicit policy for the data it holds, instead of the deployment's."""

    organization = models.OneToOneField("orgs.Organization", on_delete=models.CASCADE, related_name="consent_policy")
    policy = models.CharField(max_length=20, choices=ImplicitPolicy.choices)

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.policy}"


class BreakGlass(models.Model):
    """Emergency access opened by a requester for one person, until a time limit, reviewed afterwards."""

    person = models.ForeignKey("matching.Person", on_delete=models.PROTECT, related_name="break_glass_grants")
    requester = models.ForeignKey("orgs.Organization", on_delete=models.PROTECT, related_name="break_glass_grants")
    purpose = models.CharField(max_length=8)
    reason = models.CharField(max_length=500)
    opened_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    review_note = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["person", "requester", "expires_at"]),
            models.Index(fields=["reviewed_at", "opened_at"]),
        ]

    def __str__(self) -> str:
        return f"break-glass {self.pk} until {self.expires_at:%Y-%m-%d %H:%M}"
