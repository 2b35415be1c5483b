"""Signing in: failed logins are throttled, and a TOTP second factor is asked where it is required."""

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from hie.audit.models import AuditEvent
from hie.console.roles import ADMINISTRATOR, REVIEWER
from tests.console.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _log_in(client, username, password=PASSWORD):
    return client.post("/console/login/", {"username": username, "password": password})


def code_of(device: TOTPDevice, drift: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=drift):06d}"


def forgive(device: TOTPDevice) -> None:
    """Devices make the next try wait after a wrong code; these tests are not about that wait."""
    device.refresh_from_db()
    device.throttle_reset()


def test_repeated_failures_lock_the_login_even_for_the_right_password(client, staff_user, settings):
    settings.CONSOLE_LOGIN_FAILURE_LIMIT = 3
    staff_user(REVIEWER, username="ana")
    for _ in range(3):
        assert _log_in(client, "ana", "wrong-password").status_code == 200
    locked = _log_in(client, "ana")
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content
    assert client.get("/console/").status_code == 302  # not signed in
    assert AuditEvent.objects.filter(event_type="staff-login", outcome="4").count() == 3


def test_a_successful_login_clears_the_failures(client, staff_user, settings):
    settings.CONSOLE_LOGIN_FAILURE_LIMIT = 3
    staff_user(REVIEWER, username="ben")
    for _ in range(2):
        _log_in(client, "ben", "wrong-password")
    assert _log_in(client, "ben").status_code == 302
    client.logout()
    for _ in range(2):
        _log_in(client, "ben", "wrong-password")
    assert _log_in(client, "ben").status_code == 302


def test_required_second_factor_is_enrolled_then_asked_at_every_sign_in(client, staff_user, settings):
    settings.CONSOLE_REQUIRE_TOTP = True
    staff_user(REVIEWER, username="cai")
    _log_in(client, "cai")
    first = client.get("/console/review/")
    assert first.status_code == 302
    assert first["Location"].startswith("/console/second-factor/?next=/console/review/")
    setup = client.get(first["Location"], follow=True)
    assert b"Set up your authenticator" in setup.content
    device = TOTPDevice.objects.get(user__username="cai", confirmed=False)
    wrong = client.post("/console/second-factor/set-up/", {"token": "000000", "next": "/console/review/"})
    assert b"not right" in wrong.content
    forgive(device)
    confirmed = client.post("/console/second-factor/set-up/", {"token": code_of(device), "next": "/console/review/"})
    assert confirmed["Location"] == "/console/review/"
    assert client.get("/console/review/").status_code == 200

    client.logout()
    _log_in(client, "cai")
    assert client.get("/console/")["Location"].startswith("/console/second-factor/")
    wrong = client.post("/console/second-factor/", {"token": "123456", "next": "/console/"})
    assert b"not right" in wrong.content
    forgive(device)
    right = client.post("/console/second-factor/", {"token": code_of(device, drift=1), "next": "/console/"})
    assert right["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_administrator_requires_a_second_factor_of_one_person(client, staff_user):
    admin = staff_user(ADMINISTRATOR, username="admin")
    dora = staff_user(REVIEWER, username="dora")
    client.force_login(admin)
    client.post(f"/console/staff/{dora.pk}/second-factor/", {"action": "require"})
    assert b"required" in client.get("/console/staff/").content
    client.force_login(dora)
    assert client.get("/console/review/")["Location"].startswith("/console/second-factor/")
    client.force_login(admin)  # others are not affected
    assert client.get("/console/review/").status_code == 200
    assert AuditEvent.objects.filter(event_type="staff-totp-requirement").exists()


def test_only_administrators_manage_staff(client, staff_user):
    client.force_login(staff_user(REVIEWER, username="eve"))
    assert client.get("/console/staff/").status_code == 403
