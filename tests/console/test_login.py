"""Staff log in to the console with the demo login that `make run` prints."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from hie.exchange.models import DeadLetter
from hie.locator.models import DocumentEntry
from hie.orgs.models import Organization


@pytest.fixture
def demo(db, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # training, matching and the demo gather job
        call_command("seed_demo")
    return capsys.readouterr().out


def test_demo_login_opens_the_console_with_the_demo_members(client, demo):
    assert "demo / demo-hie-console" in demo
    page = client.get("/console/login/")
    assert page.status_code == 200
    assert b"Staff log in" in page.content
    response = client.post("/console/login/", {"username": "demo", "password": "demo-hie-console"}, follow=True)
    assert response.redirect_chain[-1][0] == "/console/"
    assert b"Riverside General Hospital" in response.content


def test_wrong_password_shows_a_form_error(client, demo):
    response = client.post("/console/login/", {"username": "demo", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_console_needs_a_login(client, db):
    response = client.get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_staff_without_a_role_are_refused(client, db):
    user = get_user_model().objects.create_user("norole", password="x-long-password-1")
    client.force_login(user)
    assert client.get("/console/").status_code == 403


def test_seeding_twice_keeps_one_of_each_and_prints_working_secrets(client, demo, capsys):
    call_command("seed_demo")
    assert Organization.objects.count() == 3
    assert get_user_model().objects.filter(username="demo").count() == 1
    for organization in Organization.objects.all():
        assert organization.api_clients.count() == 1
    assert DocumentEntry.objects.count() == 120  # demo documents, seeded once
    # A real gather job to the demo lab, whose endpoint does not answer: a dead letter to replay.
    assert DeadLetter.objects.filter(resolved=False).count() == 1
