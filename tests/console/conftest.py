"""Console fixtures: staff in each role, and a possible match waiting for review."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from hie.console.roles import ADMINISTRATOR, CONSENT_CLERK, REVIEWER
from matching.models import ReviewStatus, ReviewTask
from tests.matching.factories import organization, register

PASSWORD = "a-long-staff-password-1"


@pytest.fixture
def staff_user(db):
    def make(*roles: str, username: str | None = None):
        user = get_user_model().objects.create_user(username or "-".join(roles) or "norole", password=PASSWORD)
        user.groups.set(Group.objects.filter(name__in=roles))
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
