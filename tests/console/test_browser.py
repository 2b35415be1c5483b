"""The console in a real browser (headless Chromium through Playwright), against the running server."""

import re

import pytest
from playwright.sync_api import expect

from consent.models import Consent, ConsentStatus
from hie.hl7v2.models import InboundMessage, MessageState
from matching.models import ReviewStatus, ReviewTask
from matching.selectors import current_link
from tests.matching.factories import organization

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_works_two_tasks_by_keyboard_then_undoes_the_merge_from_the_patient_page(
    console, live_server, possible_match, screenshot
):
    first, second, task = possible_match()
    other_first, other_second, other_task = possible_match(given_name="Tobias", family_name="Lindqvist", sex="male")
    provisional = current_link(second.pk)  # linked provisionally to the candidate while the review waits
    page = console()
    expect(page.locator("#score-histogram")).to_be_visible()
    screenshot(page, "dashboard")

    page.click("text=Review queue")
    expect(page.locator("#review-list")).to_contain_text(f"#{task.pk}")
    page.click(f"#review-list a:text('#{task.pk}')")
    expect(page.locator("section.candidate").first).to_contain_text("Birth date")
    screenshot(page, "review")

    page.keyboard.press("s")  # same person as the first candidate
    page.wait_for_url(re.compile(rf"/console/review/{other_task.pk}/$"))
    page.keyboard.press("d")  # not the same person
    page.wait_for_url(re.compile(r"/console/review/$"))
    expect(page.locator(".messages")).to_contain_text("No more open reviews")

    assert ReviewTask.objects.get(pk=task.pk).status == ReviewStatus.SAME
    assert ReviewTask.objects.get(pk=other_task.pk).status == ReviewStatus.DIFFERENT
    person = current_link(first.pk).person
    assert current_link(second.pk).person == person
    assert current_link(other_first.pk).person != current_link(other_second.pk).person

    page.goto(f"{live_server.url}/console/persons/{person.euid}/")
    expect(page.locator("#linked-records")).to_contain_text(second.local_id)
    screenshot(page, "patient")
    decision = page.locator("#link-history li[data-kind=review_decision]").first
    decision.locator("input[name=reason]").fill("linked in error")
    decision.locator("button:text('Undo')").click()
    expect(page.locator(".messages")).to_contain_text("undone")
    expect(page.locator(f"#linked-records tr[data-record='{second.local_id}']")).to_contain_text("possible match")
    restored = current_link(second.pk)
    assert (restored.person_id, restored.state, restored.source) == (provisional.person_id, "possible_match", "auto")
    page.click("text=Review queue")  # the decision is undone: the task waits for a reviewer again
    expect(page.locator("#review-list")).to_contain_text(f"#{task.pk}")


def test_clerk_records_and_withdraws_a_consent(console, live_server, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    page = console("consent_clerk", username="clerk")
    page.click("text=Patients")
    page.fill("#id_q", first.local_id)
    page.click("button:text('Search')")
    page.click(f"#search-results a:text('{person.euid}')")
    page.click("text=Record a consent")
    page.select_option("#id_policy_rule", "OPTOUT")
    page.select_option("#id_source", "verbal")
    page.select_option("#id_type", "deny")
    page.click("button:text('Record consent')")
    expect(page.locator(".messages")).to_contain_text("recorded")
    expect(page.locator("#decisions")).to_contain_text("denied by consent")

    consent = Consent.objects.get()
    row = page.locator(f"#consents tr[data-consent='{consent.pk}']")
    row.locator("input[name=reason]").fill("patient asked")
    row.locator("button:text('Withdraw')").click()
    expect(page.locator(".messages")).to_contain_text("withdrawn")
    expect(page.locator(f"#consents tr[data-consent='{consent.pk}'] .status")).to_contain_text("inactive")
    expect(page.locator("#decisions")).not_to_contain_text("denied by consent")
    consent.refresh_from_db()
    assert consent.status == ConsentStatus.INACTIVE


def test_administrator_replays_a_failed_message(console, live_server):
    member = organization()
    InboundMessage.objects.create(
        organization=member, sending_facility="F", control_id="77", message_type="ADT^A01", raw=b"MSH|",
        state=MessageState.FAILED, ack_code="AA", error="processing failed",
    )  # fmt: skip
    page = console()
    page.click("text=HL7 inbox")
    expect(page.locator("#inbox")).to_contain_text("processing failed")
    page.click("button:text('Replay 1 failed message')")
    expect(page.locator(".messages")).to_contain_text("1 failed message(s) put back in line")
    assert InboundMessage.objects.get().attempts >= 1


def test_administrator_replays_a_dead_letter(console, live_server, custodian_server, screenshot):
    from datetime import timedelta

    from django.utils import timezone

    from hie.exchange.models import CallStatus, CustodianCall, DeadLetter, GatherJob
    from hie.locator.models import CustodianAccess
    from matching.services import match_record
    from tests.fhir.custodian import CLIENT_ID, CLIENT_SECRET
    from tests.matching.factories import register

    held = custodian_server()  # answers now; it failed when the letter was written
    custodian = organization("Metro Lab")
    custodian.fhir_endpoint = f"{held.base}/r4"
    custodian.save()
    record = register(custodian, local_id="M-1").record
    match_record(record.pk)
    CustodianAccess.objects.create(organization=custodian, token_url=f"{held.base}/token", client_id=CLIENT_ID,
                                   client_secret=CLIENT_SECRET)  # fmt: skip
    held.listings["M-1"] = []
    job = GatherJob.objects.create(requester=organization("Clinic"), person=record.links.get().person,
                                   purpose="TREAT", idempotency_key="k",
                                   deadline=timezone.now() - timedelta(minutes=1))  # fmt: skip
    call = CustodianCall.objects.create(job=job, custodian=custodian, status=CallStatus.FAILED, attempts=3,
                                        last_error="the custodian answered 500")  # fmt: skip
    letter = DeadLetter.objects.create(call=call, error=call.last_error, attempts=3)
    page = console()
    page.click("text=Exchange")
    expect(page.locator("#dead-letters")).to_contain_text("the custodian answered 500")
    screenshot(page, "exchange")
    page.locator(f"#dead-letters tr[data-letter='{letter.pk}'] button").click()
    expect(page.locator(".messages")).to_contain_text(f"Dead letter #{letter.pk} replayed: the custodian answered")
    expect(page.locator(f"#dead-letters tr[data-letter='{letter.pk}']")).to_have_count(0)
    letter.refresh_from_db()
    assert (letter.replays, letter.resolved) == (1, True)
    call.refresh_from_db()
    assert call.status == CallStatus.DONE
