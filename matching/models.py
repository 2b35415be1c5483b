"""The master patient index: members' patient records, enterprise persons, and the links between them."""

import json
import secrets

import numpy as np
from django.conf import settings
from django.db import models
from django.db.models import Q

EUID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


_EUID_LETTERS = np.frombuffer(EUID_ALPHABET.encode(), dtype=np.uint8)
_EUID_SHIFTS = np.arange(55, -1, -5, dtype=np.uint64)  # twelve letters of five bits


def new_euid() -> str:
    """A stable, opaque enterprise id that says nothing about the person (60 random bits)."""
    return new_euids(1)[0]


def new_euids(count: int) -> list[str]:
    """`count` new enterprise ids at once: "E" and twelve base32 letters of 60 random bits each."""
    bits = np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64) >> np.uint64(4)
    letters = _EUID_LETTERS[(bits[:, None] >> _EUID_SHIFTS) & np.uint64(31)]
    rows = np.hstack([np.full((count, 1), ord("E"), dtype=np.uint8), letters])
    return [euid.decode() for euid in rows.view("S13").ravel().tolist()]


class WholeJSONField(models.JSONField):
    """JSON that the node writes and reads whole and never queries into: normalised forms,
    golden records and the explanations of scores. On PostgreSQL it is kept as text, as SQLite
    keeps every JSONField: a `jsonb` column parses each value into its binary form when it is
    written and prints it again when it is read (for the normalised forms of 147,659 records,
    0.6 s against 0.3 s to copy them in and 0.4 s against 0.2 s to read them out). (`json` would
    keep the text too, but has no equality operator, so that no query could select such a
    column DISTINCT.) Looking up keys inside the value is refused: the database would see text."""

    def db_type(self, connection) -> str:
        return "text" if connection.vendor == "postgresql" else super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return value if hasattr(value, "as_sql") else json.dumps(value, cls=self.encoder)

    def get_transform(self, name):
        return None


class Sex(models.TextChoices):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class Source(models.TextChoices):
    FHIR = "fhir"
    HL7 = "hl7"
    CSV = "csv"


class PatientRecord(models.Model):
    """One organization's registration of a patient, as it sent it, plus the normalised forms."""

    # Looked up through the unique index (organization, identifier system, local id).
    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.PROTECT, related_name="patient_records", db_index=False
    )
    identifier_system = models.CharField(max_length=255)
    local_id = models.CharField(max_length=128)

    given_name = models.CharField(max_length=120, blank=True)
    middle_name = models.CharField(max_length=120, blank=True)
    family_name = models.CharField(max_length=120, blank=True)
    suffix = models.CharField(max_length=20, blank=True)
    previous_family_names = models.JSONField(default=list, blank=True)
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    birth_date = models.DateField(null=True, blank=True)
    ssn = models.CharField(max_length=11, blank=True, help_text="Digits as received; shown masked outside the console")
    phones = models.JSONField(default=list, blank=True)
    email = models.CharField(max_length=254, blank=True)
    address_line = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=120, blank=True)
    state = models.CharField(max_length=40, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)

    # Normalised forms used by comparison (see matching/normalize.py); derived on every write.
    norm = WholeJSONField(default=dict, blank=True)

    source = models.CharField(max_length=8, choices=Source.choices)
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "identifier_system", "local_id"], name="record_unique_per_org_identifier"
            )
        ]
        indexes = [models.Index(fields=["identifier_system", "local_id"])]

    def __str__(self) -> str:
        return f"record {self.pk} of organization {self.organization_id}"

    @property
    def masked_ssn(self) -> str:
        digits = "".join(ch for ch in self.ssn if ch.isdigit())
        return f"***-**-{digits[-4:]}" if len(digits) >= 4 else ""


class PendingMatch(models.Model):
    """A record stored and not matched yet: written with the record, deleted once matching has
    decided it (a beat task re-enqueues the ones left waiting). A narrow table of its own, so that
    finishing a batch of 150,000 records deletes 150,000 narrow rows rather than writing each
    record row, and every one of its indexes, again."""

    record = models.OneToOneField(PatientRecord, on_delete=models.CASCADE, primary_key=True, related_name="pending")
    since = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"record {self.record_id} waiting to be matched"


class BlockingKey(models.Model):
    """One blocking key of a record; candidates for a record are the records sharing any of its keys.

    Keys are derived data, written and replaced only with their record (matching.services), about
    a dozen per record. The database does not check the reference on each of them: at a bulk
    load that check costs as much as writing the keys. Deleting a record still deletes its keys.

    A key is identified by its record and its value, with no number of its own: drawing one from
    a sequence for each of a bulk load's million keys took longer than writing them. The primary
    key (record, key) finds a record's keys; the index (key, record) finds the records of a
    block without reading the table.
    """

    pk = models.CompositePrimaryKey("record_id", "key")
    record = models.ForeignKey(
        PatientRecord, on_delete=models.CASCADE, related_name="blocking_keys", db_constraint=False, db_index=False
    )
    key = models.BigIntegerField()  # matching.blocking.key_for: the pass's number over a hash of the value

    class Meta:
        indexes = [models.Index(fields=["key", "record"], name="blocking_key_block")]

    def __str__(self) -> str:
        return f"blocking key of record {self.record_id}"


class PersonStatus(models.TextChoices):
    ACTIVE = "active"
    RETIRED = "retired", "retired (merged or emptied)"


class Person(models.Model):
    """An enterprise identity. Its golden record is derived from its linked records (survivorship.py)."""

    euid = models.CharField(max_length=16, unique=True, default=new_euid)
    status = models.CharField(max_length=8, choices=PersonStatus.choices, default=PersonStatus.ACTIVE)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_persons"
    )
    golden = WholeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.euid


class LinkState(models.TextChoices):
    MATCH = "match"
    POSSIBLE_MATCH = "possible_match", "possible match"
    NO_MATCH = "no_match", "no match"


class LinkSource(models.TextChoices):
    AUTO = "auto"
    MANUAL = "manual"


class Link(models.Model):
    """A record's relation to a person. A record has at most one MATCH or POSSIBLE_MATCH link;
    NO_MATCH links remember people's decisions so that the pair is never proposed again."""

    # Each reference is looked up through an index that begins with it (record, person) and
    # (person, state): an index of its own would only be kept up to date.
    record = models.ForeignKey(PatientRecord, on_delete=models.CASCADE, related_name="links", db_index=False)
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="links", db_index=False)
    state = models.CharField(max_length=16, choices=LinkState.choices)
    source = models.CharField(max_length=8, choices=LinkSource.choices)
    score = models.FloatField(null=True, blank=True, help_text="Match probability, 0..1")
    contributions = WholeJSONField(default=dict, blank=True)
    model_version = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["record", "person"], name="link_unique_record_person"),
            models.UniqueConstraint(
                fields=["record"],
                condition=Q(state__in=["match", "possible_match"]),
                name="link_one_current_person_per_record",
            ),
        ]
        indexes = [models.Index(fields=["person", "state"])]

    def __str__(self) -> str:
        return f"record {self.record_id} {self.state} person {self.person_id}"


class ChangeKind(models.TextChoices):
    AUTO_MATCH = "auto_match", "matched automatically"
    MANUAL_LINK = "manual_link", "linked by staff"
    MERGE = "merge", "persons merged"
    UNLINK = "unlink", "record split off"
    REVIEW_DECISION = "review_decision", "review decided"
    SOURCE_MERGE = "source_merge", "merged at the source"
    RETIRE_RECORD = "retire_record", "record retired"
    UNDO = "undo", "change undone"


class LinkChange(models.Model):
    """One act that changed links (an automatic match, a merge, an unmerge...), undoable as a whole."""

    kind = models.CharField(max_length=20, choices=ChangeKind.choices)
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="link_changes"
    )
    reason = models.CharField(max_length=500, blank=True)
    retired_person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="retiring_changes"
    )
    survivor = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="surviving_changes"
    )
    undoes = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class LinkEvent(models.Model):
    """Append-only: one link of one record before and after a change."""

    change = models.ForeignKey(LinkChange, on_delete=models.PROTECT, related_name="events")
    # Looked up through the index (record, created_at).
    record = models.ForeignKey(PatientRecord, on_delete=models.PROTECT, related_name="link_events", db_index=False)
    person_before = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="events_as_before"
    )
    person_after = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="events_as_after"
    )
    state_before = models.CharField(max_length=16, blank=True)
    state_after = models.CharField(max_length=16, blank=True)
    source_before = models.CharField(max_length=8, blank=True)
    source_after = models.CharField(max_length=8, blank=True)
    score_before = models.FloatField(null=True, blank=True)
    score_after = models.FloatField(null=True, blank=True)
    contributions_before = models.JSONField(default=dict, blank=True)
    model_version_before = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["record", "created_at"])]

    def __str__(self) -> str:
        return f"event {self.pk} of change {self.change_id}"


class ReviewStatus(models.TextChoices):
    OPEN = "open"
    SAME = "same", "same person"
    DIFFERENT = "different", "not the same person"
    CANCELLED = "cancelled", "no longer needed"


class ReviewTask(models.Model):
    """A possible match waiting for a person to decide."""

    record = models.ForeignKey(PatientRecord, on_delete=models.CASCADE, related_name="review_tasks")
    status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.OPEN)
    top_score = models.FloatField()
    decided_person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="decided_reviews"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="review_decisions"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision = models.ForeignKey(
        LinkChange, null=True, blank=True, on_delete=models.PROTECT, related_name="decided_reviews",
        help_text="The link change the decision made; undoing it reopens the task",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["record"], condition=Q(status="open"), name="review_one_open_task_per_record"
            )
        ]
        indexes = [models.Index(fields=["status", "top_score"]), models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"review {self.pk} ({self.status})"


class ReviewCandidate(models.Model):
    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="candidates")
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="review_candidacies")
    score = models.FloatField()
    explanation = WholeJSONField(default=dict)

    class Meta:
        ordering = ["-score"]
        constraints = [models.UniqueConstraint(fields=["task", "person"], name="review_candidate_unique")]

    def __str__(self) -> str:
        return f"candidate person {self.person_id} of review {self.task_id}"


class PairLabel(models.Model):
    """A person's decision about two records, kept to evaluate and re-train the model."""

    record_a = models.ForeignKey(PatientRecord, on_delete=models.CASCADE, related_name="+")
    record_b = models.ForeignKey(PatientRecord, on_delete=models.CASCADE, related_name="+")
    is_match = models.BooleanField()
    task = models.ForeignKey(
        "ReviewTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="labels",
        help_text="The review whose decision this is; the label goes if the decision is undone",
    )  # fmt: skip
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["record_a", "record_b"], name="pair_label_unique"),
            models.CheckConstraint(condition=Q(record_a__lt=models.F("record_b")), name="pair_label_ordered"),
        ]

    def __str__(self) -> str:
        return f"label {self.record_a_id}-{self.record_b_id}"


class ModelStatus(models.TextChoices):
    ACTIVE = "active"
    RETIRED = "retired"


class MatchModel(models.Model):
    """A trained Fellegi-Sunter model: m and u probabilities per field level and term frequencies."""

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=8, choices=ModelStatus.choices, default=ModelStatus.ACTIVE)
    parameters = models.JSONField()
    evaluation = models.JSONField(default=dict, blank=True)
    records_trained_on = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status", "version"])]

    def __str__(self) -> str:
        return f"match model v{self.version}"


class RunStatus(models.TextChoices):
    """The states of a long job staff start from the console (training, re-matching)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TrainingRun(models.Model):
    """One request to (re)train the model, with its progress and the figures it produced."""

    Status = RunStatus

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(MatchModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.status})"


class RematchRun(models.Model):
    """Staff asked to match every active record again with the active model (after retraining)."""

    Status = RunStatus

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0, help_text="Records whose link changed")
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"re-match run {self.pk} ({self.status})"

    @property
    def progress(self) -> int:
        return round(100 * self.done / self.total) if self.total else (100 if self.status == "done" else 0)
