"""Every console page opens for its roles and refuses the others; what the pages do, through Django's test client."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from consent.models import BreakGlass, Consent, ConsentStatus
from consent.services import open_break_glass
from hie.audit.models import AuditEvent
from hie.audit.services import SYSTEM
from hie.console.roles import ADMINISTRATOR, CONSENT_CLERK, REVIEWER
from hie.hl7v2.models import InboundMessage, MessageState
from hie.orgs.models import ApiClient
from hie.orgs.services import create_api_client
from matching.models import LinkState, PairLabel, ReviewStatus, TrainingRun
from matching.selectors import current_link
from tests.matching.factories import organization, register

pytestmark = pytest.mark.django_db

# (url name builder, roles that may open it) for pages that only read
PAGES = {
    "/console/": {REVIEWER, CONSENT_CLERK, ADMINISTRATOR},
    "/console/review/": {REVIEWER, ADMINISTRATOR},
    "/console/persons/": {REVIEWER, CONSENT_CLERK, ADMINISTRATOR},
    "/console/break-glass/": {CONSENT_CLERK, ADMINISTRATOR},
    "/console/members/": {ADMINISTRATOR},
    "/console/audit/": {ADMINISTRATOR},
    "/console/jobs/inbox/": {ADMINISTRATOR},
    "/console/jobs/training/": {REVIEWER, ADMINISTRATOR},
    "/console/jobs/exchange/": {ADMINISTRATOR},
}


@pytest.mark.parametrize("role", [REVIEWER, CONSENT_CLERK, ADMINISTRATOR])
@pytest.mark.parametrize("url", sorted(PAGES))
def test_each_page_opens_only_for_its_roles(as_role, role, url):
    response = as_role(role).get(url)
    assert response.status_code == (200 if role in PAGES[url] else 403)


def test_pages_need_a_login(client):
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/console/login/")


def test_navigation_shows_only_the_pages_of_the_role(reviewer):
    page = reviewer.get("/console/").content.decode()
    assert "Review queue" in page
    assert "Members" not in page
    assert "Audit log" not in page


def test_dashboard_draws_the_score_histogram_with_both_thresholds(reviewer, possible_match):
    possible_match()
    page = reviewer.get("/console/").content.decode()
    assert 'id="score-histogram"' in page
    assert page.count('class="threshold"') == 2
    assert ">review<" in page
    assert ">auto-link<" in page
    assert 'id="records-per-day"' in page


def test_review_queue_lists_open_tasks_and_filters_by_member(reviewer, possible_match):
    _, second, task = possible_match()
    page = reviewer.get("/console/review/").content.decode()
    assert f"/console/review/{task.pk}/" in page
    other = organization()
    filtered = reviewer.get(f"/console/review/?organization={other.pk}").content.decode()
    assert f"/console/review/{task.pk}/" not in filtered
    own = reviewer.get(f"/console/review/?organization={second.organization_id}").content.decode()
    assert f"/console/review/{task.pk}/" in own


def test_review_page_shows_the_pair_field_by_field_with_weights(reviewer, possible_match):
    _first, _second, task = possible_match()
    response = reviewer.get(f"/console/review/{task.pk}/")
    page = response.content.decode()
    assert "1984-07-29" in page
    assert "1984-07-19" in page
    assert 'class="disagree"' in page or 'class="agree"' in page
    assert "Same person as" in page
    assert "Not the same person" in page
    event = AuditEvent.objects.get(event_type="console-review-view")
    assert event.staff_user_id is not None
    assert event.detail == {"task": task.pk}


def test_deciding_same_person_links_the_record_and_opens_the_next_task(reviewer, possible_match):
    first, second, task = possible_match()
    _, _, later = possible_match(given_name="Tobias", family_name="Lindqvist", sex="male")
    person = current_link(first.pk).person
    response = reviewer.post(f"/console/review/{task.pk}/decide/", {"decision": "same", "person": person.euid})
    assert response.status_code == 302
    assert response["Location"] == f"/console/review/{later.pk}/"
    task.refresh_from_db()
    assert task.status == ReviewStatus.SAME
    assert current_link(second.pk).person == person
    assert current_link(second.pk).state == LinkState.MATCH
    assert PairLabel.objects.get().is_match is True


def test_deciding_not_the_same_person_is_stored_as_a_label(reviewer, possible_match):
    first, second, task = possible_match()
    response = reviewer.post(f"/console/review/{task.pk}/decide/", {"decision": "different"})
    assert response["Location"] == "/console/review/"
    assert current_link(first.pk).person != current_link(second.pk).person
    assert PairLabel.objects.get().is_match is False


def test_skipped_tasks_are_not_offered_again_as_next(reviewer, possible_match):
    _, _, task = possible_match()
    response = reviewer.post(f"/console/review/{task.pk}/decide/", {"decision": "skip"})
    assert response["Location"] == "/console/review/"
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN


def test_a_consent_clerk_cannot_decide_reviews(clerk, possible_match):
    _, _, task = possible_match()
    assert clerk.post(f"/console/review/{task.pk}/decide/", {"decision": "different"}).status_code == 403


def test_person_search_finds_by_identifier_name_and_euid(reviewer, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    for q in (first.local_id, "quintanilla marisol", "Quintanilla 1984-07-19", person.euid):
        page = reviewer.get("/console/persons/", {"q": q}).content.decode()
        assert f"/console/persons/{person.euid}/" in page, q
    assert AuditEvent.objects.filter(event_type="console-person-search").count() == 4


def test_person_page_shows_records_history_decisions_and_is_audited(reviewer, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    page = reviewer.get(f"/console/persons/{person.euid}/").content.decode()
    assert first.local_id in page
    assert "matched automatically" in page  # the link history
    assert "Who can see what today" in page
    assert "implicit policy all-normal" in page
    assert AuditEvent.objects.filter(event_type="console-person-view", person_euid=person.euid).exists()


def test_split_needs_a_reason_and_undo_restores_the_merge(reviewer, django_capture_on_commit_callbacks):
    from datetime import date

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), ssn="521-43-8876").record
        b = register(organization(), ssn="521-43-8876", birth_date=date(1984, 7, 19)).record
    person = current_link(a.pk).person
    assert current_link(b.pk).person == person
    url = f"/console/persons/{person.euid}/records/{b.pk}/split/"
    refused = reviewer.post(url, {"reason": "  "}, follow=True)
    assert "Give a reason" in refused.content.decode()
    assert current_link(b.pk).person == person
    reviewer.post(url, {"reason": "different people per chart"})
    assert current_link(b.pk).person != person
    from matching.models import ChangeKind, LinkChange

    split = LinkChange.objects.get(kind=ChangeKind.UNLINK)
    reviewer.post(f"/console/changes/{split.pk}/undo/", {"reason": "split in error", "euid": person.euid})
    assert current_link(b.pk).person == person


def test_a_merged_persons_page_leads_to_the_survivor(reviewer, django_capture_on_commit_callbacks):
    from hie.audit.services import Actor
    from matching.services import merge_persons

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization()).record
        b = register(organization(), given_name="Tobias", family_name="Lindqvist").record
    survivor, retired = current_link(a.pk).person, current_link(b.pk).person
    merge_persons(survivor=survivor, retired=retired, actor=Actor(), reason="test")
    response = reviewer.get(f"/console/persons/{retired.euid}/")
    assert response["Location"] == f"/console/persons/{survivor.euid}/"


def test_clerk_records_a_consent_with_its_scan_then_withdraws_it(clerk, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    url = f"/console/persons/{person.euid}/consents/new/"
    missing_scan = clerk.post(url, {"policy_rule": "OPTOUT", "source": "form", "type": "deny"})
    assert missing_scan.status_code == 200
    assert "recorded with its scan" in missing_scan.content.decode()
    scan = SimpleUploadedFile("form.pdf", b"%PDF-1.4 signed", content_type="application/pdf")
    response = clerk.post(url, {"policy_rule": "OPTOUT", "source": "form", "type": "deny", "scanned_form": scan})
    assert response.status_code == 302
    consent = Consent.objects.get()
    assert consent.provision["type"] == "deny"
    assert consent.patient_value == person.euid
    page = clerk.get(f"/console/persons/{person.euid}/").content.decode()
    assert "denied by consent" in page
    assert clerk.get(f"/console/consents/{consent.pk}/scan/").getvalue() == b"%PDF-1.4 signed"
    clerk.post(
        f"/console/consents/{consent.pk}/withdraw/", {"reason": "patient changed their mind", "euid": person.euid}
    )
    consent.refresh_from_db()
    assert consent.status == ConsentStatus.INACTIVE


def test_consent_form_rejects_an_exception_going_the_same_way(clerk, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    same_way = {"policy_rule": "OPTOUTE", "source": "verbal", "type": "deny", "exception_type": "deny"}
    response = clerk.post(f"/console/persons/{person.euid}/consents/new/", same_way)
    assert "goes the other way" in response.content.decode()
    assert not Consent.objects.exists()


def test_privacy_officer_reviews_break_the_glass_access(clerk, possible_match):
    first, second, _ = possible_match()
    grant = open_break_glass(person=current_link(first.pk).person, requester=second.organization, purpose="ETREAT",
                             reason="unconscious in the emergency department", minutes=30, actor=SYSTEM)  # fmt: skip
    assert "unconscious in the emergency department" in clerk.get("/console/break-glass/").content.decode()
    clerk.post(f"/console/break-glass/{grant.pk}/review/", {"note": "appropriate"})
    grant.refresh_from_db()
    assert grant.reviewed_at is not None
    assert grant.review_note == "appropriate"
    assert not BreakGlass.objects.filter(reviewed_at__isnull=True).exists()


def test_administrator_creates_rotates_and_revokes_a_client(admin):
    member = organization()
    response = admin.post(f"/console/members/{member.pk}/", {"label": "EHR", "scopes": ["system/Patient.read"]})
    page = response.content.decode()
    assert response["Cache-Control"] == "no-store"
    client = ApiClient.objects.get(organization=member)
    assert client.client_id in page
    assert 'id="client-secret"' in page
    assert client.scope_list == ["system/Patient.read"]
    rotated = admin.post(f"/console/clients/{client.pk}/rotate/")
    assert 'id="client-secret"' in rotated.content.decode()
    admin.post(f"/console/clients/{client.pk}/revoke/")
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert AuditEvent.objects.filter(event_type__startswith="api-client-").count() == 3


def test_reviewer_cannot_manage_members(reviewer):
    member = organization()
    client = create_api_client(organization=member, scopes=["system/Patient.read"]).client
    assert reviewer.get(f"/console/members/{member.pk}/").status_code == 403
    assert reviewer.post(f"/console/clients/{client.pk}/revoke/").status_code == 403


def test_audit_search_filters_and_exports_csv(admin, possible_match):
    first, _, _ = possible_match()
    person = current_link(first.pk).person
    admin.get(f"/console/persons/{person.euid}/")
    page = admin.get("/console/audit/", {"event_type": "console-person-view"}).content.decode()
    assert person.euid in page
    exported = admin.get("/console/audit/", {"person_euid": person.euid, "format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert rows[0][0] == "sequence"
    assert {row[2] for row in rows[1:]} == {"console-person-view"}


def test_inbox_lists_messages_and_replays_failed_ones(admin):
    member = organization()
    InboundMessage.objects.create(
        organization=member, sending_facility="F", control_id="1", message_type="ADT^A01", raw=b"MSH",
        state=MessageState.FAILED, ack_code="AA", error="PID-3 missing",
    )  # fmt: skip
    page = admin.get("/console/jobs/inbox/", {"state": "failed"}).content.decode()
    assert "PID-3 missing" in page
    assert "Replay 1 failed message" in page
    admin.post("/console/jobs/inbox/replay/")
    assert InboundMessage.objects.get().state != MessageState.FAILED


def test_retraining_runs_in_a_job_whose_progress_can_be_polled(admin, possible_match):
    possible_match()
    response = admin.post("/console/jobs/training/start/")
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    progress = admin.get(f"/console/jobs/training/{run.pk}/progress/").json()
    # The task is sent after the request's transaction commits; until a worker takes it, it waits.
    assert progress == {"id": run.pk, "status": "queued", "progress": 0, "message": "waiting for a worker",
                        "model_version": None}  # fmt: skip


def test_a_split_reports_whose_access_changed(reviewer, django_capture_on_commit_callbacks):
    from consent.services import record_consent

    with django_capture_on_commit_callbacks(execute=True):
        a = register(organization(), ssn="521-43-8876").record
        b = register(organization(), ssn="521-43-8876").record
    person = current_link(a.pk).person
    # The patient opted out at a's member; the consent follows whichever person a belongs to.
    record_consent(patient_system=a.identifier_system, patient_value=a.local_id, policy_rule="OPTOUT",
                   provision={"type": "deny"}, source="verbal", actor=SYSTEM)  # fmt: skip
    response = reviewer.post(f"/console/persons/{person.euid}/records/{a.pk}/split/", {"reason": "two people"},
                             follow=True)  # fmt: skip
    page = response.content.decode()
    assert "Access changed" in page
    assert f"now sees {b.organization.name} record {b.local_id} for TREAT" in page
    assert f"record {a.local_id}" not in page.split("Access changed")[1].split("</li>")[0]
    assert AuditEvent.objects.get(event_type="consent-reevaluated").detail["changed"] > 0


def test_person_page_lists_the_documents_held_for_the_person(reviewer, possible_match):
    from hie.locator.models import DocumentEntry

    first, _, _ = possible_match()
    person = current_link(first.pk).person
    DocumentEntry.objects.create(custodian=first.organization, record=first, master_system="urn:ietf:rfc:3986",
                                 master_value="urn:uuid:1", content_type="application/pdf", title="Discharge summary",
                                 type_code="http://loinc.org|18842-5", security_labels=["N"], resource={})  # fmt: skip
    page = reviewer.get(f"/console/persons/{person.euid}/").content.decode()
    assert "Discharge summary" in page
    assert "Documents held for this person (1)" in page


def _dead_letter():
    from datetime import timedelta

    from django.utils import timezone

    from hie.exchange.models import CallStatus, CustodianCall, DeadLetter, GatherJob
    from matching.services import match_record

    requester, custodian = organization(), organization()
    custodian.fhir_endpoint = "http://127.0.0.1:9/r4"  # nothing listens there
    custodian.save()
    record = register(custodian).record
    match_record(record.pk)
    job = GatherJob.objects.create(requester=requester, person=record.links.get().person, purpose="TREAT",
                                   idempotency_key="k", deadline=timezone.now() + timedelta(minutes=5))  # fmt: skip
    call = CustodianCall.objects.create(job=job, custodian=custodian, status=CallStatus.FAILED, attempts=3,
                                        last_error="the custodian could not be reached")  # fmt: skip
    return DeadLetter.objects.create(call=call, error=call.last_error, attempts=3), custodian


def test_exchange_page_replays_a_dead_letter_and_pauses_an_endpoint(admin, django_capture_on_commit_callbacks):
    from hie.exchange.models import EndpointState

    with django_capture_on_commit_callbacks(execute=True):
        letter, custodian = _dead_letter()
    page = admin.get("/console/jobs/exchange/").content.decode()
    assert "the custodian could not be reached" in page
    assert AuditEvent.objects.filter(event_type="console-exchange-view").exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/console/jobs/exchange/dead-letters/{letter.pk}/replay/", follow=True)
    assert "failed again" in response.content.decode()  # the endpoint still does not answer
    letter.refresh_from_db()
    assert letter.replays == 1
    admin.post(f"/console/jobs/exchange/endpoints/{custodian.pk}/pause/", {"paused": "true"})
    assert EndpointState.objects.get(organization=custodian).paused
    assert AuditEvent.objects.filter(event_type__in=["dead-letter-replay", "endpoint-pause"]).count() == 2


def test_bulk_replay_reports_its_progress(admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _dead_letter()
        admin.post("/console/jobs/exchange/dead-letters/replay/")
    progress = admin.get("/console/jobs/exchange/dead-letters/progress/").json()
    assert progress["status"] == "done"
    assert progress["progress"] == 100


def test_administrator_sets_a_members_endpoint(admin):
    member = organization()
    admin.post(f"/console/members/{member.pk}/endpoint/", {"fhir_endpoint": "https://fhir.lab.example/r4/"})
    member.refresh_from_db()
    assert member.fhir_endpoint == "https://fhir.lab.example/r4"
    refused = admin.post(f"/console/members/{member.pk}/endpoint/", {"fhir_endpoint": "ftp://x"}, follow=True)
    assert "must be an http(s) URL" in refused.content.decode()


def test_rematching_every_record_runs_as_a_job_with_progress(admin, possible_match, django_capture_on_commit_callbacks):
    from matching.models import RematchRun

    possible_match()
    with django_capture_on_commit_callbacks(execute=True):
        admin.post("/console/jobs/rematch/start/")
    run = RematchRun.objects.get()
    assert run.status == RematchRun.Status.DONE
    assert (run.total, run.done) == (2, 2)
    progress = admin.get(f"/console/jobs/rematch/{run.pk}/progress/").json()
    assert (progress["status"], progress["progress"]) == ("done", 100)
    assert "Re-match every record" in admin.get("/console/jobs/training/").content.decode()
