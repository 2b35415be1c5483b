"""Consent decides what other members see through PDQm, PIXm and $match, over real HTTP."""

from datetime import timedelta

import requests
from django.utils import timezone

from consent.models import BreakGlass, Consent
from consent.selectors import break_glass_awaiting_review
from consent.services import record_consent, withdraw_consent
from hie.audit.models import AuditEvent
from hie.audit.services import SYSTEM
from tests.fhir.conftest import patient

GIVEN = ["Amaranta", "Bastian", "Celestine"]


def test_an_opted_out_person_disappears_for_others_and_reappears_after_withdrawal(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    for n, given in enumerate(GIVEN):
        client.resources("Patient").search(identifier=f"{riverside.system}|R{n}").update(
            client.resource("Patient", **patient(riverside.system, f"R{n}", telecom=[], address=[],
                            name=[{"family": "Wojciechowska", "given": [given]}], birthDate=f"196{n}-03-01"))
        )  # fmt: skip
    reader = lakeside.fhir()

    def visible() -> tuple[int, list[str]]:
        bundle = reader.resources("Patient").search(family="wojciech").limit(2).fetch_raw()
        names = [e["resource"]["name"][0]["given"][0] for e in bundle.get("entry", [])]
        return bundle["total"], names

    assert visible()[0] == 3
    by_policy = AuditEvent.objects.filter(event_type="authz-consent", organization=lakeside.organization).last()
    assert [d["outcome"] for d in by_policy.detail["decisions"]] == ["NO_CONSENT"] * 3  # each decision audited
    opt_out = record_consent(patient_system=riverside.system, patient_value="R1", policy_rule="OPTOUT",
                             provision={"type": "deny"}, source="form", actor=SYSTEM)  # fmt: skip
    total, names = visible()
    assert total == 2
    assert "Bastian" not in names
    pix = requests.get(f"{lakeside.base}/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{riverside.system}|R1"},
                       headers=lakeside.headers(), timeout=10)  # fmt: skip
    assert pix.status_code == 404
    own = requests.get(f"{riverside.base}/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{riverside.system}|R1"},
                       headers=riverside.headers(), timeout=10)  # fmt: skip
    assert own.status_code == 200  # the member's own patient stays known to it
    decision = AuditEvent.objects.filter(event_type="authz-consent", organization=lakeside.organization).last()
    assert decision.detail["outcome"] == "DENY"
    assert decision.detail["consents"] == [opt_out.pk]

    withdraw_consent(consent=Consent.objects.get(pk=opt_out.pk), actor=SYSTEM, reason="patient changed their mind")
    assert visible()[0] == 3


def test_a_deny_for_one_member_hides_from_it_only(member):
    riverside, lakeside, lab = member("Riverside"), member("Lakeside"), member("Lab")
    client = riverside.fhir()
    client.resources("Patient").search(identifier=f"{riverside.system}|R1").update(
        client.resource("Patient", **patient(riverside.system, "R1"))
    )
    record_consent(patient_system=riverside.system, patient_value="R1", policy_rule="OPTOUTE", source="portal",
                   provision={"type": "deny", "actors": [lakeside.organization.pk]}, actor=SYSTEM)  # fmt: skip
    search = {"family": "Quintanilla"}
    assert (
        requests.get(f"{lab.base}/fhir/Patient", params=search, headers=lab.headers(), timeout=10).json()["total"] == 1
    )
    hidden = requests.get(f"{lakeside.base}/fhir/Patient", params=search, headers=lakeside.headers(), timeout=10)
    assert hidden.json()["total"] == 0
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("urn:x", "1")}]}
    matched = requests.post(f"{lakeside.base}/fhir/Patient/$match", json=body, headers=lakeside.headers(), timeout=10)
    assert matched.json()["total"] == 0


def test_break_the_glass_opens_for_its_time_limit_only_and_waits_for_review(member, settings):
    settings.CONSENT_IMPLICIT_POLICY = "break-glass-only"
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    saved, _ = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|R1")
        .update(client.resource("Patient", **patient(riverside.system, "R1")))
    )
    euid = next(i["value"] for i in saved["identifier"] if i["system"].endswith("/sid/euid"))
    search = {"family": "Quintanilla"}

    def found(purpose: str) -> int:
        answer = requests.get(f"{lakeside.base}/fhir/Patient", params=search, headers=lakeside.headers(purpose),
                              timeout=10)  # fmt: skip
        return answer.json()["total"]

    assert found("BTG") == 0
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "unconscious in the ED"},
                                                         {"name": "minutes", "valueInteger": 30}]}  # fmt: skip
    treat = requests.post(f"{lakeside.base}/fhir/Patient/{euid}/$break-glass", json=body,
                          headers=lakeside.headers("TREAT"), timeout=10)  # fmt: skip
    assert treat.status_code == 400  # only BTG or ETREAT may break the glass
    opened = requests.post(f"{lakeside.base}/fhir/Patient/{euid}/$break-glass", json=body,
                           headers=lakeside.headers("BTG"), timeout=10)  # fmt: skip
    assert opened.status_code == 200, opened.text
    assert found("BTG") == 1
    assert found("TREAT") == 0
    grant = BreakGlass.objects.get()
    assert grant in break_glass_awaiting_review()
    assert AuditEvent.objects.filter(event_type="break-glass-open", purpose_of_use="BTG").exists()
    assert AuditEvent.objects.filter(event_type="authz-consent", detail__break_glass=grant.pk).exists()

    BreakGlass.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert found("BTG") == 0
