"""PIXm ITI-83: cross-references of one person across three members, over real HTTP."""

import requests
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters

from hie.audit.models import AuditEvent
from hie.fhir.patient import euid_system
from tests.fhir.conftest import patient


def register(member, local_id: str, **overrides) -> dict:
    client = member.fhir()
    saved, _ = (
        client.resources("Patient")
        .search(identifier=f"{member.system}|{local_id}")
        .update(client.resource("Patient", **patient(member.system, local_id, **overrides)))
    )
    return saved


def pix(member, source: str, *targets: str, purpose: str | None = "TREAT") -> requests.Response:
    params = [("sourceIdentifier", source)] + [("targetSystem", t) for t in targets]
    return requests.get(f"{member.base}/fhir/Patient/$ihe-pix", params=params, headers=member.headers(purpose),
                        timeout=10)  # fmt: skip


def identifiers(response: requests.Response) -> set[tuple[str, str]]:
    parameters = Parameters.model_validate_json(response.content)
    return {(p.valueIdentifier.system, p.valueIdentifier.value) for p in parameters.parameter or []
            if p.name == "targetIdentifier"}  # fmt: skip


def test_pix_round_trip_across_three_members(member):
    riverside, lakeside, lab = member("Riverside"), member("Lakeside"), member("Metro Lab")
    saved = register(riverside, "RIV-1")
    register(lakeside, "LAKE-1", name=[{"family": "Quintanilla", "given": ["Mari"]}])  # a nickname
    # No address, but the phone agrees: names and birth date alone would not link it on their own.
    register(lab, "LAB-1", address=[], telecom=[{"system": "phone", "value": "(503) 555-0142"}])
    euid = next(i["value"] for i in saved["identifier"] if i["system"] == euid_system())

    answer = pix(lab, f"{riverside.system}|RIV-1")
    assert answer.status_code == 200, answer.text
    assert identifiers(answer) == {(lakeside.system, "LAKE-1"), (lab.system, "LAB-1"), (euid_system(), euid)}
    references = {p.valueReference.reference for p in Parameters.model_validate_json(answer.content).parameter
                  if p.name == "targetId"}  # fmt: skip
    assert f"Patient/{euid}" in references
    # Every targetId resolves.
    for reference in references:
        read = requests.get(f"{lab.base}/fhir/{reference}", headers=lab.headers(), timeout=10)
        assert read.status_code == 200

    only_lab = pix(riverside, f"{lakeside.system}|LAKE-1", lab.system)
    assert identifiers(only_lab) == {(lab.system, "LAB-1")}
    from_euid = pix(riverside, f"{euid_system()}|{euid}")
    assert identifiers(from_euid) == {(riverside.system, "RIV-1"), (lakeside.system, "LAKE-1"), (lab.system, "LAB-1")}
    assert AuditEvent.objects.filter(event_type="pix-query", person_euid=euid, purpose_of_use="TREAT").count() == 3


def test_pix_errors_follow_the_profile(member):
    riverside = member("Riverside")
    register(riverside, "RIV-1")
    cases = [
        (pix(riverside, f"{riverside.system}|NOBODY"), 404, "not-found"),
        (pix(riverside, "urn:oid:9.9.9|RIV-1"), 400, "code-invalid"),
        (pix(riverside, f"{riverside.system}|RIV-1", "urn:oid:9.9.9"), 403, "code-invalid"),
        (pix(riverside, "RIV-1"), 400, "invalid"),
        (pix(riverside, f"{riverside.system}|RIV-1", purpose="SNOOPING"), 400, "invalid"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert OperationOutcome.model_validate_json(response.content).issue[0].code == code
    refused = AuditEvent.objects.filter(event_type="pix-query", outcome="4")
    assert refused.count() == len(cases)
