"""Production settings refuse unsafe values and pass Django's deployment checks."""

import os
import subprocess
import sys

from django.conf import settings

GOOD_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz!@#$"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, "HIE_DATA_DIR": env.pop("HIE_DATA_DIR"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_the_development_secret_key(tmp_path):
    result = run_manage("check", HIE_DATA_DIR=str(tmp_path), HIE_PRODUCTION="true", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be a random value" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = run_manage("check", HIE_DATA_DIR=str(tmp_path), HIE_PRODUCTION="true", SECRET_KEY=GOOD_KEY, DEBUG="true")
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


def test_production_settings_pass_the_deployment_checks(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HIE_DATA_DIR=str(tmp_path),
        HIE_PRODUCTION="true",
        SECRET_KEY=GOOD_KEY,
        DEBUG="false",
    )
    assert result.returncode == 0, result.stderr
