"""Patient/$match (PDQm ITI-119): persons ranked by the match-on-write model, with match grades."""

import requests
from fhir.resources.R4B.bundle import Bundle

from hie.audit.models import AuditEvent
from hie.fhir.patient import MATCH_GRADE_EXTENSION
from tests.fhir.conftest import patient


def match(member, resource: dict, **options) -> Bundle:
    parameters = [{"name": "resource", "resource": resource}]
    if "only_certain" in options:
        parameters.append({"name": "onlyCertainMatches", "valueBoolean": options["only_certain"]})
    if "count" in options:
        parameters.append({"name": "count", "valueInteger": options["count"]})
    answer = member.fhir().execute("Patient/$match", method="post",
                                   data={"resourceType": "Parameters", "parameter": parameters})  # fmt: skip
    return Bundle.model_validate(dict(answer))


def grades(bundle: Bundle) -> list[tuple[str, float]]:
    return [
        (next(e.valueCode for e in entry.search.extension if e.url == MATCH_GRADE_EXTENSION), entry.search.score)
        for entry in bundle.entry or []
    ]


def test_match_grades_a_duplicate_a_twin_and_a_stranger(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    saved, _ = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|RIV-1")
        .update(
            client.resource(
                "Patient",
                **patient(
                    riverside.system,
                    "RIV-1",
                    identifier=[
                        {"system": riverside.system, "value": "RIV-1"},
                        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "512-44-3187"},
                    ],
                ),
            )
        )
    )

    duplicate = patient("urn:other", "x", name=[{"family": "Quintanila", "given": ["Mari"]}],
                        identifier=[{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "512-44-3187"}])  # fmt: skip
    found = match(lakeside, duplicate)
    assert found.type == "searchset"
    assert found.total == 1
    assert grades(found)[0][0] == "certain"
    assert grades(found)[0][1] >= 0.95
    assert found.entry[0].resource.id in {i["value"] for i in saved["identifier"]}

    twin = patient("urn:other", "y", name=[{"family": "Quintanilla", "given": ["Rosalind"]}],
                   telecom=[{"system": "phone", "value": "(503) 555-0142"}])  # fmt: skip
    twin_grades = [grade for grade, _ in grades(match(lakeside, twin))]
    assert "certain" not in twin_grades
    assert "probable" not in twin_grades

    stranger = patient("urn:other", "z", name=[{"family": "Oyelaran", "given": ["Tobiloba"]}], birthDate="2001-02-11",
                       telecom=[], address=[{"city": "Bend", "postalCode": "97701"}])  # fmt: skip
    assert match(lakeside, stranger).total == 0
    assert match(lakeside, duplicate, only_certain=True, count=1).total == 1
    assert AuditEvent.objects.filter(event_type="patient-match", organization=lakeside.organization,
                                     purpose_of_use="TREAT").count() == 4  # fmt: skip


def test_match_refuses_bad_parameters(member):
    riverside = member("Riverside")
    url = f"{riverside.base}/fhir/Patient/$match"
    for body, status in [
        ({"resourceType": "Parameters"}, 400),
        ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Basic"}}]},
         400),
        ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("a", "b")},
                                                      {"name": "count", "valueInteger": 0}]}, 400),
        ({"resourceType": "Patient"}, 400),
        ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("a", "b")},
                                                      {"name": "onlyCertainMatches", "valueString": "true"}]}, 400),
        ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("a", "b")},
                                                      {"name": "onlyCertainMatches", "valueBoolean": "true"}]}, 400),
        ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("a", "b")},
                                                      {"name": "count", "valueDecimal": 3}]}, 400),
    ]:  # fmt: skip
        response = requests.post(url, json=body, headers=riverside.headers(), timeout=10)
        assert response.status_code == status, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    wrong_method = requests.get(url, headers=riverside.headers(), timeout=10)
    assert wrong_method.status_code == 405


def test_names_and_birth_date_alone_are_never_certain(member):
    """IHE ITI-119: certain means the node would link on its own; a misspelt surname with given
    name, birth date and sex and nothing else agreeing is a reviewer's call."""
    riverside, lakeside = member("Riverside"), member("Lakeside")
    ssn = {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "512-44-3187"}
    registered = patient(riverside.system, "RIV-7", identifier=[{"system": riverside.system, "value": "RIV-7"}, ssn])
    assert requests.put(f"{riverside.base}/fhir/Patient?identifier={riverside.system}|RIV-7", json=registered,
                        headers=riverside.headers(), timeout=10).status_code == 201  # fmt: skip
    bare = {"resourceType": "Patient", "name": [{"family": "Quintanila", "given": ["Marisol"]}],
            "birthDate": "1984-07-19", "gender": "female"}  # fmt: skip
    found = grades(match(lakeside, bare))
    assert len(found) == 1
    assert found[0][0] == "probable", found
    assert match(lakeside, bare, only_certain=True).total == 0
    with_phone = {**bare, "telecom": [{"system": "phone", "value": "503-555-0142"}]}
    assert grades(match(lakeside, with_phone))[0][0] == "certain"
