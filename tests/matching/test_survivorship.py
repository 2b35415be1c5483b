from datetime import UTC, date, datetime
from types import SimpleNamespace

from matching.models import Source
from matching.survivorship import build_golden_record


def record(**fields: object) -> SimpleNamespace:
    values = {
        "active": True, "source": Source.CSV, "updated_at": datetime(2026, 1, 1, tzinfo=UTC), "given_name": "",
        "middle_name": "", "family_name": "", "suffix": "", "previous_family_names": [], "sex": "unknown",
        "birth_date": None, "norm": {}, "address_line": "", "city": "", "state": "", "postal_code": "",
        "organization_id": 1, "identifier_system": "urn:a", "local_id": "1",
    }  # fmt: skip
    return SimpleNamespace(**{**values, **fields})


def test_each_single_value_comes_from_the_most_trusted_then_most_recent_record_that_has_it():
    old_csv = record(
        local_id="9", given_name="Ann", family_name="Lee", sex="female", birth_date=date(1980, 2, 3),
        address_line="1 Oak St", city="Troy", state="NY", postal_code="12180", norm={"phones": ["+15185550100"]},
    )  # fmt: skip
    new_csv = record(
        local_id="2", given_name="Anne", family_name="Lee", updated_at=datetime(2026, 3, 1, tzinfo=UTC),
        norm={"phones": ["+15185550199", "+15185550100"], "email": "ann@example.org"},
    )  # fmt: skip
    fhir = record(
        source=Source.FHIR, identifier_system="urn:b", local_id="5", given_name="Ann", family_name="Park",
        previous_family_names=["Lee"], city="Albany",
    )  # fmt: skip
    retired = record(active=False, local_id="0", given_name="Zed", sex="male", birth_date=date(1990, 1, 1))

    golden = build_golden_record([old_csv, retired, new_csv, fhir])

    assert golden["names"] == [
        {"given": "Ann", "middle": "", "family": "Park", "suffix": ""},
        {"given": "Ann", "middle": "", "family": "Lee", "suffix": "", "use": "old"},
        {"given": "Anne", "middle": "", "family": "Lee", "suffix": ""},
        {"given": "Ann", "middle": "", "family": "Lee", "suffix": ""},
    ]
    assert golden["sex"] == "female"  # the trusted and the recent records leave it unknown
    assert golden["birth_date"] == "1980-02-03"
    assert golden["address"] == {"line": "", "city": "Albany", "state": "", "postal_code": ""}
    assert golden["phones"] == ["+15185550100", "+15185550199"]
    assert golden["emails"] == ["ann@example.org"]
    assert golden["identifiers"] == [
        {"organization": 1, "system": "urn:a", "value": "2"},
        {"organization": 1, "system": "urn:a", "value": "9"},
        {"organization": 1, "system": "urn:b", "value": "5"},
    ]


def test_a_person_of_one_record_takes_its_values_and_of_none_active_has_no_golden_record():
    only = record(given_name="Bo", birth_date=date(2001, 5, 6), sex="male")
    assert build_golden_record([only]) == {
        "names": [{"given": "Bo", "middle": "", "family": "", "suffix": ""}],
        "sex": "male",
        "birth_date": "2001-05-06",
        "phones": [],
        "emails": [],
        "address": None,
        "identifiers": [{"organization": 1, "system": "urn:a", "value": "1"}],
    }
    assert build_golden_record([record(active=False, given_name="Bo")]) == {}
