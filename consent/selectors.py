"""Reading the consent registry."""

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from consent.models import BreakGlass, Consent, ConsentStatus, MemberPolicy
from consent.provisions import covers
from hie.orgs.models import Organization
from matching.models import Link, LinkState, Person


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


def consents_of_person(person: Person, at: datetime) -> list[Consent]:
    """Active consents of the person in force at `at` (recorded by then, root period covering it)."""
    consents = consents_under(identifiers_of_person(person)).filter(status=ConsentStatus.ACTIVE, date_recorded__lte=at)
    return [c for c in consents if covers(c.provision.get("period"), at)]


def consents_under(identifiers: set[tuple[str, str]]) -> QuerySet[Consent]:
    """Every consent recorded under one of these identifiers, newest first (indexed look-ups)."""
    condition = Q(pk__in=[])
    for system, value in identifiers:
        condition |= Q(patient_system=system, patient_value=value)
    return Consent.objects.filter(condition).order_by("-date_recorded", "-pk")


def persons_with_consents(persons: list[Person]) -> set[int]:
    """Which of these persons have an active consent under one of their records' identifiers or
    their EUID, in two indexed queries (persons that others were merged into count too: decide()
    looks at the merged EUIDs itself)."""
    from hie.fhir.patient import euid_system

    ids = [p.pk for p in persons]
    consent_of_record = Consent.objects.filter(
        status=ConsentStatus.ACTIVE,
        patient_system=OuterRef("record__identifier_system"),
        patient_value=OuterRef("record__local_id"),
    )
    by_record = Link.objects.filter(
        Exists(consent_of_record), person_id__in=ids, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH]
    ).values_list("person_id", flat=True)
    euids = {p.euid: p.pk for p in persons}
    by_euid = Consent.objects.filter(
        status=ConsentStatus.ACTIVE, patient_system=euid_system(), patient_value__in=list(euids)
    ).values_list("patient_value", flat=True)
    merged = Person.objects.filter(merged_into_id__in=ids).values_list("merged_into_id", flat=True)
    return set(by_record) | {euids[value] for value in by_euid} | set(merged)


def persons_with_break_glass(person_ids: list[int], requester: Organization, at: datetime) -> set[int]:
    return set(
        BreakGlass.objects.filter(
            person_id__in=person_ids, requester=requester, opened_at__lte=at, expires_at__gt=at
        ).values_list("person_id", flat=True)
    )


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
