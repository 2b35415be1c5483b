"""Reading the master patient index."""

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

import numpy as np
import orjson
from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast

from hie.bulk import rows_of
from matching.blocking import blocking_keys, key_for, pass_of
from matching.compare import RecordTable
from matching.models import (
    BlockingKey,
    Link,
    LinkSource,
    LinkState,
    MatchModel,
    ModelStatus,
    PatientRecord,
    Person,
    PersonStatus,
)
from matching.score import ScoredPairs, Scorer, default_parameters, rank_persons

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


def norms_of(records: QuerySet, *fields: str) -> list[tuple]:
    """(pk, norm, *fields) of the records, in their queryset's order: the bulk read of normalised
    forms, read as their text and decoded by orjson (several times faster than Django's
    JSONField).

    On PostgreSQL the rows come from psycopg's cursor itself (hie.bulk.rows_of), which
    gives each column its Python type: Django's per-row conversion took as long as the query
    for a batch's 150,000 records.
    """
    rows = rows_of(records.annotate(norm_text=Cast("norm", TextField())).values_list("pk", "norm_text", *fields))
    return [(pk, orjson.loads(norm_text), *values) for pk, norm_text, *values in rows]


def current_person_subquery(states: tuple[str, ...] = CURRENT_STATES, field: str = "person_id") -> Subquery:
    """The record's current person (or a field of it, such as "person__euid"), for annotating records."""
    return Subquery(Link.objects.filter(record=OuterRef("pk"), state__in=states).values(field)[:1])


# A record linked only provisionally waits for a person's review: it lends its person to nobody,
# or one uncertain link would carry later, confident ones to the wrong person.
CONFIRMED = (LinkState.MATCH,)


# Candidates in one statement: the records behind the keys (each key's block counted, and left
# out above the cap), with the person each is confirmed as.
_CANDIDATES = f"""
    WITH hits AS (
        SELECT key, record_id FROM {BlockingKey._meta.db_table} WHERE key IN ({{keys}}) AND record_id <> %s
    ), sizes AS (
        SELECT key, count(*) AS size FROM hits GROUP BY key
    )
    SELECT NULL, NULL, NULL, key, size FROM sizes WHERE size > %s
    UNION ALL
    SELECT r.id, r.norm, l.person_id, NULL, NULL
    FROM {PatientRecord._meta.db_table} r
    JOIN {Link._meta.db_table} l ON l.record_id = r.id AND l.state IN ({", ".join(["%s"] * len(CONFIRMED))})
    WHERE r.active AND r.id IN (SELECT h.record_id FROM hits h JOIN sizes s ON s.key = h.key WHERE s.size <= %s)
"""  # noqa: S608 - table names only


def find_candidates(record_id: int | None, keys: list[int]) -> Candidates:
    """Records sharing a blocking key with this one and confirmed as some person (CONFIRMED).

    A block larger than MATCH_BLOCK_CAP says little (a shared common value) and costs much;
    it is skipped and reported rather than silently truncated.
    """
    if not keys:
        return Candidates(records=[])
    cap = settings.MATCH_BLOCK_CAP
    with connection.cursor() as cursor:
        cursor.execute(_CANDIDATES.format(keys=", ".join(["%s"] * len(keys))),
                       [*keys, record_id or 0, cap, *CONFIRMED, cap])  # fmt: skip
        rows = cursor.fetchall()
    oversized: dict[str, int] = {}
    records = []
    for pk, norm, person, key, size in rows:
        if key is not None:
            oversized[pass_of(key)] = max(oversized.get(pass_of(key), 0), int(size))
        else:
            records.append(Candidate(pk, orjson.loads(norm), person))
    records.sort(key=lambda candidate: candidate.record_id)
    return Candidates(records=records, oversized_passes=oversized)


@dataclass
class PersonScore:
    person_id: int
    probability: float
    record_id: int
    scorer: Scorer = field(repr=False)
    scored: ScoredPairs = field(repr=False)
    pair: int = field(repr=False)  # the index of the person's best pair in `scored`

    @cached_property
    def explanation(self) -> dict:
        """What each field contributed to the person's best pair; built only for the persons
        someone looks at (a $match answer or a review lists a few of many candidates)."""
        return self.scorer.explain(self.scored, self.pair)


def score_against_candidates(norm: dict, candidates: list, excluded_persons: set[int]) -> list[PersonScore]:
    """Score a record against candidate records; the best pair stands for each candidate person."""
    candidates = [c for c in candidates if c.person_id not in excluded_persons]
    if not candidates:
        return []
    scorer = active_scorer()
    table = RecordTable([norm] + [c.norm for c in candidates])
    left = np.zeros(len(candidates), dtype=np.int64)
    right = np.arange(1, len(candidates) + 1)
    scored = scorer.score(table, left, right)
    return [
        PersonScore(person, probability, candidates[i].record_id, scorer, scored, i)
        for person, i, probability in rank_persons(((c.person_id, i) for i, c in enumerate(candidates)), scored)
    ]


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


def match_demographics(norm: dict) -> list[PersonScore]:
    """Persons who might be the patient described by `norm` (a normalised query, not a stored
    record), best first: the same candidates and scorer as match-on-write ($match uses it)."""
    found = find_candidates(None, blocking_keys(norm))
    return score_against_candidates(norm, found.records, set())


@dataclass(frozen=True)
class CrossReference:
    record_id: int
    organization_id: int
    identifier_system: str
    local_id: str


def confirmed_person_of(record: PatientRecord) -> Person | None:
    """The person a record is confirmed as; None while it waits for matching or for review."""
    link = Link.objects.filter(record=record, state=LinkState.MATCH).select_related("person").first()
    return link.person if link else None


@dataclass(frozen=True)
class IdentifiedRecord:
    record_id: int
    active: bool
    person_id: int | None  # the person it is confirmed as, if any
    euid: str | None


# PIXm runs these two reads on every query; they are written as SQL to spare the ORM's work.
_IDENTIFIED_RECORD = f"""
    SELECT r.id, r.active, l.person_id, p.euid
    FROM {PatientRecord._meta.db_table} r
    LEFT JOIN {Link._meta.db_table} l ON l.record_id = r.id AND l.state = %s
    LEFT JOIN {Person._meta.db_table} p ON p.id = l.person_id
    WHERE r.identifier_system = %s AND r.local_id = %s
"""  # noqa: S608 - table names only
_CROSS_REFERENCES = f"""
    SELECT r.id, r.organization_id, r.identifier_system, r.local_id
    FROM {Link._meta.db_table} l JOIN {PatientRecord._meta.db_table} r ON r.id = l.record_id
    WHERE l.person_id = %s AND l.state = %s AND r.active
    ORDER BY r.identifier_system, r.local_id
"""  # noqa: S608 - table names only


def identified_record(identifier_system: str, local_id: str) -> IdentifiedRecord | None:
    """The record registered under an identifier and the person it is confirmed as, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(_IDENTIFIED_RECORD, [LinkState.MATCH.value, identifier_system, local_id])
        row = cursor.fetchone()
    return IdentifiedRecord(row[0], bool(row[1]), row[2], row[3]) if row else None


def cross_references(person_id: int) -> list[CrossReference]:
    """The identifiers every member holds for the person: its active, confirmed records."""
    with connection.cursor() as cursor:
        cursor.execute(_CROSS_REFERENCES, [person_id, LinkState.MATCH.value])
        return [CrossReference(*row) for row in cursor.fetchall()]


@dataclass
class PersonCriteria:
    """What a PDQm search asks for, in the index's terms. Strings match case-insensitively from their start."""

    euids: list[str] = field(default_factory=list)
    record_ids: list[int] = field(default_factory=list)
    identifiers: list[tuple[str | None, str]] = field(default_factory=list)  # (system or None, value)
    family: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    gender: str = ""
    birth_date: list[tuple[str, date, date]] = field(default_factory=list)  # (FHIR prefix, first day, last day)
    phones: list[str] = field(default_factory=list)  # E.164
    emails: list[str] = field(default_factory=list)
    address: list[str] = field(default_factory=list)
    city: list[str] = field(default_factory=list)
    postal_code: list[str] = field(default_factory=list)

    def record_conditions(self) -> list[Q]:
        conditions = [Q(active=True)]
        if self.record_ids:
            conditions.append(Q(pk__in=self.record_ids))
        for system, value in self.identifiers:
            conditions.append(Q(local_id=value, **({"identifier_system": system} if system else {})))
        conditions += [Q(family_name__istartswith=v) | Q(previous_family_names__icontains=v) for v in self.family]
        conditions += [Q(given_name__istartswith=v) | Q(middle_name__istartswith=v) for v in self.given]
        if self.gender:
            conditions.append(Q(sex=self.gender))
        conditions += [_date_condition("birth_date", *term) for term in self.birth_date]
        for pass_name, values in (("phone", self.phones), ("email", self.emails)):
            for value in values:
                # Exact telecom matches go through the blocking index, which holds every phone and email.
                keys = BlockingKey.objects.filter(key=key_for(pass_name, value)).values("record_id")
                conditions.append(Q(pk__in=keys))
        conditions += [
            Q(address_line__icontains=v) | Q(city__istartswith=v) | Q(state__iexact=v) | Q(postal_code__istartswith=v)
            for v in self.address
        ]
        conditions += [Q(city__istartswith=v) for v in self.city]
        conditions += [Q(postal_code__istartswith=v) for v in self.postal_code]
        return conditions


def _date_condition(column: str, prefix: str, first: date, last: date) -> Q:
    """A FHIR date search term over the range its precision covers (1990 is all of 1990)."""
    within = Q(**{f"{column}__gte": first, f"{column}__lte": last})
    return {
        "eq": within,
        "ne": ~within,
        "lt": Q(**{f"{column}__lt": first}),
        "le": Q(**{f"{column}__lte": last}),
        "gt": Q(**{f"{column}__gt": last}),
        "ge": Q(**{f"{column}__gte": first}),
    }[prefix]


def search_persons(criteria: PersonCriteria, *, limit: int) -> list[Person]:
    """Active persons with at least one record meeting every criterion, in EUID order, at most `limit`."""
    persons: QuerySet[Person] = Person.objects.filter(status=PersonStatus.ACTIVE)
    if criteria.euids:
        persons = persons.filter(euid__in=criteria.euids)
    conditions = criteria.record_conditions()
    if len(conditions) > 1:  # more than "the record is active"
        records = PatientRecord.objects.all()
        for condition in conditions:
            records = records.filter(condition)
        persons = persons.filter(
            pk__in=Link.objects.filter(state__in=CURRENT_STATES, record__in=records).values("person_id")
        )
    return list(persons.order_by("euid")[:limit])
