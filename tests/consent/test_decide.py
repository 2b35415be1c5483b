"""decide() over every case written down in docs/consent.md, and its properties (hypothesis)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consent.decide import decide
from consent.models import BreakGlass, Consent, ConsentVersion, MemberPolicy
from consent.provisions import SENSITIVE, clean
from consent.services import open_break_glass, record_consent, withdraw_consent
from hie.audit.services import SYSTEM
from matching.models import Link, LinkState
from matching.services import match_record, merge_persons
from tests.matching.factories import organization, register

pytestmark = pytest.mark.django_db
CASES = Path(django_settings.BASE_DIR) / "docs" / "consent.md"
ROW = re.compile(r"^\| (\d+) \| (.+?) \| (.+?) \| (\w+) \| (.+?) \| .+ \|$")


def documented_cases() -> list[tuple]:
    return [match.groups() for line in CASES.read_text().splitlines() if (match := ROW.match(line))]


@pytest.fixture
def world():
    a, b = organization("A"), organization("B")
    record = register(b, "B-1").record
    match_record(record.pk)
    person = Link.objects.get(record=record, state=LinkState.MATCH).person
    return {"A": a, "B": b, "record": record, "person": person}


def provision_of(text: str, world: dict) -> dict:
    """`deny actors=B; except permit actors=A purposes=TREAT` as a provision."""
    parts = [part.strip() for part in text.split("; except ")]

    def one(spec: str) -> dict:
        kind, *attributes = spec.split()
        provision = {"type": kind}
        for attribute in attributes:
            name, values = attribute.split("=")
            items = values.split(",")
            provision[name] = [world[i].pk for i in items] if name == "actors" else items
        return provision

    root = one(parts[0])
    root["provisions"] = [one(spec) for spec in parts[1:]]
    return root


def set_up(cell: str, world: dict, settings) -> None:
    if cell == "—":
        return
    now = timezone.now()
    for item in cell.split(" + "):
        words = item.split(" ", 1)
        if item.startswith("policy="):
            MemberPolicy.objects.create(organization=world["B"], policy=item.removeprefix("policy="))
        elif item == "override":
            settings.BREAK_GLASS_OVERRIDES_DENY = True
        elif item == "part2":
            settings.BREAK_GLASS_OPENS_PART2 = True
        elif item == "btg":
            open_break_glass(person=world["person"], requester=world["A"], purpose="BTG", reason="unconscious",
                             minutes=30, actor=SYSTEM)  # fmt: skip
        elif item == "expired btg":
            BreakGlass.objects.create(person=world["person"], requester=world["A"], purpose="BTG", reason="x",
                                      expires_at=now - timedelta(minutes=1))  # fmt: skip
        else:
            state = words[0] if words[0] in ("withdrawn", "expired", "future") else ""
            provision = provision_of(words[1] if state else item, world)
            if state == "expired":
                provision["period"] = {"end": (now - timedelta(days=1)).isoformat()}
            if state == "future":
                provision["period"] = {"start": (now + timedelta(days=1)).isoformat()}
            consent = record_consent(patient_system=world["record"].identifier_system,
                                     patient_value=world["record"].local_id, policy_rule="OPTOUT",
                                     provision=provision, source="form", actor=SYSTEM,
                                     date_recorded=now - timedelta(days=2))  # fmt: skip
            if state == "withdrawn":
                withdraw_consent(consent=consent, actor=SYSTEM, reason="patient asked")


@pytest.mark.parametrize(("number", "consents", "request_text", "outcome", "withheld"), documented_cases())
def test_documented_case(number, consents, request_text, outcome, withheld, world, settings):
    set_up(consents, world, settings)
    requester, purpose, *labels = request_text.split()
    decision = decide(world["person"], world[requester], purpose, set(labels[0].split(",")) if labels else set(),
                      custodian=world["B"])  # fmt: skip
    assert decision.outcome == outcome, decision.reason
    if withheld == "denied":
        assert decision.permitted is False
    else:
        assert decision.permitted is True
        assert decision.redact == (frozenset() if withheld == "—" else frozenset(withheld.split(",")))


def test_the_document_holds_at_least_25_cases():
    assert len(documented_cases()) >= 25


def test_a_consent_follows_its_identifier_into_a_merge(world):
    other = register(world["A"], "A-9", given_name="Someone", family_name="Else", birth_date=None).record
    match_record(other.pk)
    other_person = Link.objects.get(record=other, state=LinkState.MATCH).person
    record_consent(patient_system=other.identifier_system, patient_value=other.local_id, policy_rule="OPTOUT",
                   provision={"type": "deny"}, source="verbal", actor=SYSTEM)  # fmt: skip
    assert decide(world["person"], world["A"], "TREAT").permitted is True
    merge_persons(survivor=world["person"], retired=other_person, actor=SYSTEM, reason="same patient")
    assert decide(world["person"], world["A"], "TREAT").outcome == "DENY"


# --- properties ----------------------------------------------------------------------------------

LABELS = sorted({"N", "R", "V", "PSY", "HIV", "ETH", "42CFRPart2"})
PURPOSES = ["TREAT", "ETREAT", "HPAYMT", "HRESCH"]
PROPERTY = hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def provisions(kinds: st.SearchStrategy) -> st.SearchStrategy:
    leaf = st.fixed_dictionaries(
        {"type": kinds},
        optional={
            "actors": st.lists(st.sampled_from(["A", "B"]), max_size=2),
            "purposes": st.lists(st.sampled_from(PURPOSES), max_size=2),
            "labels": st.lists(st.sampled_from(LABELS), max_size=2),
        },
    )
    return st.builds(lambda root, nested: {**root, "provisions": nested}, leaf, st.lists(leaf, max_size=2))


any_provision = provisions(st.sampled_from(["permit", "deny"]))
requests = st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(PURPOSES), st.sets(st.sampled_from(LABELS)))


def store(world: dict, provision: dict, **fields) -> Consent:
    def ids(p: dict) -> dict:
        return {**p, "actors": [world[a].pk for a in p.get("actors", [])],
                **({"provisions": [ids(n) for n in p["provisions"]]} if "provisions" in p else {})}  # fmt: skip

    return Consent.objects.create(patient_system=world["record"].identifier_system,
                                  patient_value=world["record"].local_id, policy_rule="OPTOUT",
                                  provision=clean(ids(provision)), source="form",
                                  date_recorded=timezone.now() - timedelta(days=1), **fields)  # fmt: skip


def released(decision, labels: set) -> tuple[bool, frozenset]:
    return decision.permitted, (frozenset(labels) - decision.redact) if decision.permitted else frozenset()


def narrower_or_equal(after, before) -> bool:
    return (not after[0] or before[0]) and after[1] <= before[1]


def reset() -> None:
    ConsentVersion.objects.all().delete()
    Consent.objects.all().delete()


def test_withdrawing_a_permit_never_widens_access(world):
    @PROPERTY
    @given(st.lists(any_provision, max_size=3), provisions(st.just("permit")), requests)
    def check(others, permit, request):
        reset()
        for provision in others:
            store(world, provision)
        permit_consent = store(world, permit)
        requester, purpose, labels = request
        before = released(decide(world["person"], world[requester], purpose, labels), labels)
        Consent.objects.filter(pk=permit_consent.pk).update(status="inactive")
        after = released(decide(world["person"], world[requester], purpose, labels), labels)
        assert narrower_or_equal(after, before)

    check()


def test_adding_a_deny_never_widens_access(world):
    @PROPERTY
    @given(st.lists(any_provision, max_size=3), provisions(st.just("deny")), requests)
    def check(others, deny, request):
        reset()
        for provision in others:
            store(world, provision)
        requester, purpose, labels = request
        before = released(decide(world["person"], world[requester], purpose, labels), labels)
        store(world, deny)
        after = released(decide(world["person"], world[requester], purpose, labels), labels)
        assert narrower_or_equal(after, before)

    check()


def test_an_expired_consent_never_decides(world):
    @PROPERTY
    @given(st.lists(any_provision, max_size=2), any_provision, requests)
    def check(others, expired, request):
        reset()
        for provision in others:
            store(world, provision)
        requester, purpose, labels = request
        before = decide(world["person"], world[requester], purpose, labels)
        store(world, {**expired, "period": {"end": (timezone.now() - timedelta(hours=1)).isoformat()}})
        assert decide(world["person"], world[requester], purpose, labels) == before

    check()


def test_sensitive_labels_need_a_permit_by_name(world):
    @PROPERTY
    @given(st.lists(any_provision, max_size=3), requests)
    def check(consents, request):
        reset()
        for provision in consents:
            store(world, provision)
        requester, purpose, labels = request
        decision = decide(world["person"], world[requester], purpose, labels)
        named = {label for p in consents for q in [p, *p["provisions"]] if q["type"] == "permit"
                 for label in q.get("labels", [])}  # fmt: skip
        for label in labels & SENSITIVE - named:
            assert not decision.permitted or label in decision.redact

    check()


# --- a member's consent permits only for the data that member holds (consent/access.py) ----------


def test_a_members_permit_opens_its_own_data_only(world, settings):
    settings.CONSENT_IMPLICIT_POLICY = "deny"
    store(world, {"type": "permit", "labels": ["PSY"], "actors": ["A"]}, recorded_by_organization=world["A"])
    store(world, {"type": "permit", "actors": ["A"]}, recorded_by_organization=world["A"])
    held_by_a = decide(world["person"], world["A"], "TREAT", {"PSY"}, custodian=world["A"])
    assert (held_by_a.permitted, held_by_a.redact) == (True, frozenset())
    held_by_b = decide(world["person"], world["A"], "TREAT", {"PSY"}, custodian=world["B"])
    assert held_by_b.permitted is False  # B's data follows B's policy: A's consent says nothing of it
    assert decide(world["person"], world["A"], "TREAT").permitted is False  # nor of the person's identity


def test_a_members_deny_narrows_for_every_custodian(world):
    store(world, {"type": "deny"}, recorded_by_organization=world["A"])
    assert decide(world["person"], world["B"], "TREAT", custodian=world["B"]).outcome == "DENY"
    assert decide(world["person"], world["B"], "TREAT").outcome == "DENY"


def test_consents_staff_recorded_speak_for_every_custodian(world, settings):
    settings.CONSENT_IMPLICIT_POLICY = "deny"
    store(world, {"type": "permit", "actors": ["A"]})
    assert decide(world["person"], world["A"], "TREAT", custodian=world["B"]).permitted is True


def test_a_members_consent_never_widens_access_to_another_members_data(world):
    @PROPERTY
    @given(st.lists(any_provision, max_size=2), any_provision, requests)
    def check(others, forged, request):
        reset()
        for provision in others:
            store(world, provision)
        requester, purpose, labels = request
        before = released(decide(world["person"], world[requester], purpose, labels, custodian=world["B"]), labels)
        store(world, forged, recorded_by_organization=world["A"])
        after = released(decide(world["person"], world[requester], purpose, labels, custodian=world["B"]), labels)
        assert narrower_or_equal(after, before)

    check()
