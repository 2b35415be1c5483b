"""SMART backend-services scopes: what a client may ask for, and what a token's scopes permit.

A client is granted scopes in SMART v1 form (`system/Patient.read`) or v2 form
(`system/Patient.rs`), and purposes of use. It may ask the token endpoint for any of its grant,
in either form, and for `purpose_of_use=<system>|<code>` scopes of purposes it was granted (the
form the Swiss EPR profile of IHE IUA uses): the token then records which purposes it carries.
SMART App Launch 2.0 §Scopes: v1 `read` is v2 `rs`, v1 `write` is v2 `cud`.
"""

import re
from itertools import combinations

from django.conf import settings
from oauth2_provider.scopes import SettingsScopes

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSE_SCOPE_PREFIX = f"purpose_of_use={PURPOSE_SYSTEM}|"
V2_LETTERS = "cruds"  # SMART v2 permissions, in the only order the spec allows
V1_AS_V2 = {"read": "rs", "write": "cud"}
_SCOPE = re.compile(r"^system/(?P<resource>[A-Za-z]+)\.(?P<permissions>read|write|[cruds]+)$")


def purpose_scope(code: str) -> str:
    return f"{PURPOSE_SCOPE_PREFIX}{code}"


def purposes_in(scopes: frozenset[str] | set[str] | list[str]) -> set[str]:
    """The purposes of use a token's scopes carry."""
    return {s.removeprefix(PURPOSE_SCOPE_PREFIX) for s in scopes if s.startswith(PURPOSE_SCOPE_PREFIX)}


def letters_of(scope: str) -> tuple[str, str] | None:
    """(resource, v2 permission letters) of a system scope in either form; None if it is not one.

    v2 letters must be in the order c, r, u, d, s, each at most once (`system/Patient.rs`, not `.sr`).
    """
    found = _SCOPE.match(scope)
    if found is None:
        return None
    permissions = found["permissions"]
    letters = V1_AS_V2.get(permissions, permissions)
    if permissions not in V1_AS_V2 and letters != "".join(c for c in V2_LETTERS if c in letters):
        return None
    return found["resource"], letters


def known_resources() -> set[str]:
    """Resources the node has scopes for (those of settings.FHIR_SCOPES)."""
    return {parsed[0] for parsed in map(letters_of, settings.FHIR_SCOPES) if parsed}


def is_valid_scope(scope: str) -> bool:
    """A scope a client may be granted: a v1 scope the node knows, or a v2 scope of one of its resources."""
    if scope in settings.FHIR_SCOPES:
        return True
    parsed = letters_of(scope)
    return parsed is not None and parsed[0] in known_resources()


def requestable(granted: list[str]) -> list[str]:
    """Every scope a client with these granted scopes may put in a token request: each grant in
    v1 and v2 form and every narrower v2 scope (`system/Patient.read` allows `.rs`, `.r`, `.s`)."""
    letters: dict[str, set[str]] = {}
    for scope in granted:
        parsed = letters_of(scope)
        if parsed:
            letters.setdefault(parsed[0], set()).update(parsed[1])
    available = set(granted)
    for resource, allowed in letters.items():
        ordered = [c for c in V2_LETTERS if c in allowed]
        for n in range(1, len(ordered) + 1):
            available.update(f"system/{resource}.{''.join(c)}" for c in combinations(ordered, n))
        available.update(f"system/{resource}.{v1}" for v1, v2 in V1_AS_V2.items() if set(v2) <= allowed)
    return sorted(available)


def permits(scopes: frozenset[str], needed: str, interaction: str) -> bool:
    """Whether a token's scopes allow a request that needs the v1 scope `needed`
    (`system/Patient.read`) for an interaction given as v2 letters (`r` read, `s` search,
    `c` create, `u` update, `d` delete): the v1 scope itself, or v2 scopes of the resource
    whose letters together cover the interaction."""
    if needed in scopes:
        return True
    wanted = letters_of(needed)
    if wanted is None:
        return False
    held = set()
    for scope in scopes:
        parsed = letters_of(scope)
        if parsed and parsed[0] == wanted[0]:
            held.update(parsed[1])
    return bool(interaction) and set(interaction) <= held and set(interaction) <= set(wanted[1])


def supported_scopes() -> list[str]:
    """The scopes the node offers, for `/.well-known/smart-configuration`."""
    v2 = [
        f"system/{resource}.{letters}" for resource in sorted(known_resources()) for letters in ("rs", "cud", "cruds")
    ]
    purposes = [purpose_scope(code) for code in sorted(settings.FHIR_PURPOSES_OF_USE)]
    return sorted(settings.FHIR_SCOPES) + v2 + purposes


class ApiClientScopes(SettingsScopes):
    """The scopes a client may ask for are the ones granted to it, not every scope the node knows."""

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        if application is None:
            return []
        return requestable(application.scope_list) + [purpose_scope(p) for p in application.purpose_list]

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        # A token request without a scope parameter gets every scope the client was granted; naming
        # no purpose, the token carries every purpose granted to the client.
        return [] if application is None else application.scope_list
