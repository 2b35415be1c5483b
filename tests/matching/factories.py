"""Small builders of synthetic registrations for matching tests."""

from datetime import date

from hie.orgs.models import Organization
from hie.orgs.services import create_organization
from matching.csv_input import parse_row
from matching.models import Source
from matching.services import Demographics, NewRegistration, Registration, register_record, register_records_bulk

_counter = iter(range(1, 1_000_000))


def organization(name: str | None = None) -> Organization:
    n = next(_counter)
    return create_organization(name=name or f"Org {n}", identifier_systems=[f"urn:oid:1.2.3.{n}"])


def register(org: Organization, local_id: str | None = None, **fields) -> Registration:
    defaults = {
        "given_name": "Marisol",
        "family_name": "Quintanilla",
        "sex": "female",
        "birth_date": date(1984, 7, 19),
        "address_line": "418 Alder Creek Rd",
        "city": "Fairview",
        "state": "OR",
        "postal_code": "97024",
    }
    defaults.update(fields)
    for key in ("phones", "previous_family_names"):
        if key in defaults:
            defaults[key] = tuple(defaults[key])
    return register_record(
        organization=org,
        identifier_system=org.identifier_system_uris[0],
        local_id=local_id or f"MRN{next(_counter)}",
        demographics=Demographics(**defaults),
        source=Source.FHIR,
    )


def demographics_of(row: dict):
    return parse_row(0, row).demographics


def load(rows: list[dict], chunk: int = 5000) -> list[int]:
    orgs = {}
    registrations = []
    for row in rows:
        if row["org_id"] not in orgs:
            orgs[row["org_id"]] = Organization.objects.filter(name=row["org_id"]).first() or create_organization(
                name=row["org_id"], identifier_systems=[f"urn:x:{row['org_id']}"]
            )
        registrations.append(
            NewRegistration(orgs[row["org_id"]], f"urn:x:{row['org_id']}", row["local_id"], demographics_of(row))
        )
    return register_records_bulk(registrations, source=Source.CSV, chunk=chunk)
