"""The provisions of a consent: their shape, their validation, and whether one speaks to a request.

A provision is a dict in the shape of FHIR Consent.provision, reduced to what decisions use:

    {"type": "permit" | "deny",
     "period": {"start": ISO datetime or null, "end": ISO datetime or null},   optional
     "actors": [organization ids],       empty: any requester
     "purposes": [PurposeOfUse codes],   empty: any purpose
     "labels": [security label codes],   empty: the provision is about data in general
     "data_period": {"start": ..., "end": ...},                                  optional, kept for documents
     "provisions": [nested provisions of the same shape, without further nesting]}   root only
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils.dateparse import parse_datetime

from hie.exceptions import ValidationFailed

CONFIDENTIALITY = {"U", "L", "M", "N", "R", "V"}  # v3 Confidentiality
SENSITIVITY = {"ETH", "ETHUD", "OPIOIDUD", "PSY", "SDV", "HIV", "STD", "SEX"}  # v3 ActCode sensitivity
POLICY_LABELS = {"42CFRPart2"}
# Never released unless a provision permits the label by name, whatever the implicit policy.
SENSITIVE = {"R", "V"} | SENSITIVITY | POLICY_LABELS
KNOWN_LABELS = CONFIDENTIALITY | SENSITIVITY | POLICY_LABELS
CONSENT_PURPOSES = {"TREAT", "ETREAT", "BTG", "HPAYMT", "HOPERAT", "PUBHLTH", "HRESCH", "PATRQT"}
TYPES = {"permit", "deny"}


def _instant(value: object, where: str) -> str | None:
    if value in (None, ""):
        return None
    parsed = parse_datetime(str(value)) if isinstance(value, str) else None
    if parsed is None:
        raise ValidationFailed(f"{where} must be an ISO 8601 date-time")
    return str(value)


def _period(raw: object, where: str) -> dict | None:
    if raw in (None, {}):
        return None
    if not isinstance(raw, dict) or set(raw) - {"start", "end"}:
        raise ValidationFailed(f"{where} must have only start and end")
    period = {"start": _instant(raw.get("start"), f"{where}.start"), "end": _instant(raw.get("end"), f"{where}.end")}
    if period["start"] and period["end"] and parse_datetime(period["start"]) > parse_datetime(period["end"]):
        raise ValidationFailed(f"{where} ends before it starts")
    return period


def clean(raw: object, *, nested: bool = False, where: str = "provision") -> dict:
    """A provision checked and put in its canonical form (raises ValidationFailed naming the part)."""
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{where} must be an object")
    allowed = {"type", "period", "actors", "purposes", "labels", "data_period"} | (set() if nested else {"provisions"})
    unknown = set(raw) - allowed
    if unknown:
        raise ValidationFailed(f"{where} has unknown part(s): {', '.join(sorted(unknown))}")
    if raw.get("type") not in TYPES:
        raise ValidationFailed(f"{where}.type must be permit or deny")
    actors = raw.get("actors") or []
    if not isinstance(actors, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in actors):
        raise ValidationFailed(f"{where}.actors must be a list of organization ids")
    purposes = raw.get("purposes") or []
    if not isinstance(purposes, list) or not set(purposes) <= set(settings.FHIR_PURPOSES_OF_USE) | CONSENT_PURPOSES:
        raise ValidationFailed(f"{where}.purposes must be HL7 PurposeOfUse codes")
    labels = raw.get("labels") or []
    if not isinstance(labels, list) or not set(labels) <= KNOWN_LABELS:
        raise ValidationFailed(f"{where}.labels must be confidentiality, sensitivity or policy codes")
    provision = {
        "type": raw["type"],
        "period": _period(raw.get("period"), f"{where}.period"),
        "actors": sorted(set(actors)),
        "purposes": sorted(set(purposes)),
        "labels": sorted(set(labels)),
        "data_period": _period(raw.get("data_period"), f"{where}.data_period"),
    }
    if not nested:
        children = raw.get("provisions") or []
        if not isinstance(children, list):
            raise ValidationFailed(f"{where}.provisions must be a list")
        provision["provisions"] = [
            clean(child, nested=True, where=f"{where}.provisions[{n}]") for n, child in enumerate(children)
        ]
    return provision


@dataclass(frozen=True)
class Request:
    requester_id: int
    purpose: str
    at: datetime


def covers(period: dict | None, at: datetime) -> bool:
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    return (not start or parse_datetime(start) <= at) and (not end or at <= parse_datetime(end))


def speaks_to(provision: dict, request: Request) -> bool:
    """The provision's period, actors and purposes include this request."""
    return (
        covers(provision.get("period"), request.at)
        and (not provision["actors"] or request.requester_id in provision["actors"])
        and (not provision["purposes"] or request.purpose in provision["purposes"])
    )


def verdict(root: dict, request: Request, label: str | None) -> str | None:
    """What one consent says about one kind of data (`label` None: data in general).

    Nested provisions are exceptions to the root and, where they speak, decide; among nested
    provisions that speak, deny wins. A provision about data in general that denies also denies
    labelled data; permitting a label needs a provision that names it.
    """
    if not speaks_to(root, request):
        return None
    for level in ([p for p in root["provisions"] if speaks_to(p, request)], [root]):
        said = {p["type"] for p in level if _about(p, label)}
        if said:
            return "deny" if "deny" in said else "permit"
    return None


def _about(provision: dict, label: str | None) -> bool:
    if label is None:
        return not provision["labels"]
    return label in provision["labels"] or (not provision["labels"] and provision["type"] == "deny")
