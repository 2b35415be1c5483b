"""Match-on-write, review decisions, merge, split and undo, through the services."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model

from hie.audit.services import Actor
from hie.exceptions import Forbidden, ValidationFailed
from matching.models import (
    ChangeKind,
    Link,
    LinkSource,
    LinkState,
    PairLabel,
    PatientRecord,
    PendingMatch,
    Person,
    PersonStatus,
    ReviewStatus,
    ReviewTask,
)
from matching.selectors import current_link
from tests.matching.factories import organization, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    user = get_user_model().objects.create_user("reviewer1", password="a-long-password-1")
    return Actor(staff_user_id=user.pk)


def person_of(record: PatientRecord) -> Person:
    return current_link(record.pk).person


def snapshot(person_ids: list[int] | None = None) -> tuple:
    """Everything the index says about who is who (about these persons, or all)."""
    links = sorted(Link.objects.values_list("record_id", "person_id", "state", "source", "score", "contributions"))
    persons = Person.objects.filter(pk__in=person_ids) if person_ids else Person.objects.all()
    return links, sorted(persons.values_list("pk", "status", "merged_into_id", "golden"))


def test_same_person_at_two_organizations_is_linked_automatically(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), ssn="521-43-8876", phones=["503-555-0142"]).record
        b = register(organization(), given_name="Marisol", family_name="Quintanila", ssn="521-43-8876",
                     phones=["(503) 555 0142"]).record  # fmt: skip
    assert person_of(a) == person_of(b)
    link = current_link(b.pk)
    assert (link.state, link.source) == (LinkState.MATCH, LinkSource.AUTO)
    assert link.score >= 0.95
    assert {f["field"] for f in link.contributions["fields"]} >= {"given", "family", "ssn"}
    assert not PendingMatch.objects.filter(record=b).exists()
    golden = person_of(a).golden
    assert len(golden["identifiers"]) == 2


def test_stranger_starts_a_new_person(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization()).record
        b = register(organization(), given_name="Tobias", family_name="Lindqvist", sex="male",
                     birth_date=date(1961, 9, 30), address_line="9 Elm Ct", postal_code="10001").record  # fmt: skip
    assert person_of(a) != person_of(b)


def test_twins_get_two_persons(django_capture_on_commit_callbacks):
    org = organization()
    with django_capture_on_commit_callbacks(execute=True):
        a = register(org, phones=["503-555-0142"]).record
        b = register(org, given_name="Graciela", phones=["503-555-0142"]).record
    assert person_of(a) != person_of(b)


def test_a_person_holding_another_ssn_is_left_to_a_person(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        register(organization(), given_name="Jerry", family_name="Johanssen")  # no SSN: it bridges
        jerry = register(organization(), given_name="Jerry", family_name="Johanssen", ssn="512-44-6335").record
        # Gerald (Jerry is his nickname) with another SSN: his twin, or a wrong SSN. Not for the arithmetic.
        gerald = register(organization(), given_name="Gerald", family_name="Johanssen", ssn="523-18-3043").record
    assert current_link(gerald.pk).state == LinkState.POSSIBLE_MATCH
    assert current_link(gerald.pk).person_id == person_of(jerry).pk


def test_twins_with_alike_given_names_are_left_to_a_person(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sandra = register(organization(), given_name="Sandra", middle_name="Martha").record
        sarah = register(organization(), given_name="Sarah", middle_name="Donna").record
    link = current_link(sarah.pk)
    assert link.state == LinkState.POSSIBLE_MATCH  # not linked automatically: a reviewer decides
    assert "possible_twins" in link.contributions["rules"]
    assert link.person_id == person_of(sandra).pk  # her provisional person, until someone decides


def test_names_spelled_almost_alike_are_twins_to_a_person_unless_the_middle_names_agree(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        theresa = register(organization(), given_name="Theresa", middle_name="Ann", ssn="").record
        teresa = register(organization(), given_name="Teresa", middle_name="Marie", ssn="").record
        # The same spelling variant with the same middle name: a typing slip of one person.
        theresa_again = register(organization(), given_name="Teresa", middle_name="Ann", ssn="").record
    assert current_link(teresa.pk).state == LinkState.POSSIBLE_MATCH
    assert "possible_twins" in current_link(teresa.pk).contributions["rules"]
    assert current_link(theresa_again.pk).state == LinkState.MATCH
    assert person_of(theresa_again) == person_of(theresa)


def test_a_person_holding_a_twin_of_the_new_record_is_left_to_a_person(django_capture_on_commit_callbacks, staff):
    from matching.services import link_record

    org = organization()
    with django_capture_on_commit_callbacks(execute=True):
        marisol = register(org).record
        graciela = register(org, given_name="Graciela").record  # her twin: a person of her own
    assert person_of(marisol) != person_of(graciela)
    # Someone joined the twins' records into one person (by mistake, or a chain of links did).
    link_record(record=graciela, person=person_of(marisol), actor=staff, reason="test: a wrong merge")
    with django_capture_on_commit_callbacks(execute=True):
        again = register(organization()).record  # Marisol again, at another member
    # Her best pair is a perfect match, but the person also holds her twin: a reviewer decides.
    link = current_link(again.pk)
    assert link.state == LinkState.POSSIBLE_MATCH
    assert link.person_id == person_of(marisol).pk
    assert ReviewTask.objects.get(record=again).status == ReviewStatus.OPEN


def test_uncertain_match_opens_a_review_with_an_explanation(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        register(organization(), address_line="", postal_code="")
        b = register(organization(), birth_date=date(1984, 7, 29), address_line="",
                     postal_code="").record  # fmt: skip
    task = ReviewTask.objects.get(record=b)
    assert task.status == ReviewStatus.OPEN
    assert 0.5 <= task.top_score < 0.95
    candidate = task.candidates.get()
    assert candidate.explanation["fields"][0]["field"] == "given"
    assert current_link(b.pk).state == LinkState.POSSIBLE_MATCH


def test_review_decided_not_the_same_is_never_proposed_again(django_capture_on_commit_callbacks, staff):
    from matching.services import decide_review, match_record

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), address_line="", postal_code="").record
        b = register(organization(), birth_date=date(1984, 7, 29), address_line="",
                     postal_code="").record  # fmt: skip
    task = ReviewTask.objects.get(record=b)
    decide_review(task=task, same_person=None, actor=staff)
    assert person_of(a) != person_of(b)
    assert PairLabel.objects.get().is_match is False
    match_record(b.pk)  # re-evaluation must not propose the refused person
    assert ReviewTask.objects.filter(record=b, status=ReviewStatus.OPEN).count() == 0
    assert person_of(a) != person_of(b)


def test_review_decided_same_person_links_manually_and_labels(django_capture_on_commit_callbacks, staff):
    from matching.services import decide_review

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), address_line="", postal_code="").record
        b = register(organization(), birth_date=date(1984, 7, 29), address_line="",
                     postal_code="").record  # fmt: skip
    task = ReviewTask.objects.get(record=b)
    decide_review(task=task, same_person=person_of(a), actor=staff)
    link = current_link(b.pk)
    assert (link.person, link.state, link.source) == (person_of(a), LinkState.MATCH, LinkSource.MANUAL)
    assert PairLabel.objects.get().is_match is True


def test_manual_link_survives_an_update_of_the_record(django_capture_on_commit_callbacks, staff):
    from matching.services import link_record

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization()).record
        org_b = organization()
        b = register(org_b, "B1", given_name="Tobias", family_name="Lindqvist").record
    link_record(record=b, person=person_of(a), actor=staff, reason="chart review")
    with django_capture_on_commit_callbacks(execute=True):
        register(org_b, "B1", given_name="Tobias", family_name="Lindqvist", city="Portland")
    assert person_of(b) == person_of(a)
    assert current_link(b.pk).source == LinkSource.MANUAL


def test_unmerge_restores_the_exact_prior_state(django_capture_on_commit_callbacks, staff):
    from matching.services import merge_persons, undo_change

    with django_capture_on_commit_callbacks(execute=True):
        a1 = register(organization(), ssn="521-43-8876").record
        register(organization(), ssn="521-43-8876")
        c = register(organization(), given_name="Tobias", family_name="Lindqvist", sex="male",
                     birth_date=date(1961, 9, 30)).record  # fmt: skip
    before = snapshot()
    survivor, retired = person_of(a1), person_of(c)
    change = merge_persons(survivor=survivor, retired=retired, actor=staff, reason="same patient per chart")
    retired.refresh_from_db()
    assert (retired.status, retired.merged_into) == (PersonStatus.RETIRED, survivor)
    assert person_of(c) == survivor
    undo_change(change=change, actor=staff, reason="merged in error")
    assert snapshot() == before
    with pytest.raises(ValidationFailed):
        undo_change(change=change, actor=staff, reason="twice")


def test_split_moves_the_record_to_a_new_person_and_undo_restores_it(django_capture_on_commit_callbacks, staff):
    from matching.services import match_record, undo_change, unlink_record

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), ssn="521-43-8876").record
        b = register(organization(), ssn="521-43-8876").record
    before = snapshot()
    change = unlink_record(record=b, actor=staff, reason="different patient, same SSN typed")
    assert person_of(a) != person_of(b)
    match_record(b.pk)
    assert person_of(a) != person_of(b), "a split is a manual decision that matching keeps"
    split_person = person_of(b)
    undo_change(change=change, actor=staff, reason="split in error")
    assert snapshot([p for p, *_ in before[1]]) == before
    split_person.refresh_from_db()
    assert split_person.status == PersonStatus.RETIRED, "persons are retired, never deleted"
    assert change.kind == ChangeKind.UNLINK


def test_writing_under_another_members_identifier_system_is_refused():
    from matching.models import Source
    from matching.services import Demographics, register_record

    mine, theirs = organization(), organization()
    with pytest.raises(Forbidden):
        register_record(organization=mine, identifier_system=theirs.identifier_system_uris[0], local_id="X1",
                        demographics=Demographics(given_name="A"), source=Source.FHIR)  # fmt: skip


def test_unchanged_registration_is_not_rematched(django_capture_on_commit_callbacks):
    org = organization()
    with django_capture_on_commit_callbacks(execute=True):
        first = register(org, "M1")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = register(org, "M1")
    assert (again.changed, again.record.version, len(callbacks)) == (False, first.record.version, 0)


def test_retired_record_leaves_its_person(django_capture_on_commit_callbacks):
    from matching.services import retire_record

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization()).record
    person = person_of(a)
    retire_record(record=a)
    person.refresh_from_db()
    assert current_link(a.pk) is None
    assert person.status == PersonStatus.RETIRED


def test_sweep_matches_records_left_pending_and_leaves_fresh_ones(django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from matching.tasks import sweep_pending_matches

    org = organization()
    # The match message was lost: the records were stored but their tasks never ran.
    lost = register(org).record
    fresh = register(org, given_name="Tobias", family_name="Lindqvist").record
    assert set(PendingMatch.objects.values_list("record_id", flat=True)) == {lost.pk, fresh.pk}
    PendingMatch.objects.filter(record=lost).update(since=timezone.now() - timedelta(minutes=5))

    assert sweep_pending_matches(older_than_seconds=120) == 1
    assert current_link(lost.pk) is not None
    assert list(PendingMatch.objects.values_list("record_id", flat=True)) == [fresh.pk]


@pytest.mark.parametrize("same", [True, False])
def test_undoing_a_review_decision_reopens_the_review_without_its_labels(
    django_capture_on_commit_callbacks, staff, same
):
    from matching.services import decide_review, undo_change

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), address_line="", postal_code="").record
        b = register(organization(), birth_date=date(1984, 7, 29), address_line="",
                     postal_code="").record  # fmt: skip
    before = snapshot()
    task = decide_review(task=ReviewTask.objects.get(record=b), same_person=person_of(a) if same else None,
                         actor=staff)  # fmt: skip
    assert PairLabel.objects.count() == 1
    undo_change(change=task.decision, actor=staff, reason="decided in error")
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN
    assert (task.decided_by, task.decision) == (None, None)
    assert not PairLabel.objects.exists()
    links_before, _ = before
    links_after, _ = snapshot()
    assert [row[:4] for row in links_after] == [row[:4] for row in links_before]


def test_enterprise_ids_made_at_once_are_opaque_base32_and_distinct():
    import re
    from collections import Counter

    from matching.models import EUID_ALPHABET, new_euid, new_euids

    many = new_euids(20_000)
    assert len(set(many)) == len(many)
    assert all(re.fullmatch(f"E[{EUID_ALPHABET}]{{12}}", euid) for euid in [*many, new_euid()])
    # every letter of every place is drawn: 60 random bits, none fixed
    for place in range(1, 13):
        assert len(Counter(euid[place] for euid in many)) == 32
    assert new_euids(0) == []
