"""Operators store the node's credentials at a custodian with a command; the secret never goes on the command line."""

import pytest
from django.core.management import CommandError, call_command

from hie.locator.models import CustodianAccess
from tests.matching.factories import organization

pytestmark = pytest.mark.django_db


def test_custodian_access_is_stored_with_the_secret_from_the_environment(monkeypatch):
    lab = organization("Metro Lab")
    with pytest.raises(CommandError, match="CUSTODIAN_CLIENT_SECRET"):
        call_command("set_custodian_access", "Metro Lab", "--token-url", "https://lab.example/token",
                     "--client-id", "hie")  # fmt: skip
    monkeypatch.setenv("CUSTODIAN_CLIENT_SECRET", "s3cret-from-env")
    call_command("set_custodian_access", "Metro Lab", "--endpoint", "https://lab.example/r4", "--token-url",
                 "https://lab.example/token", "--client-id", "hie")  # fmt: skip
    access = CustodianAccess.objects.get(organization=lab)
    assert (access.client_id, access.client_secret) == ("hie", "s3cret-from-env")
    lab.refresh_from_db()
    assert lab.fhir_endpoint == "https://lab.example/r4"
