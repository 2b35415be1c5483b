"""Reading the master patient index."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import OuterRef, Subquery

from matching.blocking import pass_of
from matching.models import (
    BlockingKey,
    Link,
    LinkSource,
    LinkState,
    MatchModel,
    ModelStatus,
    PatientRecord,
    Person,
)
from matching.score import Scorer, default_parameters

CURRENT_STATES = (LinkState.MATCH, LinkState.POSSIBLE_MATCH)
_scorers: dict[int, Scorer] = {}


def active_scorer() -> Scorer:
    """The scorer of the newest active model (version 0: the built-in starting parameters)."""
    row = (
        MatchModel.objects.filter(status=ModelStatus.ACTIVE)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    version = row or 0
    if version not in _scorers:
        parameters = MatchModel.objects.get(version=version).parameters if version else default_parameters()
        _scorers.clear()
        _scorers[version] = Scorer(parameters, version=version)
    return _scorers[version]


@dataclass
class Candidate:
    record_id: int
    norm: dict
    person_id: int


@dataclass
class Candidates:
    records: list[Candidate]
    oversized_passes: dict[str, int] = field(default_factory=dict)  # pass -> size of the skipped block


def current_person_subquery(states: tuple[str, ...] = CURRENT_STATES, field: str = "person_id") -> Subquery:
    """The record's current person (or a field of it, such as "person__euid"), for annotating records."""
    return Subquery(Link.objects.filter(record=OuterRef("pk"), state__in=states).values(field)[:1])


# A record linked only provisionally waits for a person's review: it lends its person to nobody,
# or one uncertain link would carry later, confident ones to the wrong person.
CONFIRMED = (LinkState.MATCH,)


def find_candidates(record_id: int, keys: list[str]) -> Candidates:
    """Records sharing a blocking key with this one and confirmed as some person.

    A block larger than MATCH_BLOCK_CAP says little (a shared common value) and costs much;
    it is skipped and reported rather than silently truncated.
    """
    cap = settings.MATCH_BLOCK_CAP
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, other in (
        BlockingKey.objects.filter(key__in=keys).exclude(record_id=record_id).values_list("key", "record_id")
    ):
        by_key[key].append(other)
    oversized = {}
    ids: set[int] = set()
    for key, members in by_key.items():
        if len(members) > cap:
            oversized[pass_of(key)] = max(oversized.get(pass_of(key), 0), len(members))
        else:
            ids.update(members)
    rows = (
        PatientRecord.objects.filter(pk__in=ids, active=True)
        .annotate(person_id=current_person_subquery(CONFIRMED))
        .values_list("pk", "norm", "person_id")
    )
    return Candidates(
        records=[Candidate(pk, norm, person) for pk, norm, person in rows if person is not None],
        oversized_passes=oversized,
    )


def current_link(record_id: int) -> Link | None:
    return Link.objects.filter(record_id=record_id, state__in=CURRENT_STATES).first()


def refused_persons(record_id: int) -> set[int]:
    """Persons staff said this record is not: never proposed again."""
    return set(
        Link.objects.filter(record_id=record_id, state=LinkState.NO_MATCH, source=LinkSource.MANUAL).values_list(
            "person_id", flat=True
        )
    )


def records_of_person(person_id: int) -> list[PatientRecord]:
    return list(
        PatientRecord.objects.filter(links__person_id=person_id, links__state__in=CURRENT_STATES).select_related(
            "organization"
        )
    )


def person_by_euid(euid: str) -> Person | None:
    """The person with this EUID, following merges to the survivor."""
    person = Person.objects.filter(euid=euid).first()
    seen = set()
    while person is not None and person.merged_into_id and person.pk not in seen:
        seen.add(person.pk)
        person = person.merged_into
    return person


def record_by_identifier(identifier_system: str, local_id: str) -> PatientRecord | None:
    return PatientRecord.objects.filter(identifier_system=identifier_system, local_id=local_id).first()
