"""What the console's pages read that no single app owns: the dashboard's figures, a person's
page (golden record, records, link history, consents with today's decisions), audit search."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.db.models.functions import Floor, TruncDate
from django.utils import timezone

from consent.decide import Decision, decide
from consent.models import BreakGlass, Consent
from consent.selectors import consents_of_person, consents_under, identifiers_of_person
from hie.audit.models import AuditEvent
from hie.exchange.models import DeadLetter
from hie.hl7v2.models import InboundMessage, MessageState
from hie.locator.models import DocumentEntry, DocumentStatus
from hie.orgs.models import Organization
from matching.models import (
    ChangeKind,
    Link,
    LinkChange,
    LinkEvent,
    LinkState,
    PatientRecord,
    Person,
    PersonStatus,
    ReviewStatus,
    ReviewTask,
    TrainingRun,
)
from matching.score import auto_link_threshold, review_threshold

# An undo is not undone; automatic matching runs in batches that touch many persons at once, so
# its links are corrected by splitting or linking the record instead.
NOT_UNDONE_HERE = {ChangeKind.UNDO, ChangeKind.AUTO_MATCH}
HISTOGRAM_BINS = 20
DAYS_CHARTED = 30
# The purposes whose decisions the person page shows for every member ("who can see what").
SHOWN_PURPOSES = ("TREAT", "ETREAT", "HPAYMT", "HOPERAT", "PUBHLTH", "HRESCH")


@dataclass
class DashboardFigures:
    persons: int
    records_by_member: list[tuple[str, int]]
    open_reviews: int
    review_ages: list[tuple[str, int]]  # (age band, open tasks)
    oldest_review: datetime | None
    consents_by_status: dict[str, int]
    break_glass_to_review: int
    inbox_by_state: dict[str, int]
    failed_training_runs: int
    documents: int
    dead_letters: int
    score_histogram: list[int]  # current links by score, HISTOGRAM_BINS bins over 0..1
    review_threshold: float
    auto_link_threshold: float
    records_per_day: list[tuple[date, int]]  # the last DAYS_CHARTED days, oldest first


def dashboard_figures(now: datetime | None = None) -> DashboardFigures:
    now = now or timezone.now()
    by_member = (
        Organization.objects.annotate(records=Count("patient_records", filter=Q(patient_records__active=True)))
        .order_by("name")
        .values_list("name", "records")
    )
    open_tasks = ReviewTask.objects.filter(status=ReviewStatus.OPEN)
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    age_bands = [
        ("under a day", open_tasks.filter(created_at__gt=day_ago).count()),
        ("1 to 7 days", open_tasks.filter(created_at__lte=day_ago, created_at__gt=week_ago).count()),
        ("over a week", open_tasks.filter(created_at__lte=week_ago).count()),
    ]
    oldest = open_tasks.order_by("created_at").values_list("created_at", flat=True).first()
    histogram = [0] * HISTOGRAM_BINS
    scored = (
        Link.objects.filter(state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH], score__isnull=False)
        .annotate(bin=Floor(F("score") * HISTOGRAM_BINS))
        .values("bin")
        .annotate(n=Count("id"))
    )
    for row in scored:
        histogram[min(max(int(row["bin"]), 0), HISTOGRAM_BINS - 1)] += row["n"]
    first_day = (now - timedelta(days=DAYS_CHARTED - 1)).date()
    received = dict(
        PatientRecord.objects.filter(created_at__date__gte=first_day)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    days = [first_day + timedelta(days=i) for i in range(DAYS_CHARTED)]
    return DashboardFigures(
        persons=Person.objects.filter(status=PersonStatus.ACTIVE).count(),
        records_by_member=list(by_member),
        open_reviews=sum(n for _, n in age_bands),
        review_ages=age_bands,
        oldest_review=oldest,
        consents_by_status=dict(Consent.objects.values("status").annotate(n=Count("id")).values_list("status", "n")),
        break_glass_to_review=BreakGlass.objects.filter(reviewed_at__isnull=True).count(),
        inbox_by_state=dict(
            InboundMessage.objects.filter(
                state__in=[MessageState.RECEIVED, MessageState.FAILED, MessageState.ERROR, MessageState.REJECTED]
            )
            .values("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        ),
        failed_training_runs=TrainingRun.objects.filter(status=TrainingRun.Status.FAILED).count(),
        documents=DocumentEntry.objects.filter(status=DocumentStatus.CURRENT).count(),
        dead_letters=DeadLetter.objects.filter(resolved=False).count(),
        score_histogram=histogram,
        review_threshold=review_threshold(),
        auto_link_threshold=auto_link_threshold(),
        records_per_day=[(day, received.get(day, 0)) for day in days],
    )


# --- a person's page -------------------------------------------------------------------------


def who_may_see(person: Person, members: list[Organization]) -> list[tuple[Organization, dict[str, Decision]]]:
    """decide() for each member and each shown purpose, with the person's consents read once."""
    at = timezone.now()
    consents = consents_of_person(person, at)
    return [
        (member, {p: decide(person, member, p, at=at, consents=consents) for p in SHOWN_PURPOSES}) for member in members
    ]


@dataclass
class LinkedRecord:
    record: PatientRecord
    link: Link


@dataclass
class HistoryEntry:
    change: LinkChange
    events: list[LinkEvent]
    undoable: bool


@dataclass
class MemberDecision:
    organization: Organization
    decisions: list[tuple[str, Decision]]  # (purpose, decision)


@dataclass
class PersonPage:
    person: Person
    records: list[LinkedRecord]
    history: list[HistoryEntry]
    consents: list[Consent]
    decisions: list[MemberDecision]
    documents: list[DocumentEntry]
    merged_from: list[Person] = field(default_factory=list)


def person_page(person: Person) -> PersonPage:
    links = list(
        Link.objects.filter(person=person, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH])
        .select_related("record__organization")
        .order_by("record__organization__name", "record__local_id")
    )
    return PersonPage(
        person=person,
        records=[LinkedRecord(link.record, link) for link in links],
        history=link_history(person),
        consents=list(consents_under(identifiers_of_person(person)).select_related("collected_by", "recorded_by")),
        decisions=[
            MemberDecision(organization, list(row.items()))
            for organization, row in who_may_see(
                person, list(Organization.objects.filter(active=True).order_by("name"))
            )
        ],
        merged_from=list(Person.objects.filter(merged_into=person).order_by("euid")),
        documents=list(
            DocumentEntry.objects.filter(record__in=[link.record for link in links])
            .select_related("custodian", "record")
            .order_by("-date", "-pk")[:100]
        ),
    )


def link_history(person: Person, limit: int = 100) -> list[HistoryEntry]:
    """Every change that moved a link to or from the person, or merged another person into it, newest first."""
    touching = Q(events__person_before=person) | Q(events__person_after=person) | Q(survivor=person)
    touching |= Q(retired_person=person)
    changes = (
        LinkChange.objects.filter(touching)
        .distinct()
        .select_related("staff_user", "retired_person", "survivor")
        .prefetch_related(
            # A batch change can move thousands of records: show only the moves to or from this person.
            Prefetch(
                "events",
                queryset=LinkEvent.objects.filter(Q(person_before=person) | Q(person_after=person))
                .select_related("record__organization", "person_before", "person_after")
                .order_by("pk"),
            )
        )
        .order_by("-created_at", "-pk")[:limit]
    )
    undone = set(LinkChange.objects.filter(undoes__in=[c.pk for c in changes]).values_list("undoes_id", flat=True))
    return [
        HistoryEntry(
            change=c, events=list(c.events.all()), undoable=c.kind not in NOT_UNDONE_HERE and c.pk not in undone
        )
        for c in changes
    ]


def disclosures_of_person(person: Person, limit: int = 50) -> QuerySet[AuditEvent]:
    """The person's audit trail (an accounting of disclosures): events naming its EUID or a merged one's."""
    euids = [person.euid, *Person.objects.filter(merged_into=person).values_list("euid", flat=True)]
    return (
        AuditEvent.objects.filter(person_euid__in=euids)
        .select_related("organization", "staff_user")
        .order_by("-sequence")[:limit]
    )


# --- audit search ------------------------------------------------------------------------------


@dataclass
class AuditQuery:
    event_type: str = ""
    organization_id: int | None = None
    person_euid: str = ""
    since: date | None = None
    until: date | None = None
    outcome: str = ""


def search_audit(query: AuditQuery) -> QuerySet[AuditEvent]:
    """Audit events meeting every given criterion, newest first."""
    events = AuditEvent.objects.select_related("organization", "staff_user").order_by("-sequence")
    if query.event_type:
        events = events.filter(event_type=query.event_type)
    if query.organization_id:
        events = events.filter(organization_id=query.organization_id)
    if query.person_euid:
        events = events.filter(person_euid=query.person_euid)
    if query.since:
        events = events.filter(recorded_at__date__gte=query.since)
    if query.until:
        events = events.filter(recorded_at__date__lte=query.until)
    if query.outcome:
        events = events.filter(outcome=query.outcome)
    return events


def audit_event_types() -> list[str]:
    return list(AuditEvent.objects.order_by().values_list("event_type", flat=True).distinct())


# --- what a merge or split changed for whom --------------------------------------------------


@dataclass(frozen=True)
class AccessChange:
    """One member's access to one record's data for one purpose, before and after a link change."""

    record: PatientRecord
    requester: Organization
    purpose: str
    before: bool
    after: bool
    reason: str  # why, after the change


def records_of_persons(person_ids: set[int]) -> list[int]:
    return list(
        Link.objects.filter(person_id__in=person_ids, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH])
        .values_list("record_id", flat=True)
        .distinct()
    )


def access_to_records(record_ids: list[int]) -> dict[tuple[int, int, str], Decision]:
    """What every member may see of each record's person, by purpose: consents follow the person a
    record belongs to, so a merge or a split can change them for records it did not touch."""
    person_of = dict(
        Link.objects.filter(
            record_id__in=record_ids, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH]
        ).values_list("record_id", "person_id")
    )
    persons = {p.pk: p for p in Person.objects.filter(pk__in=set(person_of.values()))}
    members = list(Organization.objects.filter(active=True).order_by("name"))
    by_person = {
        person_id: {(m.pk, purpose): d for m, row in who_may_see(person, members) for purpose, d in row.items()}
        for person_id, person in persons.items()
    }
    return {
        (record_id, member_id, purpose): decision
        for record_id, person_id in person_of.items()
        for (member_id, purpose), decision in by_person[person_id].items()
    }


def access_changes(before: dict, after: dict) -> list[AccessChange]:
    changed = [key for key in after if key in before and before[key].permitted != after[key].permitted]
    records = PatientRecord.objects.select_related("organization").in_bulk({k[0] for k in changed})
    members = Organization.objects.in_bulk({k[1] for k in changed})
    return [
        AccessChange(
            records[r], members[m], p, before[(r, m, p)].permitted, after[(r, m, p)].permitted, after[(r, m, p)].reason
        )
        for r, m, p in sorted(changed)
    ]
