"""Changes to the master patient index: registering records, matching them, linking, merging,
splitting and undoing. Every link change is written as a LinkChange with its LinkEvents."""

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from hie.audit.models import Action
from hie.audit.services import SYSTEM, Actor, record_event
from hie.bulk import (
    allocate_ids,
    among,
    analyze,
    delete_rows,
    in_processes,
    indexes_built_after,
    insert_bigints,
    insert_rows,
    json_text,
    processes_available,
    without_cycle_collection,
)
from hie.exceptions import (
    Conflict,
    Forbidden,
    PreconditionFailed,
    UnknownResource,
    Unprocessable,
    ValidationFailed,
)
from hie.exchange.models import EventKind
from hie.exchange.notifications import emit
from hie.orgs.models import Organization
from matching.blocking import blocking_keys
from matching.locks import lock_blocking_keys
from matching.models import (
    BlockingKey,
    ChangeKind,
    Link,
    LinkChange,
    LinkEvent,
    LinkSource,
    LinkState,
    PairLabel,
    PatientRecord,
    PendingMatch,
    Person,
    PersonStatus,
    ReviewCandidate,
    ReviewStatus,
    ReviewTask,
    Source,
)
from matching.normalize import normalise, prepared_streets, standardise_streets, streets_to_parse
from matching.score import auto_link_threshold, review_threshold
from matching.selectors import (
    CURRENT_STATES,
    PersonScore,
    active_scorer,
    current_link,
    find_candidates,
    records_of_person,
    refused_persons,
    score_against_candidates,
)
from matching.survivorship import build_golden_record

logger = logging.getLogger(__name__)
REVIEW_CANDIDATES = 5


class Demographics(NamedTuple):
    """What a member says about a patient, in the node's terms (FHIR, HL7 and CSV map into this).

    A named tuple: immutable, and made at the speed of a tuple (a bulk load makes one per row;
    a frozen dataclass took three times as long)."""

    given_name: str = ""
    middle_name: str = ""
    family_name: str = ""
    suffix: str = ""
    previous_family_names: tuple[str, ...] = ()
    sex: str = "unknown"
    birth_date: date | None = None
    ssn: str = ""
    phones: tuple[str, ...] = ()
    email: str = ""
    address_line: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""

    def as_fields(self) -> dict:
        values = self._asdict()  # the fields, in their order
        values["previous_family_names"] = list(self.previous_family_names)
        values["phones"] = list(self.phones)
        return values


@dataclass
class Registration:
    record: PatientRecord
    created: bool
    changed: bool


def check_namespace(organization: Organization, identifier_system: str) -> None:
    if identifier_system not in organization.identifier_system_uris:
        raise Forbidden("a member may only register identifiers under its own identifier systems")


@transaction.atomic
def register_record(
    *,
    organization: Organization,
    identifier_system: str,
    local_id: str,
    demographics: Demographics,
    source: Source,
    expected_version: int | None = None,
    must_be_new: bool = False,
    enqueue: bool = True,
) -> Registration:
    """Store a member's registration (create or update) and queue it for matching after commit.

    `expected_version` is the caller's If-Match: the update happens only on that version.
    """
    check_namespace(organization, identifier_system)
    if not local_id or not local_id.strip():
        raise ValidationFailed("the patient's local identifier is empty")
    fields = demographics.as_fields()
    record = (
        PatientRecord.objects.select_for_update()
        .filter(organization=organization, identifier_system=identifier_system, local_id=local_id)
        .first()
    )
    created = record is None
    if expected_version is not None and (created or record.version != expected_version):
        raise PreconditionFailed("the record's current version is not the one the update was based on")
    if must_be_new and not created:
        raise Conflict("a record with this identifier exists already; update it instead")
    if created:
        record = PatientRecord(
            organization=organization, identifier_system=identifier_system, local_id=local_id, source=source
        )
    elif record.active and all(getattr(record, name) == value for name, value in fields.items()):
        return Registration(record=record, created=False, changed=False)
    else:
        record.version += 1
        record.active = True
    for name, value in fields.items():
        setattr(record, name, value)
    record.source = source
    record.norm = normalise(**fields)
    record.save()
    PendingMatch.objects.update_or_create(record=record, defaults={"since": record.updated_at})
    replace_blocking_keys(record)
    if enqueue:
        enqueue_match(record.pk)
    return Registration(record=record, created=created, changed=True)


def receive_registration(
    *,
    organization: Organization,
    identifier_system: str,
    local_id: str,
    demographics: Demographics,
    source: Source,
    active: bool = True,
    replaced_by: tuple[str, str] | None = None,
    expected_version: int | None = None,
    must_be_new: bool = False,
    actor: Actor = SYSTEM,
) -> Registration:
    """A member's feed message about one of its patients (FHIR Patient, HL7 ADT): a registration
    or update, matched at once; a merge at the source (`replaced_by`); or a withdrawal (not active)."""
    registration = {
        "organization": organization, "identifier_system": identifier_system, "local_id": local_id,
        "demographics": demographics, "source": source, "expected_version": expected_version,
        "must_be_new": must_be_new,
    }  # fmt: skip
    if active and replaced_by is None:
        return register_and_match(**registration)
    with transaction.atomic():
        registered = register_record(**registration, enqueue=False)
        if replaced_by is not None:
            merge_at_source(organization=organization, retired=(identifier_system, local_id), surviving=replaced_by,
                            actor=actor)  # fmt: skip
        else:
            retire_record(record=registered.record, actor=actor)
    registered.record.refresh_from_db()
    return registered


def register_and_match(**registration: object) -> Registration:
    """For interactive feeds: store and commit the registration, then match it at once so the
    answer can carry the enterprise id. If matching fails here, the record stays pending and
    goes to the task queue, so nothing is lost."""
    registered = register_record(**registration, enqueue=False)
    if registered.changed:
        try:
            match_record(registered.record.pk)
        except Exception:
            logger.exception("matching at registration failed; queued", extra={"record": registered.record.pk})
            enqueue_match(registered.record.pk)
        registered.record.refresh_from_db()
    return registered


@dataclass(frozen=True)
class NewRegistration:
    organization: Organization
    identifier_system: str
    local_id: str
    demographics: Demographics


RECORD_COLUMNS = ("id", "organization_id", "identifier_system", "local_id", "given_name", "middle_name",
                  "family_name", "suffix", "previous_family_names", "sex", "birth_date", "ssn", "phones", "email",
                  "address_line", "city", "state", "postal_code", "norm", "source", "version", "active",
                  "created_at", "updated_at")  # fmt: skip
DEMOGRAPHIC_COLUMNS = RECORD_COLUMNS[4:18]


@without_cycle_collection()
def register_records_bulk(registrations: list[NewRegistration], *, source: Source, chunk: int = 5000) -> list[int]:
    """Store many registrations at once (bulk loads), in the caller's transaction.

    New records are written in bulk and left pending for batch matching (matching/batch.py);
    one that exists already goes through register_record, as a single update would. New
    records are normalised in worker processes while earlier ones are written.
    """
    for organization, identifier_system in {(r.organization, r.identifier_system) for r in registrations}:
        check_namespace(organization, identifier_system)
    # Which of them are stored already: none where their identifier systems have no record yet
    # (a first load), which one query tells.
    systems = {r.identifier_system for r in registrations}
    existing = set()
    if PatientRecord.objects.filter(identifier_system__in=systems).exists():
        for start in range(0, len(registrations), chunk):
            part = registrations[start : start + chunk]
            existing.update(
                PatientRecord.objects.filter(
                    identifier_system__in={r.identifier_system for r in part},
                    local_id__in=among([r.local_id for r in part]),
                ).values_list("organization_id", "identifier_system", "local_id")
            )
    ids: list[int] = []
    fresh = []
    for r in registrations:
        if (r.organization.pk, r.identifier_system, r.local_id) in existing:
            ids.append(
                register_record(
                    organization=r.organization, identifier_system=r.identifier_system, local_id=r.local_id,
                    demographics=r.demographics, source=source,
                ).record.pk
            )  # fmt: skip
        else:
            fresh.append((r, r.demographics.as_fields()))
    now = timezone.now()
    parts = [fresh[start : start + chunk] for start in range(0, len(fresh), chunk)]
    # Streets are standardised first, each once, shared out between the processes; those that
    # then normalise the records inherit them.
    streets = streets_to_parse(fields["address_line"] for _, fields in fresh)
    shares = min(4 * processes_available(), len(streets))
    standard: dict[str, str] = {}
    for known in in_processes(standardise_streets, [streets[i::shares] for i in range(shares)]):
        standard.update(known)
    with (
        prepared_streets(standard),
        indexes_built_after(PatientRecord, BlockingKey, PendingMatch) if fresh else nullcontext(),
    ):
        normalised = in_processes(_normalised, [[fields for _, fields in part] for part in parts])
        for part, results in zip(parts, normalised, strict=True):
            new_ids = allocate_ids(PatientRecord, len(part))
            norms, key_counts, keys = results
            rows = [
                (record_id, r.organization.pk, r.identifier_system, r.local_id,
                 *(values[c] for c in DEMOGRAPHIC_COLUMNS), norm, source, 1, True, now, now)
                for record_id, (r, values), norm in zip(new_ids, part, norms, strict=True)
            ]  # fmt: skip
            insert_rows(PatientRecord, RECORD_COLUMNS, rows)
            record_of_key = np.repeat(np.array(new_ids, dtype=np.int64), key_counts)
            insert_bigints(BlockingKey, ("record_id", "key"), (record_of_key, keys))
            insert_rows(PendingMatch, ("record_id", "since"), [(record_id, now) for record_id in new_ids])
            ids += new_ids
    return ids


def analyze_registrations() -> None:
    """After a bulk load has committed: the planner's statistics of the tables it grew. Blocking
    keys are also vacuumed, so that a block is read from their index alone."""
    analyze(PatientRecord, BlockingKey, PendingMatch, vacuum={BlockingKey})


def _normalised(part: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The normalised forms of the records' fields as JSON text, how many blocking keys each has,
    and all their keys in one array (run in a worker process: what it sends back is quick to
    pass between processes and ready to write)."""
    norms = [normalise(**fields) for fields in part]
    keys = [blocking_keys(norm) for norm in norms]
    counts = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    flat = np.fromiter(chain.from_iterable(keys), dtype=np.int64, count=int(counts.sum()))
    return [json_text(norm) for norm in norms], counts, flat


def replace_blocking_keys(record: PatientRecord) -> None:
    BlockingKey.objects.filter(record=record).delete()
    BlockingKey.objects.bulk_create(BlockingKey(record=record, key=key) for key in blocking_keys(record.norm))


def enqueue_match(record_id: int) -> None:
    from matching.tasks import match_record_task

    match_record_task.delay_on_commit(record_id)


# --- matching one record -------------------------------------------------------------------


@dataclass
class MatchOutcome:
    decision: str  # "linked", "review", "new_person", "unchanged", "manual", "inactive"
    person_id: int | None
    probability: float | None = None
    oversized_passes: dict = field(default_factory=dict)


def decide(best_probability: float | None) -> str:
    """The one place a score becomes an action."""
    if best_probability is not None and best_probability >= auto_link_threshold():
        return "linked"
    if best_probability is not None and best_probability >= review_threshold():
        return "review"
    return "new_person"


@transaction.atomic
def match_record(record_id: int) -> MatchOutcome:
    """Match one record: link it, open a review, or start a new person. Safe to run twice."""
    # Locking the record row serialises two tasks for the same record.
    record = PatientRecord.objects.select_for_update().filter(pk=record_id).first()
    if record is None:
        raise UnknownResource("no such record")
    keys = list(record.blocking_keys.values_list("key", flat=True))
    lock_blocking_keys(keys)
    current = current_link(record.pk)
    if not record.active:
        matched([record.pk])
        return MatchOutcome("inactive", None)
    if current is not None and current.source == LinkSource.MANUAL:
        # People decided this record's person; automatic matching never overrides them.
        _finish(record, [current.person_id])
        return MatchOutcome("manual", current.person_id)

    scorer = active_scorer()
    found = find_candidates(record.pk, keys)
    if found.oversized_passes:
        logger.info("oversized blocks skipped", extra={"record": record.pk, "passes": found.oversized_passes})
    ranked = score_against_candidates(record.norm, found.records, refused_persons(record.pk))
    best = ranked[0] if ranked else None
    decision = decide(best.probability if best else None)

    if decision == "new_person":
        if current is not None and _only_record_of(current.person_id, record.pk):
            current.state, current.score, current.contributions = LinkState.MATCH, None, {}
            current.model_version = scorer.version
            current.save()
            _cancel_open_reviews(record)
            _finish(record, [current.person_id])
            return MatchOutcome("unchanged", current.person_id, None, found.oversized_passes)
        target = Person.objects.create()
        state, probability, explanation = LinkState.MATCH, None, {}
    else:
        target = Person.objects.get(pk=best.person_id)
        state = LinkState.MATCH if decision == "linked" else LinkState.POSSIBLE_MATCH
        probability, explanation = best.probability, best.explanation

    if current is not None and current.person_id == target.pk and current.state == state:
        current.score, current.contributions, current.model_version = probability, explanation, scorer.version
        current.save()
        _finish(record, [target.pk])
        return MatchOutcome("unchanged", target.pk, probability, found.oversized_passes)

    change = LinkChange.objects.create(kind=ChangeKind.AUTO_MATCH, reason=decision)
    affected = _move_current_link(
        change,
        record,
        target,
        state=state,
        source=LinkSource.AUTO,
        score=probability,
        contributions=explanation,
        model_version=scorer.version,
    )
    _cancel_open_reviews(record)
    if decision == "review":
        _open_review(record, ranked[:REVIEW_CANDIDATES])
    elif decision == "linked":
        emit(EventKind.RECORD_LINKED, record=record, source=record.organization,
             detail={"organization": f"Organization/{record.organization_id}"})  # fmt: skip
    _finish(record, affected)
    return MatchOutcome(decision, target.pk, probability, found.oversized_passes)


def _only_record_of(person_id: int, record_id: int) -> bool:
    return not Link.objects.filter(person_id=person_id, state__in=CURRENT_STATES).exclude(record_id=record_id).exists()


def matched(record_ids: list[int]) -> None:
    """The records no longer wait to be matched (decided, or retired)."""
    delete_rows(PendingMatch, "record_id", record_ids)


def _finish(record: PatientRecord, person_ids: list[int]) -> None:
    matched([record.pk])
    refresh_golden_records(person_ids)


def _open_review(record: PatientRecord, ranked: list[PersonScore]) -> ReviewTask:
    task = ReviewTask.objects.create(record=record, top_score=ranked[0].probability)
    ReviewCandidate.objects.bulk_create(
        ReviewCandidate(task=task, person_id=s.person_id, score=s.probability, explanation=s.explanation)
        for s in ranked
    )
    return task


def _cancel_open_reviews(record: PatientRecord) -> None:
    ReviewTask.objects.filter(record=record, status=ReviewStatus.OPEN).update(
        status=ReviewStatus.CANCELLED, decided_at=timezone.now()
    )


def _move_current_link(
    change: LinkChange,
    record: PatientRecord,
    person: Person | None,
    *,
    state: str = LinkState.MATCH,
    source: str = LinkSource.AUTO,
    score: float | None = None,
    contributions: dict | None = None,
    model_version: int | None = None,
) -> list[int]:
    """Point the record's current link at `person` (None: no current link), write the event,
    and retire a person left without records. Returns the ids of the persons affected."""
    current = current_link(record.pk)
    event = LinkEvent(
        change=change,
        record=record,
        person_before_id=current.person_id if current else None,
        state_before=current.state if current else "",
        source_before=current.source if current else "",
        score_before=current.score if current else None,
        contributions_before=current.contributions if current else {},
        model_version_before=current.model_version if current else None,
        person_after=person,
        state_after=state if person else "",
        source_after=source if person else "",
        score_after=score if person else None,
    )
    event.save()
    if current is not None:
        current.delete()
    if person is not None:
        # A NO_MATCH link to the same person gives way to the new decision.
        Link.objects.filter(record=record, person=person).delete()
        Link.objects.create(
            record=record,
            person=person,
            state=state,
            source=source,
            score=score,
            contributions=contributions or {},
            model_version=model_version,
        )
    affected = [p for p in (event.person_before_id, person.pk if person else None) if p]
    if event.person_before_id and (person is None or event.person_before_id != person.pk):
        _retire_if_empty(change, event.person_before_id)
    return affected


def _retire_if_empty(change: LinkChange, person_id: int) -> None:
    if not Link.objects.filter(person_id=person_id, state__in=CURRENT_STATES).exists():
        Person.objects.filter(pk=person_id, status=PersonStatus.ACTIVE).update(status=PersonStatus.RETIRED)
        if change.retired_person_id is None:
            change.retired_person_id = person_id
            change.save(update_fields=["retired_person"])


GOLDEN_FIELDS = ("active", "source", "updated_at", "given_name", "middle_name", "family_name", "suffix",
                 "previous_family_names", "sex", "birth_date", "norm", "address_line", "city", "state", "postal_code",
                 "organization_id", "identifier_system", "local_id")  # fmt: skip


def refresh_golden_records(person_ids: list[int], chunk: int = 2000) -> None:
    """Recompute the golden records of these persons from their linked records."""
    ids = sorted(set(person_ids))
    now = timezone.now()
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        records: dict[int, list[SimpleNamespace]] = {person_id: [] for person_id in part}
        rows = Link.objects.filter(person_id__in=among(part), state__in=CURRENT_STATES).values(
            "person_id", *(f"record__{name}" for name in GOLDEN_FIELDS)
        )
        for row in rows:
            records[row["person_id"]].append(
                SimpleNamespace(**{name: row[f"record__{name}"] for name in GOLDEN_FIELDS})
            )
        write_golden_records([(p, build_golden_record(r)) for p, r in records.items()], now)


def write_golden_records(goldens: list[tuple[int, dict]], now: datetime, chunk: int = 5000) -> None:
    """Store golden records with one UPDATE ... FROM (VALUES ...) per chunk: bulk_update's CASE
    per row is far slower."""
    for start in range(0, len(goldens), chunk):
        part = goldens[start : start + chunk]
        rows = ", ".join(["(%s, %s)"] * len(part))
        params = [value for person_id, record in part for value in (person_id, json_text(record))]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE matching_person SET golden = v.column2, updated_at = %s "  # noqa: S608 - only placeholders
                f"FROM (VALUES {rows}) AS v WHERE matching_person.id = v.column1",
                [now, *params],
            )


# --- what staff do -------------------------------------------------------------------------


def _audit(actor: Actor, event_type: str, person: Person, detail: dict | None = None) -> None:
    record_event(actor=actor, action=Action.UPDATE, event_type=event_type, resource_type="Patient",
                 person_euid=person.euid, detail=detail or {})  # fmt: skip


@transaction.atomic
def link_record(*, record: PatientRecord, person: Person, actor: Actor, reason: str,
                kind: ChangeKind = ChangeKind.MANUAL_LINK) -> LinkChange:  # fmt: skip
    """Staff say this record is this person: a manual link that automatic matching will keep."""
    if person.status != PersonStatus.ACTIVE:
        raise ValidationFailed("that person was retired; link to the person it was merged into")
    change = LinkChange.objects.create(kind=kind, staff_user_id=actor.staff_user_id, reason=reason)
    affected = _move_current_link(change, record, person, state=LinkState.MATCH, source=LinkSource.MANUAL)
    _cancel_open_reviews(record)
    emit(EventKind.RECORD_LINKED, record=record, source=record.organization,
         detail={"organization": f"Organization/{record.organization_id}"})  # fmt: skip
    refresh_golden_records(affected)
    _audit(actor, "record-link", person, {"change": change.pk})
    return change


@transaction.atomic
def merge_persons(
    *, survivor: Person, retired: Person, actor: Actor, reason: str, kind: ChangeKind = ChangeKind.MERGE
) -> LinkChange:
    """Move every record of `retired` to `survivor`; `retired` points at the survivor from now on."""
    if survivor.pk == retired.pk:
        raise ValidationFailed("a person cannot be merged into itself")
    locked = {p.pk: p for p in Person.objects.select_for_update().filter(pk__in=[survivor.pk, retired.pk])}
    if any(p.status != PersonStatus.ACTIVE for p in locked.values()):
        raise ValidationFailed("both persons must be active to merge")
    change = LinkChange.objects.create(
        kind=kind,
        staff_user_id=actor.staff_user_id,
        reason=reason,
        survivor=survivor,
        retired_person=retired,
    )
    for record in records_of_person(retired.pk):
        _move_current_link(change, record, survivor, state=LinkState.MATCH, source=LinkSource.MANUAL)
        _cancel_open_reviews(record)
    Person.objects.filter(pk=retired.pk).update(status=PersonStatus.RETIRED, merged_into=survivor)
    emit(EventKind.PERSONS_MERGED, person=survivor, detail={"retired": f"Patient/{retired.euid}"})
    refresh_golden_records([survivor.pk, retired.pk])
    _audit(actor, "person-merge", survivor, {"change": change.pk, "retired": retired.euid})
    return change


@transaction.atomic
def unlink_record(*, record: PatientRecord, actor: Actor, reason: str) -> LinkChange:
    """Split a record off its person into a new person, and remember it is not that person."""
    if not reason.strip():
        raise ValidationFailed("a reason is required to split a record off")
    current = current_link(record.pk)
    if current is None:
        raise ValidationFailed("the record is not linked to a person")
    if _only_record_of(current.person_id, record.pk):
        raise ValidationFailed("the record is the person's only record; there is nothing to split")
    old_person = current.person
    change = LinkChange.objects.create(kind=ChangeKind.UNLINK, staff_user_id=actor.staff_user_id, reason=reason)
    new_person = Person.objects.create()
    _move_current_link(change, record, new_person, state=LinkState.MATCH, source=LinkSource.MANUAL)
    Link.objects.create(record=record, person=old_person, state=LinkState.NO_MATCH, source=LinkSource.MANUAL)
    _cancel_open_reviews(record)
    refresh_golden_records([old_person.pk, new_person.pk])
    _audit(actor, "record-unlink", old_person, {"change": change.pk, "new_person": new_person.euid})
    return change


@transaction.atomic
def undo_change(*, change: LinkChange, actor: Actor, reason: str) -> LinkChange:
    """Put every link the change touched back as it was, and bring back a person it retired."""
    change = LinkChange.objects.select_for_update().get(pk=change.pk)
    if hasattr(change, "undone_by"):
        raise ValidationFailed("this change was undone already")
    if change.kind == ChangeKind.UNDO:
        raise ValidationFailed("an undo is not undone; make the change again instead")
    events = list(change.events.select_related("record").order_by("-pk"))
    for event in events:
        current = current_link(event.record_id)
        if (current.person_id if current else None) != event.person_after_id:
            raise ValidationFailed("a later change touched these records; undo that one first")
    undo = LinkChange.objects.create(
        kind=ChangeKind.UNDO, staff_user_id=actor.staff_user_id, reason=reason, undoes=change
    )
    if change.retired_person_id:
        Person.objects.filter(pk=change.retired_person_id).update(status=PersonStatus.ACTIVE, merged_into=None)
    affected = set()
    for event in events:
        if change.kind == ChangeKind.UNLINK and event.person_before_id:
            Link.objects.filter(
                record=event.record, person_id=event.person_before_id, state=LinkState.NO_MATCH
            ).delete()
        before = Person.objects.get(pk=event.person_before_id) if event.person_before_id else None
        affected.update(
            _move_current_link(
                undo,
                event.record,
                before,
                state=event.state_before or LinkState.MATCH,
                source=event.source_before or LinkSource.AUTO,
                score=event.score_before,
                contributions=event.contributions_before,
                model_version=event.model_version_before,
            )
        )
    _reopen_review_decided_by(change)
    refresh_golden_records(list(affected))
    record_event(actor=actor, action=Action.UPDATE, event_type="link-change-undo", resource_type="Patient",
                 detail={"change": change.pk, "undo": undo.pk})  # fmt: skip
    return undo


def _reopen_review_decided_by(change: LinkChange) -> None:
    """An undone review decision puts its task back in the queue, without the labels or refusals it made."""
    task = ReviewTask.objects.filter(decision=change).first()
    if task is None:
        return
    if task.status == ReviewStatus.DIFFERENT:
        candidates = task.candidates.values_list("person_id", flat=True)
        Link.objects.filter(record=task.record, person_id__in=candidates, state=LinkState.NO_MATCH).delete()
    PairLabel.objects.filter(task=task).delete()
    _cancel_open_reviews(task.record)
    task.status, task.decided_person, task.decided_by, task.decided_at, task.decision = (
        ReviewStatus.OPEN, None, None, None, None
    )  # fmt: skip
    task.save()


@transaction.atomic
def decide_review(*, task: ReviewTask, same_person: Person | None, actor: Actor) -> ReviewTask:
    """Record a reviewer's decision: the record is `same_person`, or (None) none of the candidates.

    The decision becomes labels (pairs of records) that evaluate and re-train the model.
    """
    task = ReviewTask.objects.select_for_update().get(pk=task.pk)
    if task.status != ReviewStatus.OPEN:
        raise ValidationFailed("this review was decided already")
    record = task.record
    candidate_ids = list(task.candidates.values_list("person_id", flat=True))
    labels = []
    if same_person is not None:
        if same_person.pk not in candidate_ids:
            raise ValidationFailed("that person is not a candidate of this review")
        change = link_record(record=record, person=same_person, actor=actor, reason="review: same person",
                             kind=ChangeKind.REVIEW_DECISION)  # fmt: skip
        labels += [(record.pk, r.pk, True) for r in records_of_person(same_person.pk) if r.pk != record.pk]
        task.status, task.decided_person = ReviewStatus.SAME, same_person
    else:
        current = current_link(record.pk)
        change = LinkChange.objects.create(
            kind=ChangeKind.REVIEW_DECISION, staff_user_id=actor.staff_user_id, reason="review: not the same person"
        )
        if current is not None and current.person_id in candidate_ids:
            _move_current_link(change, record, Person.objects.create(), state=LinkState.MATCH,
                               source=LinkSource.MANUAL)  # fmt: skip
        elif current is not None:
            current.source = LinkSource.MANUAL
            current.save(update_fields=["source"])
        for person_id in candidate_ids:
            labels += [(record.pk, r.pk, False) for r in records_of_person(person_id)]
            Link.objects.update_or_create(
                record=record,
                person_id=person_id,
                defaults={"state": LinkState.NO_MATCH, "source": LinkSource.MANUAL},
            )
        refresh_golden_records(candidate_ids + ([current.person_id] if current else []))
        task.status = ReviewStatus.DIFFERENT
    for a, b, is_match in labels:
        low, high = sorted((a, b))
        PairLabel.objects.update_or_create(
            record_a_id=low, record_b_id=high,
            defaults={"is_match": is_match, "decided_by_id": actor.staff_user_id, "task": task},
        )  # fmt: skip
    task.decided_by_id, task.decided_at, task.decision = actor.staff_user_id, timezone.now(), change
    task.save()
    return task


@transaction.atomic
def retire_record(*, record: PatientRecord, actor: Actor = SYSTEM) -> None:
    """The member withdrew the registration: keep it in history, take it out of its person."""
    record = PatientRecord.objects.select_for_update().get(pk=record.pk)
    record.active = False
    record.version += 1
    record.save(update_fields=["active", "version", "updated_at"])
    if current_link(record.pk) is not None:
        change = LinkChange.objects.create(kind=ChangeKind.RETIRE_RECORD, reason="withdrawn by the member")
        refresh_golden_records(_move_current_link(change, record, None))
    _cancel_open_reviews(record)


@transaction.atomic
def merge_at_source(*, organization: Organization, retired: tuple[str, str], surviving: tuple[str, str],
                    actor: Actor) -> PatientRecord:  # fmt: skip
    """The member merged two of its own records (PIXm ITI-104, HL7 A40): the retired record stops
    counting as a registration but keeps pointing at the surviving record's person, and the persons
    of the two records become one."""
    for system, _ in (retired, surviving):
        check_namespace(organization, system)
    if retired == surviving:
        raise ValidationFailed("a record cannot be replaced by itself")
    old = (
        PatientRecord.objects.select_for_update()
        .filter(organization=organization, identifier_system=retired[0], local_id=retired[1])
        .first()
    )
    new = PatientRecord.objects.filter(
        organization=organization, identifier_system=surviving[0], local_id=surviving[1], active=True
    ).first()
    if old is None:
        raise UnknownResource("the replaced patient is not registered")
    if new is None:
        raise Unprocessable("the surviving patient is not registered (or not active)")
    survivor_link = current_link(new.pk)
    if survivor_link is None:
        match_record(new.pk)
        survivor_link = current_link(new.pk)
    survivor = survivor_link.person
    old_link = current_link(old.pk)
    if (
        old_link is not None
        and old_link.state == LinkState.MATCH  # a provisional link is no ground for merging persons
        and old_link.person_id != survivor.pk
        and _records_besides(old_link.person_id, old.pk)
    ):
        merge_persons(survivor=survivor, retired=old_link.person, actor=actor, reason="merged at the source",
                      kind=ChangeKind.SOURCE_MERGE)  # fmt: skip
    else:
        change = LinkChange.objects.create(kind=ChangeKind.SOURCE_MERGE, reason="merged at the source")
        _move_current_link(change, old, survivor, state=LinkState.MATCH, source=LinkSource.MANUAL)
        _cancel_open_reviews(old)
    old.active = False
    old.version += 1
    old.save(update_fields=["active", "version", "updated_at"])
    matched([old.pk])
    affected = {survivor.pk} | ({old_link.person_id} if old_link else set())
    refresh_golden_records(list(affected))
    _audit(actor, "source-merge", survivor, {"record": old.pk, "into_record": new.pk})
    return old


def _records_besides(person_id: int, record_id: int) -> bool:
    return not _only_record_of(person_id, record_id)
