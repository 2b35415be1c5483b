"""Console fixtures: staff in each role, and a possible match waiting for review."""

import os
from datetime import date
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import sync_playwright

from hie.console.roles import ADMINISTRATOR, CONSENT_CLERK, REVIEWER
from matching.models import ReviewStatus, ReviewTask
from tests.conftest import need_service
from tests.matching.factories import organization, register

PASSWORD = "a-long-staff-password-1"


@pytest.fixture
def staff_user(db):
    def make(*roles: str, username: str | None = None):
        user = get_user_model().objects.create_user(username or "-".join(roles) or "norole", password=PASSWORD)
        # get_or_create: a transactional test's flush empties the groups the migration made
        user.groups.set([Group.objects.get_or_create(name=role)[0] for role in roles])
        return user

    return make


@pytest.fixture
def as_role(client, staff_user):
    """A test client logged in as staff holding `role`."""

    def login(role: str):
        client.force_login(staff_user(role))
        return client

    return login


@pytest.fixture
def reviewer(as_role):
    return as_role(REVIEWER)


@pytest.fixture
def clerk(as_role):
    return as_role(CONSENT_CLERK)


@pytest.fixture
def admin(as_role):
    return as_role(ADMINISTRATOR)


@pytest.fixture
def possible_match(db, django_capture_on_commit_callbacks):
    """Two registrations of (probably) one patient at two members, scored in the review band."""

    def make(**who):
        """`who` (names, sex...) applies to both records; the second's birth date differs by one digit."""
        fields = {"address_line": "", "postal_code": "", **who}
        with django_capture_on_commit_callbacks(execute=True):
            first = register(organization(), **fields).record
            second = register(organization(), **{**fields, "birth_date": date(1984, 7, 29)}).record
        return first, second, ReviewTask.objects.get(record=second, status=ReviewStatus.OPEN)

    return make


# --- the browser ---------------------------------------------------------------------------
# Playwright drives Debian's Chromium (the Makefile installs it); it never downloads a browser.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a module's tests. The driver's event loop lives only as long as the
    module, so tests elsewhere that run their own asyncio loop are not disturbed."""
    if not Path(CHROMIUM).exists():
        need_service(f"Chromium at {CHROMIUM} (make test installs it)")
    # Playwright's sync API keeps an event loop running in the test's thread; the tests' own ORM
    # calls (building data, checking outcomes) are synchronous and safe there. Only for this module:
    # child processes of other tests must not inherit the switch.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshot():
    """Save a full-page screenshot under test-artifacts/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def console(live_server, audit_rows_flushable, page, staff_user):
    """A browser page logged in to the running console through its login form, as an administrator."""

    def login(*roles: str, username: str = "staff"):
        staff_user(*(roles or (ADMINISTRATOR,)), username=username)
        page.goto(f"{live_server.url}/console/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/console/")
        return page

    return login
