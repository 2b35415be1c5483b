"""Who may record, read, change and withdraw a consent, attacked as a hostile member would, over real
HTTP with real tokens: a member records consents only for patients it registered, sees and changes
only its own, never opens another member's data by a consent, and learns nothing it may not know."""

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from consent.models import Consent, ConsentStatus, MemberPolicy
from hie.audit.models import AuditEvent, Outcome
from hie.console.selectors import disclosures_of_person
from hie.fhir.consent import ACT_CODE
from hie.fhir.patient import euid_system
from hie.locator.models import DocumentEntry
from matching.selectors import person_by_euid
from tests.fhir.conftest import patient
from tests.fhir.test_consent_api import opt_out
from tests.fhir.test_documents import document, entries, find, submit

PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def register(member, local_id: str) -> str:
    """Register the shared synthetic patient at `member`; returns the EUID the node gave the person."""
    answer = requests.put(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                          json=patient(member.system, local_id), headers=member.headers(), timeout=10)  # fmt: skip
    assert answer.status_code in (200, 201), answer.text
    return next(i["value"] for i in answer.json()["identifier"] if i["system"] == euid_system())


def permit(system: str, value: str, *, labels: tuple = (), purposes: tuple = (), actors: tuple = (), **extra) -> dict:
    provision = {"type": "permit",
                 "securityLabel": [{"system": ACT_CODE, "code": c} for c in labels],
                 "purpose": [{"system": PURPOSE, "code": p} for p in purposes],
                 "actor": [{"role": {"coding": [{"code": "IRCP"}]}, "reference": {"reference": f"Organization/{a}"}}
                           for a in actors]}  # fmt: skip
    return {**opt_out(system, value), "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
            "provision": {k: v for k, v in provision.items() if v}, **extra}  # fmt: skip


def post_consent(member, resource: dict) -> requests.Response:
    return requests.post(f"{member.base}/fhir/Consent", json=resource, headers=member.headers(), timeout=10)


@pytest.fixture
def two_members(member):
    """Lakeside holds a psychiatric note and a normal note of a patient Riverside registered too."""
    riverside, lakeside = member("Riverside"), member("Lakeside")
    euid = register(lakeside, "L1")
    assert register(riverside, "R1") == euid  # one person: the two records were linked
    for master, labels in (("urn:uuid:lake-normal", ()), ("urn:uuid:lake-psych", ("PSY",))):
        assert submit(lakeside, document(lakeside, "L1", master, labels=labels)).status_code == 200
    return riverside, lakeside, euid


def documents_seen(member, purpose: str = "TREAT") -> set[str]:
    found = entries(find(member, purpose, **{"patient.identifier": f"{member.system}|R1"}))
    return {e.resource.masterIdentifier.value for e in found}


def test_a_member_cannot_open_another_members_psychiatric_note_or_research_use_by_a_consent(two_members):
    riverside, lakeside, euid = two_members
    me = riverside.organization.pk
    assert documents_seen(riverside) == {"urn:uuid:lake-normal"}

    # The forgery of the issue: Lakeside's identifier, a permit of PSY (and research) for Riverside.
    forged = post_consent(riverside, permit(lakeside.system, "L1", labels=("PSY",), actors=(me,)))
    assert forged.status_code == 404
    by_euid = {
        **permit(lakeside.system, "L1", labels=("PSY",), actors=(me,)),
        "patient": {"reference": f"Patient/{euid}"},
    }
    assert post_consent(riverside, by_euid).status_code == 404  # the EUID is not the member's identifier either
    collector = permit(
        riverside.system,
        "R1",
        labels=("PSY",),
        organization=[{"reference": f"Organization/{lakeside.organization.pk}"}],
    )
    refused = post_consent(riverside, collector)
    assert refused.status_code == 403  # it may not say Lakeside collected it
    assert refused.json()["issue"][0]["code"] == "forbidden"

    # Under its own identifier of the same person a member may record, but its permits open only
    # what it holds itself: Lakeside's PSY note stays hidden, and research use finds nothing of Lakeside's.
    own = post_consent(
        riverside, permit(riverside.system, "R1", labels=("PSY",), purposes=("TREAT", "HRESCH"), actors=(me,))
    )
    assert own.status_code == 201, own.text
    research = post_consent(riverside, permit(riverside.system, "R1", purposes=("HRESCH",), actors=(me,)))
    assert research.status_code == 201
    assert documents_seen(riverside) == {"urn:uuid:lake-normal"}
    assert documents_seen(riverside, "HRESCH") == set()
    psych = DocumentEntry.objects.get(master_value="urn:uuid:lake-psych")  # its id, as if guessed
    assert requests.get(f"{riverside.base}/fhir/Binary/{psych.pk}", headers=riverside.headers(),
                        timeout=10).status_code == 404  # fmt: skip
    assert requests.get(f"{riverside.base}/fhir/Binary/{psych.pk}", headers=riverside.headers("HRESCH"),
                        timeout=10).status_code == 404  # fmt: skip

    # The custodian itself can share its note: Lakeside's permit for Riverside opens it.
    shared = post_consent(lakeside, permit(lakeside.system, "L1", labels=("PSY",), actors=(me,)))
    assert shared.status_code == 201, shared.text
    assert documents_seen(riverside) == {"urn:uuid:lake-normal", "urn:uuid:lake-psych"}
    assert requests.get(f"{riverside.base}/fhir/Binary/{psych.pk}", headers=riverside.headers(),
                        timeout=10).status_code == 200  # fmt: skip


def test_recording_for_an_unknown_or_another_members_patient_answers_the_same(two_members, member):
    riverside, lakeside, euid = two_members
    stranger = member("Stranger")
    answers = [
        post_consent(riverside, opt_out(lakeside.system, "L1")),  # another member's known patient
        post_consent(riverside, opt_out(lakeside.system, "L-NOBODY")),  # another member's system, unknown
        post_consent(riverside, opt_out(riverside.system, "R-NOBODY")),  # its own system, unknown
        post_consent(riverside, opt_out(stranger.system, "S1")),  # a member without that patient
        post_consent(riverside, opt_out("urn:oid:1.2.3.4.5.6", "X1")),  # a system nobody uses
        post_consent(
            riverside, {**opt_out(riverside.system, "R1"), "patient": {"reference": f"Patient/{euid}"}}
        ),  # a real EUID
        post_consent(riverside, {**opt_out(riverside.system, "R1"), "patient": {"reference": "Patient/E000000000000"}}),
    ]
    assert {(a.status_code, a.content) for a in answers} == {(answers[0].status_code, answers[0].content)}
    assert answers[0].status_code == 404
    assert answers[0].json()["resourceType"] == "OperationOutcome"
    assert not Consent.objects.exists()
    # The attempt on a real patient is in that patient's accounting of disclosures.
    attempts = AuditEvent.objects.filter(event_type="consent-refused", organization=riverside.organization,
                                         person_euid=euid)  # fmt: skip
    assert attempts.count() == 2  # Lakeside's identifier and the EUID


def test_only_the_recording_member_reads_changes_or_withdraws_a_consent(two_members):
    riverside, lakeside, euid = two_members
    created = post_consent(lakeside, opt_out(lakeside.system, "L1", b"%PDF-1.4 signed"))
    assert created.status_code == 201, created.text
    consent_id = created.json()["id"]
    missing = str(Consent.objects.order_by("-pk").first().pk + 1000)
    search = {"family": "Quintanilla"}
    assert requests.get(f"{riverside.base}/fhir/Patient", params=search, headers=riverside.headers(),
                        timeout=10).json()["total"] == 0  # fmt: skip  # the opt-out holds for Riverside

    withdrawal = {**opt_out(lakeside.system, "L1"), "status": "inactive"}

    def attempts(consent: str) -> list[requests.Response]:
        base = f"{riverside.base}/fhir/Consent/{consent}"
        return [
            requests.get(base, headers=riverside.headers(), timeout=10),
            requests.get(f"{base}/_history/1", headers=riverside.headers(), timeout=10),
            requests.get(f"{base}/form", headers=riverside.headers(), timeout=10),
            requests.put(base, json=withdrawal, headers=riverside.headers(), timeout=10),
            requests.put(base, json=withdrawal, headers=riverside.headers(**{"If-Match": 'W/"1"'}), timeout=10),
            requests.delete(base, headers=riverside.headers(), timeout=10),
        ]

    against_real, against_missing = attempts(consent_id), attempts(missing)
    for real, absent in zip(against_real, against_missing, strict=True):
        assert real.status_code == absent.status_code == 404
        assert real.content == absent.content.replace(missing.encode(), consent_id.encode())
    found = requests.get(f"{riverside.base}/fhir/Consent", params={"patient.identifier": f"{lakeside.system}|L1"},
                         headers=riverside.headers(), timeout=10)  # fmt: skip
    assert found.status_code == 200
    assert Bundle.model_validate_json(found.content).total == 0
    assert "entry" not in found.json()

    consent = Consent.objects.get(pk=consent_id)
    assert (consent.status, consent.version) == (ConsentStatus.ACTIVE, 1)
    assert requests.get(f"{riverside.base}/fhir/Patient", params=search, headers=riverside.headers(),
                        timeout=10).json()["total"] == 0  # fmt: skip  # still opted out for everyone
    # Every attempt is in the patient's accounting of disclosures, naming who tried.
    person = person_by_euid(euid)
    tried = [e for e in disclosures_of_person(person, limit=500)
             if e.event_type == "consent-refused" and e.organization_id == riverside.organization.pk]  # fmt: skip
    assert len(tried) == len(against_real)
    assert {e.action for e in tried} == {"R", "U", "D"}
    assert all(e.outcome == Outcome.MINOR_FAILURE and e.resource_id == consent_id for e in tried)

    # The member that recorded it withdraws it; the withdrawal too names the patient.
    withdrawn = requests.delete(f"{lakeside.base}/fhir/Consent/{consent_id}", headers=lakeside.headers(), timeout=10)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "inactive"
    consent.refresh_from_db()
    assert (consent.status, consent.version) == (ConsentStatus.INACTIVE, 2)
    assert AuditEvent.objects.filter(event_type="consent-change", person_euid=euid, resource_id=consent_id,
                                     organization=lakeside.organization, detail__version=2).exists()  # fmt: skip
    assert requests.get(f"{riverside.base}/fhir/Patient", params=search, headers=riverside.headers(),
                        timeout=10).json()["total"] == 1  # fmt: skip


def test_every_consent_read_search_and_change_names_the_patient(two_members):
    riverside, _, euid = two_members
    created = post_consent(riverside, opt_out(riverside.system, "R1", b"%PDF-1.4 signed"))
    consent_id = created.json()["id"]
    base = f"{riverside.base}/fhir/Consent/{consent_id}"
    assert requests.get(base, headers=riverside.headers(), timeout=10).status_code == 200
    assert requests.get(f"{base}/_history/1", headers=riverside.headers(), timeout=10).status_code == 200
    assert requests.get(f"{base}/form", headers=riverside.headers(), timeout=10).status_code == 200
    assert requests.get(f"{riverside.base}/fhir/Consent", params={"patient": f"Patient/{euid}"},
                        headers=riverside.headers(), timeout=10).json()["total"] == 1  # fmt: skip
    changed = requests.put(base, json={**opt_out(riverside.system, "R1"), "status": "inactive"},
                           headers=riverside.headers(**{"If-Match": 'W/"1"'}), timeout=10)  # fmt: skip
    assert changed.status_code == 200, changed.text
    events = AuditEvent.objects.filter(resource_type="Consent", organization=riverside.organization,
                                       event_type__startswith="consent-")  # fmt: skip
    assert {e.event_type for e in events} == {"consent-change", "consent-read", "consent-vread", "consent-form",
                                              "consent-search"}  # fmt: skip
    assert {e.person_euid for e in events} == {euid}
    assert events.filter(event_type="consent-change").count() == 2  # recorded, then withdrawn


def test_gather_documents_reveals_nothing_of_an_opted_out_patient(two_members):
    riverside, lakeside, euid = two_members

    def gather(identifier: dict, key: str) -> requests.Response:
        body = {"resourceType": "Parameters", "parameter": [{"name": "patient", **identifier}]}
        return requests.post(f"{riverside.base}/fhir/Patient/$gather-documents", json=body,
                             headers=riverside.headers(**{"Idempotency-Key": key}), timeout=10)  # fmt: skip

    before = gather({"valueIdentifier": {"system": riverside.system, "value": "R1"}}, "before")
    assert before.status_code == 202, before.text
    task = f"{riverside.base}{before.headers['Location']}"
    assert requests.get(task, headers=riverside.headers(), timeout=10).status_code == 200

    assert post_consent(lakeside, opt_out(lakeside.system, "L1")).status_code == 201
    unknown = gather({"valueIdentifier": {"system": riverside.system, "value": "R-NOBODY"}}, "unknown")
    answers = [
        gather({"valueIdentifier": {"system": riverside.system, "value": "R1"}}, "own"),
        gather({"valueIdentifier": {"system": lakeside.system, "value": "L1"}}, "theirs"),
        gather({"valueReference": {"reference": f"Patient/{euid}"}}, "euid"),
        gather({"valueIdentifier": {"system": riverside.system, "value": "R1"}}, "before"),  # the job's own key
    ]
    assert unknown.status_code == 404
    for answer in answers:
        assert (answer.status_code, answer.content) == (404, unknown.content)
        assert euid.encode() not in answer.content
    # The job asked before the opt-out no longer answers either.
    assert requests.get(task, headers=riverside.headers(), timeout=10).status_code == 404


def test_a_custodian_consent_keeps_out_of_a_gather_is_not_named(two_members):
    riverside, lakeside, _ = two_members
    lakeside.organization.fhir_endpoint = "https://lakeside.invalid/fhir/r4"
    lakeside.organization.save()
    MemberPolicy.objects.create(organization=lakeside.organization, policy="deny")
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": riverside.system, "value": "R1"}}]}  # fmt: skip
    answer = requests.post(f"{riverside.base}/fhir/Patient/$gather-documents", json=body, headers=riverside.headers(),
                           timeout=10)  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert f"Organization/{lakeside.organization.pk}" not in answer.text
    assert "Lakeside" not in answer.text
