"""Mapping between FHIR Patient resources and the master patient index.

Two kinds of Patient leave the node: a member's record (id: the record's number, as the member
registered it) and a person (id: the EUID, the golden record with every member's identifier).
"""

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import ValidationError

from hie.exceptions import Forbidden, Unprocessable, ValidationFailed
from hie.fhir.body import parse_json
from matching.models import PatientRecord, Person, PersonStatus, Sex
from matching.services import Demographics

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MATCH_GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"
GENDERS = {choice.value for choice in Sex}


def euid_system() -> str:
    return f"{settings.HIE_CANONICAL_BASE}/sid/euid"


def validation_message(error: ValidationError, what: str) -> str:
    """Where and why a resource is invalid, without echoing the values (they are PHI)."""
    problems = [
        f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
        for issue in error.errors(include_input=False, include_url=False)[:5]
    ]
    return f"{what} is not valid FHIR R4: " + "; ".join(problems)


def parse_resource(body: bytes | object, model: type, what: str) -> object:
    """`body` (JSON text, or already decoded) validated as a `model` resource; errors name where, not what."""
    content = parse_json(body) if isinstance(body, bytes | str) else body
    if not isinstance(content, dict) or content.get("resourceType") != model.__name__:
        raise ValidationFailed(f"the body must be a {model.__name__} resource")
    try:
        return model.model_validate(content)
    except ValidationError as error:
        raise ValidationFailed(validation_message(error, what)) from None


def parse_patient(body: bytes) -> FhirPatient:
    return parse_resource(body, FhirPatient, "the Patient")


def parse_token(text: str) -> tuple[str | None, str]:
    """A FHIR token `system|value` (or a bare value) as (system or None, value)."""
    if "|" in text:
        system, value = text.split("|", 1)
        return (system or None), value
    return None, text


@dataclass(frozen=True)
class PatientRegistration:
    """What a Patient resource tells the index: whose record, what it says, and whether it was merged away."""

    identifier_system: str
    local_id: str
    demographics: Demographics
    active: bool
    replaced_by: tuple[str, str] | None


def demographics_of(patient: FhirPatient) -> Demographics:
    names = sorted(patient.name or [], key=lambda n: {"official": 0, "usual": 1, None: 2}.get(n.use, 3))
    current = next((n for n in names if n.use not in ("old", "maiden")), None)
    previous = [n.family for n in names if n.use in ("old", "maiden") and n.family]
    given = list(current.given or []) if current else []
    if patient.gender and patient.gender not in GENDERS:
        raise Unprocessable("Patient.gender must be one of male, female, other, unknown")
    birth_date = patient.birthDate
    if birth_date is not None and not isinstance(birth_date, date):
        raise Unprocessable("Patient.birthDate must be a full date (YYYY-MM-DD) for matching")
    if birth_date is not None and birth_date > date.today():
        raise Unprocessable("Patient.birthDate is in the future")
    telecom = patient.telecom or []
    addresses = sorted(patient.address or [], key=lambda a: {"home": 0, None: 1}.get(a.use, 2))
    address = next((a for a in addresses if a.use != "old"), None)
    ssn = next((i.value for i in patient.identifier or [] if i.system == SSN_SYSTEM and i.value), "")
    return Demographics(
        given_name=given[0] if given else "",
        middle_name=" ".join(given[1:]),
        family_name=(current.family or "") if current else "",
        suffix=(current.suffix or [""])[0] if current else "",
        previous_family_names=tuple(previous),
        sex=patient.gender or Sex.UNKNOWN,
        birth_date=birth_date,
        ssn=ssn,
        phones=tuple(t.value for t in telecom if t.system in ("phone", "sms") and t.value),
        email=next((t.value for t in telecom if t.system == "email" and t.value), ""),
        address_line=" ".join(address.line or []) if address else "",
        city=(address.city or "") if address else "",
        state=(address.state or "") if address else "",
        postal_code=(address.postalCode or "") if address else "",
    )


def _replaced_by(patient: FhirPatient) -> tuple[str, str] | None:
    """PIXm ITI-104 merge: the surviving identifier named by `link.type = replaced-by`."""
    for link in patient.link or []:
        if link.type != "replaced-by":
            continue
        other = link.other
        if other.identifier is not None and other.identifier.system and other.identifier.value:
            return other.identifier.system, other.identifier.value
        reference = other.reference or ""
        if reference.startswith("Patient?identifier="):
            system, value = parse_token(reference.removeprefix("Patient?identifier="))
            if system and value:
                return system, value
        raise Unprocessable("a replaced-by link must name the surviving patient by identifier (system and value)")
    return None


def registration_of(
    patient: FhirPatient, own_systems: list[str], wanted: tuple[str, str] | None = None
) -> PatientRegistration:
    """The registration a member sends: its identifier is `wanted` (conditional update) or the
    Patient's first identifier under one of the member's own systems."""
    identifiers = [(i.system, i.value) for i in patient.identifier or [] if i.system and i.value]
    if wanted is not None:
        if wanted not in identifiers:
            raise Unprocessable("the Patient must carry the identifier named in the request")
        system, value = wanted
    else:
        own = [(s, v) for s, v in identifiers if s in own_systems]
        if not own:
            if any(s != SSN_SYSTEM for s, _ in identifiers):
                raise Forbidden("a member may only register identifiers under its own identifier systems")
            raise Unprocessable("the Patient needs an identifier under one of the member's identifier systems")
        system, value = own[0]
    return PatientRegistration(
        identifier_system=system,
        local_id=value,
        demographics=demographics_of(patient),
        active=patient.active is not False,
        replaced_by=_replaced_by(patient),
    )


def _human_name(given: str, middle: str, family: str, suffix: str, use: str = "official") -> dict:
    name = {"use": use}
    if family:
        name["family"] = family
    given_names = [g for g in (given, *middle.split()) if g]
    if given_names:
        name["given"] = given_names
    if suffix:
        name["suffix"] = [suffix]
    return name


def record_to_fhir(record: PatientRecord, person: Person | None) -> FhirPatient:
    """A member's record as stored, with the enterprise identifier once it is linked. The SSN is never sent."""
    identifiers = [{"use": "usual", "system": record.identifier_system, "value": record.local_id}]
    if person is not None:
        identifiers.append({"use": "official", "system": euid_system(), "value": person.euid})
    names = [_human_name(record.given_name, record.middle_name, record.family_name, record.suffix)]
    names += [{"use": "old", "family": previous} for previous in record.previous_family_names]
    telecom = [{"system": "phone", "value": p} for p in record.phones]
    if record.email:
        telecom.append({"system": "email", "value": record.email})
    resource = {
        "resourceType": "Patient",
        "id": str(record.pk),
        "meta": {"versionId": str(record.version), "lastUpdated": record.updated_at.isoformat()},
        "active": record.active,
        "identifier": identifiers,
        "name": [n for n in names if len(n) > 1],
        "telecom": telecom,
        "gender": record.sex,
        "managingOrganization": {"reference": f"Organization/{record.organization_id}"},
    }
    if record.birth_date:
        resource["birthDate"] = record.birth_date.isoformat()
    if record.address_line or record.city or record.postal_code:
        resource["address"] = [_address(record.address_line, record.city, record.state, record.postal_code)]
    if person is not None and not record.active:
        resource["link"] = [{"type": "replaced-by", "other": {"reference": f"Patient/{person.euid}"}}]
    return FhirPatient.model_validate(resource)


def _address(line: str, city: str, state: str, postal_code: str) -> dict:
    address = {"use": "home", "line": [line] if line else None, "city": city, "state": state, "postalCode": postal_code}
    return {key: value for key, value in address.items() if value}


def person_to_fhir(person: Person, survivor: Person | None = None) -> FhirPatient:
    """A person's golden record (survivorship.py), carrying every member's identifier and the EUID."""
    golden = person.golden or {}
    identifiers = [{"use": "official", "system": euid_system(), "value": person.euid}]
    identifiers += [{"use": "usual", "system": i["system"], "value": i["value"]} for i in golden.get("identifiers", [])]
    names = [
        _human_name(n["given"], n["middle"], n["family"], n["suffix"], n.get("use", "official"))
        for n in golden.get("names", [])
    ]
    telecom = [{"system": "phone", "value": p} for p in golden.get("phones", [])]
    telecom += [{"system": "email", "value": e} for e in golden.get("emails", [])]
    resource = {
        "resourceType": "Patient",
        "id": person.euid,
        "meta": {"lastUpdated": person.updated_at.isoformat()},
        "active": person.status == PersonStatus.ACTIVE,
        "identifier": identifiers,
        "name": [n for n in names if len(n) > 1],
        "telecom": telecom,
        "gender": golden.get("sex") or Sex.UNKNOWN,
    }
    if golden.get("birth_date"):
        resource["birthDate"] = golden["birth_date"]
    if golden.get("address"):
        a = golden["address"]
        resource["address"] = [_address(a["line"], a["city"], a["state"], a["postal_code"])]
    if survivor is not None:
        resource["link"] = [{"type": "replaced-by", "other": {"reference": f"Patient/{survivor.euid}"}}]
    return FhirPatient.model_validate(resource)


MATCH_COUNT_DEFAULT, MATCH_COUNT_MAX = 10, 100


@dataclass(frozen=True)
class MatchRequest:
    patient: FhirPatient
    only_certain: bool
    count: int


def parse_match_request(body: bytes) -> MatchRequest:
    """The Parameters of Patient/$match: resource (a Patient), onlyCertainMatches, count."""
    content = parse_json(body)
    parse_resource(content, Parameters, "the Parameters")
    by_name: dict[str, dict] = {}
    for parameter in content.get("parameter") or []:
        by_name.setdefault(parameter.get("name"), parameter)
    resource = by_name.get("resource", {}).get("resource")
    if not isinstance(resource, dict):
        raise ValidationFailed("$match needs a resource parameter holding a Patient")
    patient = parse_resource(resource, FhirPatient, "the Patient to match")
    # ITI-119: onlyCertainMatches is a boolean and count an integer; another value[x] is refused, not ignored.
    for name, value_type in (("onlyCertainMatches", "valueBoolean"), ("count", "valueInteger")):
        if name in by_name and value_type not in by_name[name]:
            raise ValidationFailed(f"{name} must be given as {value_type}")
    only_certain = by_name.get("onlyCertainMatches", {}).get("valueBoolean", False)
    count = by_name.get("count", {}).get("valueInteger", MATCH_COUNT_DEFAULT)
    if not isinstance(only_certain, bool):
        raise ValidationFailed("onlyCertainMatches must be a boolean")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValidationFailed("count must be a positive integer")
    return MatchRequest(patient=patient, only_certain=only_certain, count=min(count, MATCH_COUNT_MAX))
