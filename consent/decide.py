"""decide(): the one place the node decides whether a requester may see a person's data.

The algorithm and its cases are written down in docs/consent.md; tests/consent/test_decide.py
checks every case of that document.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from consent.access import permit_reaches
from consent.models import ImplicitPolicy
from consent.provisions import SENSITIVE, Request, verdict
from consent.selectors import (
    active_break_glass,
    consents_of_person,
    member_policy,
    persons_with_break_glass,
    persons_with_consents,
)
from hie.orgs.models import Organization
from matching.models import Person

PERMIT, DENY, PERMIT_WITH_FILTER, NO_CONSENT = "PERMIT", "DENY", "PERMIT_WITH_FILTER", "NO_CONSENT"
TREATMENT = {"TREAT", "ETREAT"}
BREAK_GLASS_PURPOSES = {"BTG", "ETREAT"}


@dataclass(frozen=True)
class Decision:
    outcome: str  # PERMIT, DENY, PERMIT_WITH_FILTER or NO_CONSENT (the implicit policy decided)
    permitted: bool  # may the requester see the person's data (what is not in `redact`)
    redact: frozenset[str] = frozenset()  # labels of the request that must be withheld
    consents: tuple[int, ...] = ()  # the consents whose provisions decided
    policy: str = ""  # the implicit policy, when it decided
    break_glass: int | None = None  # the break-the-glass grant that opened access
    reason: str = ""
    labels: frozenset[str] = field(default_factory=frozenset)


def implicit_policy(custodian: Organization | None) -> str:
    return (member_policy(custodian) if custodian is not None else None) or settings.CONSENT_IMPLICIT_POLICY


def _implicit_permits(policy: str, purpose: str) -> bool:
    if policy == ImplicitPolicy.ALL_NORMAL:
        return purpose in settings.CONSENT_IMPLICIT_PURPOSES
    if policy == ImplicitPolicy.BASIC_NORMAL:
        return purpose in TREATMENT
    return False  # break-glass-only and deny


def decide(
    person: Person,
    requester: Organization,
    purpose: str,
    labels: set[str] | frozenset[str] = frozenset(),
    *,
    custodian: Organization | None = None,
    at: datetime | None = None,
    consents: list | None = None,
    custodian_policy: str | None = None,
) -> Decision:
    """May `requester` see `person`'s data labelled `labels` (data in general when empty) for `purpose`?

    Consents combine with deny-overrides: one applicable deny outweighs any number of permits,
    so recording a deny or withdrawing a permit can only narrow access. Data in general that no
    consent speaks to follows the implicit policy (the custodian's, or the deployment's);
    sensitive labels are released only where a provision permits them by name. A consent a member
    recorded permits only for the data that member holds (`custodian`), never for another's.
    """
    at = at or timezone.now()
    labels = frozenset(labels)
    request = Request(requester_id=requester.pk, purpose=purpose, at=at)
    # A caller deciding many times for one person at one instant (per document) reads these once.
    consents = consents_of_person(person, at) if consents is None else consents

    custodian_id = custodian.pk if custodian is not None else None

    def says(consent: object, label: str | None) -> str | None:
        said = verdict(consent.provision, request, label)
        # A member's permit speaks only for the data that member holds (consent/access.py).
        return None if said == "permit" and not permit_reaches(consent, custodian_id) else said

    def combined(label: str | None) -> tuple[str | None, tuple[int, ...]]:
        said = [(says(c, label), c.pk) for c in consents]
        for kind in ("deny", "permit"):
            deciding = tuple(pk for v, pk in said if v == kind)
            if deciding:
                return kind, deciding
        return None, ()

    general, deciding = combined(None)
    policy = "" if general else (custodian_policy or implicit_policy(custodian))  # callers may resolve it in bulk
    allowed = general == "permit" if general else _implicit_permits(policy, purpose)
    per_label = {label: combined(label) for label in labels}
    released = {
        label
        for label, (said, _) in per_label.items()
        if said == "permit" or (said is None and label not in SENSITIVE and allowed)
    }

    grant = active_break_glass(person, requester, at) if purpose in BREAK_GLASS_PURPOSES else None
    if grant is not None:
        patient_denied = general == "deny"
        if not patient_denied or settings.BREAK_GLASS_OVERRIDES_DENY:
            allowed = True
            # Break-the-glass opens normal and restricted data; very restricted (V) data, and 42 CFR
            # Part 2 data unless the deployment says otherwise, still need a permit by name.
            still_closed = {"V"} | (set() if settings.BREAK_GLASS_OPENS_PART2 else {"42CFRPart2"})
            released |= {
                label
                for label, (said, _) in per_label.items()
                if said == "permit"
                or (label not in still_closed and (said != "deny" or settings.BREAK_GLASS_OVERRIDES_DENY))
            }
            return _decision(allowed, labels, released, deciding, policy, grant.pk, "break-the-glass access")

    if not allowed:
        return Decision(DENY if general else NO_CONSENT, False, labels, deciding, policy, None,
                        "denied by consent" if general else f"implicit policy {policy}", labels)  # fmt: skip
    reason = "permitted by consent" if general else f"implicit policy {policy}"
    decision = _decision(True, labels, released, deciding, policy, None, reason)
    if not general:
        return Decision(NO_CONSENT, True, decision.redact, (), policy, None, reason, labels)
    return decision


def _decision(allowed: bool, labels: frozenset, released: set, consents: tuple, policy: str,
              grant: int | None, reason: str) -> Decision:  # fmt: skip
    redact = labels - released
    outcome = PERMIT_WITH_FILTER if redact else PERMIT
    return Decision(outcome, allowed, frozenset(redact), consents, policy, grant, reason, labels)


def visible_persons(persons: list[Person], requester: Organization, purpose: str) -> dict[int, Decision]:
    """The decision for each person a search found, and so which the requester may see.

    Persons without consents or a break-the-glass grant share one decision, the implicit
    policy's, so a search pays for decide() only where a consent could change the answer.
    """
    at = timezone.now()
    ids = [p.pk for p in persons]
    individual = persons_with_consents(persons)
    if purpose in BREAK_GLASS_PURPOSES:
        individual |= persons_with_break_glass(ids, requester, at)
    decisions: dict[int, Decision] = {}
    shared: Decision | None = None
    for person in persons:
        if person.pk in individual:
            decisions[person.pk] = decide(person, requester, purpose, at=at)
        else:
            if shared is None:
                policy = implicit_policy(None)
                allowed = _implicit_permits(policy, purpose)
                shared = Decision(NO_CONSENT, allowed, frozenset(), (), policy, None, f"implicit policy {policy}")
            decisions[person.pk] = shared
    return decisions
