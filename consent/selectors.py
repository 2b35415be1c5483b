"""Reading the consent registry."""

from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from consent.models import BreakGlass, Consent, ConsentStatus, MemberPolicy
from consent.provisions import covers
from hie.orgs.models import Organization
from matching.models import Link, LinkState, PatientRecord, Person
from matching.selectors import identified_record, person_by_euid


def identifiers_of_person(person: Person) -> set[tuple[str, str]]:
    """Every identifier a consent of this person may have been recorded under: the EUIDs of the
    person and of the persons merged into it, and the identifiers of its linked records (also
    records merged away at the source)."""
    from hie.fhir.patient import euid_system

    euids, frontier = {person.euid}, [person.pk]
    while frontier:
        merged = list(Person.objects.filter(merged_into_id__in=frontier).values_list("pk", "euid"))
        frontier = [pk for pk, _ in merged]
        euids |= {euid for _, euid in merged}
    records = Link.objects.filter(person=person, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH]).values_list(
        "record__identifier_system", "record__local_id"
    )
    return {(euid_system(), euid) for euid in euids} | set(records)


# The identifiers of identifiers_of_person() and the active consents under them, in one statement:
# decide() runs for every answer that carries patient data.
_CONSENTS_OF_PERSON = f"""
    WITH RECURSIVE merged(id, euid) AS (
        SELECT id, euid FROM {Person._meta.db_table} WHERE id = %(person)s
        UNION SELECT p.id, p.euid FROM {Person._meta.db_table} p JOIN merged m ON p.merged_into_id = m.id
    ), identifiers(system, value) AS (
        SELECT %(euid_system)s, euid FROM merged
        UNION ALL
        SELECT r.identifier_system, r.local_id
        FROM {Link._meta.db_table} l JOIN {PatientRecord._meta.db_table} r ON r.id = l.record_id
        WHERE l.person_id = %(person)s AND l.state IN (%(match)s, %(possible)s)
    )
    SELECT DISTINCT c.* FROM {Consent._meta.db_table} c
    JOIN identifiers i ON c.patient_system = i.system AND c.patient_value = i.value
    WHERE c.status = %(active)s AND c.date_recorded <= %(at)s
    ORDER BY c.date_recorded DESC, c.id DESC
"""  # noqa: S608 - table names only


def consents_of_person(person: Person, at: datetime) -> list[Consent]:
    """Active consents of the person in force at `at` (recorded by then, root period covering it)."""
    from hie.fhir.patient import euid_system

    parameters = {
        "person": person.pk, "euid_system": euid_system(), "match": LinkState.MATCH.value,
        "possible": LinkState.POSSIBLE_MATCH.value, "active": ConsentStatus.ACTIVE.value, "at": at,
    }  # fmt: skip
    consents = Consent.objects.raw(_CONSENTS_OF_PERSON, parameters)
    return [c for c in consents if covers(c.provision.get("period"), at)]


def consents_under(identifiers: set[tuple[str, str]]) -> QuerySet[Consent]:
    """Every consent recorded under one of these identifiers, newest first (indexed look-ups)."""
    condition = Q(pk__in=[])
    for system, value in identifiers:
        condition |= Q(patient_system=system, patient_value=value)
    return Consent.objects.filter(condition).order_by("-date_recorded", "-pk")


_PERSONS_WITH_CONSENTS = f"""
    SELECT l.person_id FROM {Link._meta.db_table} l JOIN {PatientRecord._meta.db_table} r ON r.id = l.record_id
    WHERE l.person_id IN ({{persons}}) AND l.state IN (%s, %s) AND EXISTS (
        SELECT 1 FROM {Consent._meta.db_table} c
        WHERE c.status = %s AND c.patient_system = r.identifier_system AND c.patient_value = r.local_id)
    UNION
    SELECT p.id FROM {Person._meta.db_table} p
    WHERE p.id IN ({{persons}}) AND EXISTS (
        SELECT 1 FROM {Consent._meta.db_table} c
        WHERE c.status = %s AND c.patient_system = %s AND c.patient_value = p.euid)
    UNION
    SELECT p.merged_into_id FROM {Person._meta.db_table} p WHERE p.merged_into_id IN ({{persons}})
"""  # noqa: S608 - table names only


def persons_with_consents(persons: list[Person]) -> set[int]:
    """Which of these persons have an active consent under one of their records' identifiers or
    their EUID, in one indexed query (persons that others were merged into count too: decide()
    looks at the merged EUIDs itself). Every read of a person asks, so it is plain SQL."""
    from hie.fhir.patient import euid_system

    if not persons:
        return set()
    ids = [p.pk for p in persons]
    marks = ", ".join(["%s"] * len(ids))
    parameters = [*ids, LinkState.MATCH.value, LinkState.POSSIBLE_MATCH.value, ConsentStatus.ACTIVE.value,
                  *ids, ConsentStatus.ACTIVE.value, euid_system(), *ids]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_PERSONS_WITH_CONSENTS.format(persons=marks), parameters)
        return {row[0] for row in cursor.fetchall()}


def persons_with_break_glass(person_ids: list[int], requester: Organization, at: datetime) -> set[int]:
    return set(
        BreakGlass.objects.filter(
            person_id__in=person_ids, requester=requester, opened_at__lte=at, expires_at__gt=at
        ).values_list("person_id", flat=True)
    )


def implicit_policies(organization_ids: set[int]) -> dict[int, str]:
    """The implicit policy each of these custodians applies to the data it holds (its own, or the
    deployment's), in one query, for callers deciding about many custodians at once."""
    own = dict(
        MemberPolicy.objects.filter(organization_id__in=organization_ids).values_list("organization_id", "policy")
    )
    return {pk: own.get(pk) or settings.CONSENT_IMPLICIT_POLICY for pk in organization_ids}


def member_policy(organization: Organization) -> str | None:
    return MemberPolicy.objects.filter(organization=organization).values_list("policy", flat=True).first()


def active_break_glass(person: Person, requester: Organization, at: datetime) -> BreakGlass | None:
    return (
        BreakGlass.objects.filter(person=person, requester=requester, opened_at__lte=at, expires_at__gt=at)
        .order_by("-expires_at")
        .first()
    )


def break_glass_awaiting_review() -> list[BreakGlass]:
    return list(BreakGlass.objects.filter(reviewed_at__isnull=True).select_related("person", "requester"))


def euid_of_identifier(system: str, value: str) -> str:
    """The EUID of the person a consent's identifier belongs to now (a merged EUID leads to the
    survivor), for the audit trail; empty while the record waits to be matched."""
    from hie.fhir.patient import euid_system

    if system == euid_system():
        person = person_by_euid(value)
        return person.euid if person is not None else ""
    found = identified_record(system, value)
    return (found.euid or "") if found is not None else ""
