"""PDQm ITI-78 search parameters of GET /fhir/Patient, read into the index's search criteria."""

from dataclasses import dataclass

from django.conf import settings
from django.http import QueryDict

from hie.datesearch import date_range
from hie.exceptions import ValidationFailed
from hie.fhir.patient import euid_system, parse_token
from matching.normalize import normalise_email, normalise_phone
from matching.selectors import PersonCriteria

# parameter -> what it means, also the list the CapabilityStatement publishes
SEARCH_PARAMETERS = {
    "_id": ("token", "the EUID of a person, or the id of a member's record"),
    "identifier": ("token", "system|value of any member's identifier, or of the EUID"),
    "family": ("string", "family name (or a previous one), from its start, case-insensitive"),
    "given": ("string", "given or middle name, from its start, case-insensitive"),
    "birthdate": ("date", "birth date; YYYY, YYYY-MM or YYYY-MM-DD with eq, ne, lt, le, gt, ge"),
    "gender": ("token", "male, female, other or unknown"),
    "telecom": ("token", "phone or email, exactly (phones compared as E.164)"),
    "address": ("string", "any part of the address"),
    "address-city": ("string", "city, from its start"),
    "address-postalcode": ("string", "postal code, from its start"),
}
PAGING = {"_count", "_offset", "_format"}
DEFAULT_COUNT = 20


@dataclass(frozen=True)
class SearchQuery:
    criteria: PersonCriteria
    offset: int
    count: int


def non_negative(query: QueryDict, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdecimal():
        raise ValidationFailed(f"{name} must be a non-negative integer")
    return int(raw)


def parse(query: QueryDict) -> SearchQuery:
    unknown = sorted(set(query) - set(SEARCH_PARAMETERS) - PAGING)
    if unknown:
        raise ValidationFailed("unsupported search parameter(s): " + ", ".join(unknown))
    criteria = PersonCriteria()
    for value in query.getlist("_id"):
        if value.isdecimal():
            criteria.record_ids.append(int(value))
        else:
            criteria.euids.append(value)
    for raw in query.getlist("identifier"):
        system, value = parse_token(raw)
        if not value:
            raise ValidationFailed("identifier needs a value (system|value or value)")
        if system == euid_system():
            criteria.euids.append(value)
        else:
            criteria.identifiers.append((system, value))
    criteria.family += [v for v in query.getlist("family") if v.strip()]
    criteria.given += [v for v in query.getlist("given") if v.strip()]
    criteria.birth_date += [date_range(v) for v in query.getlist("birthdate")]
    genders = query.getlist("gender")
    if genders:
        if len(genders) > 1 or genders[0] not in ("male", "female", "other", "unknown"):
            raise ValidationFailed("gender must be one of male, female, other, unknown")
        criteria.gender = genders[0]
    for raw in query.getlist("telecom"):
        system, value = parse_token(raw)
        if system == "email" or (system is None and "@" in value):
            email = normalise_email(value)
            if not email:
                raise ValidationFailed("telecom is not a valid email address")
            criteria.emails.append(email)
        else:
            phone = normalise_phone(value)
            if not phone:
                raise ValidationFailed("telecom is not a valid phone number")
            criteria.phones.append(phone)
    criteria.address += [v for v in query.getlist("address") if v.strip()]
    criteria.city += [v for v in query.getlist("address-city") if v.strip()]
    criteria.postal_code += [v for v in query.getlist("address-postalcode") if v.strip()]
    if criteria == PersonCriteria():
        raise ValidationFailed("name at least one search parameter; listing every patient is not offered")
    count = non_negative(query, "_count", DEFAULT_COUNT)
    return SearchQuery(
        criteria=criteria,
        offset=non_negative(query, "_offset", 0),
        count=max(1, min(count, settings.FHIR_MAX_PAGE_SIZE)),
    )
