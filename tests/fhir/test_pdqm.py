"""PDQm ITI-78 search of golden records, with paging, over real HTTP."""

import requests
from fhir.resources.R4B.bundle import Bundle

from hie.audit.models import AuditEvent
from hie.fhir.patient import euid_system
from tests.fhir.conftest import patient

GIVEN = ["Amaranta", "Bastian", "Celestine", "Dorian", "Esperanza", "Florian", "Genoveva"]


def test_search_pages_through_golden_records(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    for n, given in enumerate(GIVEN):
        client.resources("Patient").search(identifier=f"{riverside.system}|R{n}").update(
            client.resource(
                "Patient",
                **patient(
                    riverside.system,
                    f"R{n}",
                    name=[{"family": "Wojciechowska", "given": [given]}],
                    birthDate=f"19{60 + n}-03-0{n + 1}",
                    telecom=[],
                    address=[],
                ),
            )
        )
    # The same person at a second member: one golden record, both identifiers.
    lake = lakeside.fhir()
    lake.resources("Patient").search(identifier=f"{lakeside.system}|L0").update(
        lake.resource(
            "Patient",
            **patient(
                lakeside.system,
                "L0",
                name=[{"family": "Wojciechowska", "given": ["Amaranta"]}],
                birthDate="1960-03-01",
                telecom=[],
                address=[],
            ),
        )
    )

    reader = lakeside.fhir()
    first = reader.resources("Patient").search(family="wojciech").limit(3).fetch_raw()
    assert Bundle.model_validate(dict(first)).type == "searchset"
    assert first["total"] == len(GIVEN)
    seen, page = [], first
    while True:
        seen += [entry["resource"]["name"][0]["given"][0] for entry in page.get("entry", [])]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        page = requests.get(following[0], headers=lakeside.headers(), timeout=10).json()
    assert sorted(seen) == sorted(GIVEN)

    amaranta = reader.resources("Patient").search(family="Wojciechowska", given="amar", birthdate="1960").fetch_raw()
    assert amaranta["total"] == 1
    systems = {i["system"] for i in amaranta["entry"][0]["resource"]["identifier"]}
    assert systems == {riverside.system, lakeside.system, euid_system()}
    assert reader.resources("Patient").search(birthdate="ge1965-01-01", family="woj").fetch_raw()["total"] == 2
    by_identifier = reader.resources("Patient").search(identifier=f"{riverside.system}|R3").fetch_raw()
    assert by_identifier["entry"][0]["resource"]["name"][0]["given"] == ["Dorian"]
    assert AuditEvent.objects.filter(event_type="patient-search", organization=lakeside.organization).count() >= 5


def test_search_by_telecom_and_address(member):
    riverside = member("Riverside")
    client = riverside.fhir()
    client.resources("Patient").search(identifier=f"{riverside.system}|R1").update(
        client.resource("Patient", **patient(riverside.system, "R1"))
    )
    search = client.resources("Patient")
    assert search.search(telecom="phone|503.555.0142").fetch_raw()["total"] == 1
    assert search.search(telecom="MQ@example.org").fetch_raw()["total"] == 1
    assert search.search(telecom="5035550000").fetch_raw()["total"] == 0
    assert search.search(**{"address-city": "fair", "address-postalcode": "970"}).fetch_raw()["total"] == 1
    assert search.search(address="Alder").fetch_raw()["total"] == 1
    assert search.search(gender="male", family="Quintanilla").fetch_raw()["total"] == 0


def test_search_refuses_what_it_cannot_answer(member):
    riverside = member("Riverside")
    url = f"{riverside.base}/fhir/Patient"
    for params, status in [
        ({}, 400),
        ({"family": "x", "nickname": "y"}, 400),
        ({"birthdate": "19-01"}, 400),
        ({"birthdate": "1990-02-30"}, 400),
        ({"gender": "mal"}, 400),
        ({"family": "x", "_count": "-1"}, 400),
    ]:
        response = requests.get(url, params=params, headers=riverside.headers(), timeout=10)
        assert response.status_code == status, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    riverside.organization.default_purpose_of_use = ""  # no default: a read must name its purpose
    riverside.organization.save(update_fields=["default_purpose_of_use"])
    missing_purpose = requests.get(url, params={"family": "x"}, headers=riverside.headers(None), timeout=10)
    assert missing_purpose.status_code == 400
    assert "X-Purpose-Of-Use" in missing_purpose.json()["issue"][0]["diagnostics"]
    no_token = requests.get(url, params={"family": "x"}, timeout=10)
    assert no_token.status_code == 401
    assert no_token.json()["issue"][0]["code"] == "login"
