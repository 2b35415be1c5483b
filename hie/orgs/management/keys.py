"""Command-line options that register a client's public keys (SMART private_key_jwt)."""

import json
from pathlib import Path

from django.core.management.base import CommandError, CommandParser


def add_key_arguments(parser: CommandParser) -> None:
    parser.add_argument("--jwks", default="", help="file holding the client's public JWK Set (JSON)")
    parser.add_argument("--jwks-uri", default="", help="https URL of the client's public JWK Set")


def read_jwks(path: str) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read a JWK Set from {path}: {exc}") from exc
