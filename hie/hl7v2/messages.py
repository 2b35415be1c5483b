"""Reading HL7 v2 ADT messages into the index's terms, and writing original-mode ACKs.

Transport and parsing are python-hl7's; this module knows which fields mean what (PID, MRG),
which of them must be there, and how an error is reported (ERR segment, HL7 table 0357).
"""

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime

import hl7

from hie.orgs.models import Organization
from matching.services import Demographics

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2")
REGISTERING_EVENTS = {"A01", "A04", "A05", "A08", "A28", "A31"}
MERGE_EVENTS = {"A40"}
ADMISSION_EVENTS = {"A01", "A04"}  # admit, register an outpatient: members are told of these elsewhere
UNLINK_EVENTS = {"A37"}
SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "unknown", "U": "unknown"}
_SEGMENT_ENDS = re.compile(r"\r\n|\n|\r")


class MessageProblem(Exception):
    """Why a message is refused: the ACK code, the HL7 error code (table 0357) and where."""

    def __init__(self, ack_code: str, error_code: str, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.ack_code, self.error_code, self.reason, self.location = ack_code, error_code, reason, location


@dataclass(frozen=True)
class Header:
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str  # "ADT^A01"
    event: str  # "A01"
    control_id: str
    processing_id: str
    version: str


def decode(raw: bytes) -> str:
    """Text of a message with segments ended by CR whatever the sender used (UTF-8, else Latin-1)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _SEGMENT_ENDS.sub("\r", text.strip("\r\n\x00 ")) + "\r"


def parse(text: str, only: dict[str, int] | None = None) -> hl7.Message:
    """The parsed message; with `only` ({segment: last field}), MSH and just those fields of those segments."""
    if not text.startswith("MSH"):
        raise MessageProblem("AR", "100", "the message does not start with an MSH segment", "MSH")
    if only:
        separator = text[3:4]
        kept = [text[: text.index("\r")]]
        for segment in text.split("\r")[1:]:
            last = only.get(segment[:3])
            if last is not None:
                kept.append(separator.join(segment.split(separator)[: last + 1]))
        text = "\r".join(kept) + "\r"
    try:
        return hl7.parse(text)
    except Exception:  # python-hl7 raises several kinds on malformed input
        raise MessageProblem("AR", "102", "the message cannot be parsed as HL7 v2", "MSH") from None


@functools.lru_cache(maxsize=1024)
def _accessor(path: str) -> hl7.Accessor:
    return hl7.Accessor.parse_key(path)


def value(message: hl7.Message, path: str) -> str:
    """The (unescaped) value at an accessor path such as PID.F3.R1.C1, or empty."""
    try:
        found = message.extract_field(*_accessor(path))
    except (IndexError, KeyError, ValueError, TypeError):
        return ""
    return str(found or "").strip()


def repetitions(message: hl7.Message, segment: str, field: int) -> int:
    count = 0
    while count < 50:
        try:
            message[f"{segment}.F{field}.R{count + 1}"]
        except (IndexError, KeyError, ValueError, TypeError):
            break
        count += 1
    return count


def header(message: hl7.Message) -> Header:
    version = value(message, "MSH.F12.R1.C1") or value(message, "MSH.F12")
    return Header(
        sending_application=value(message, "MSH.F3.R1.C1"),
        sending_facility=value(message, "MSH.F4.R1.C1"),
        receiving_application=value(message, "MSH.F5.R1.C1"),
        receiving_facility=value(message, "MSH.F6.R1.C1"),
        message_type=f"{value(message, 'MSH.F9.R1.C1')}^{value(message, 'MSH.F9.R1.C2')}",
        event=value(message, "MSH.F9.R1.C2"),
        control_id=value(message, "MSH.F10"),
        processing_id=value(message, "MSH.F11.R1.C1"),
        version=version,
    )


def check_header(head: Header) -> None:
    if not head.control_id:
        raise MessageProblem("AR", "101", "MSH-10 (message control id) is missing", "MSH^1^10")
    if head.version not in SUPPORTED_VERSIONS:
        raise MessageProblem("AR", "203", "MSH-12: versions 2.3 to 2.8 are supported", "MSH^1^12")
    if not head.message_type.startswith("ADT^") or not head.event:
        raise MessageProblem("AR", "200", "MSH-9: only ADT messages are accepted", "MSH^1^9")


def _hl7_date(text: str, location: str) -> date | None:
    if not text:
        return None
    digits = text[:8]
    try:
        if len(digits) != 8 or not (digits.isascii() and digits.isdecimal()):
            raise ValueError
        born = datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        raise MessageProblem("AE", "102", "the date is not a valid YYYYMMDD date", location) from None
    if born > date.today():
        raise MessageProblem("AE", "102", "the date is in the future", location)
    return born


def _system_of(organization: Organization, authority: str, universal_id: str, universal_type: str) -> str | None:
    """The identifier system a CX assigning authority names, among the member's own."""
    systems = organization.identifier_system_uris
    candidates = []
    if universal_id:
        candidates.append(f"urn:oid:{universal_id}" if universal_type.upper() == "ISO" else universal_id)
    candidates.append(authority)
    for candidate in candidates:
        if candidate in systems:
            return candidate
    # The member's own namespace (its facility code) or none, at a member with one identifier
    # system, is that system; another namespace is someone else's identifier.
    if len(systems) == 1 and not universal_id and authority in ("", organization.hl7_facility):
        return systems[0]
    return None


def identifiers(
    message: hl7.Message, segment: str, field: int, organization: Organization
) -> tuple[list[tuple[str, str]], str]:
    """The member's own identifiers in a CX list (PID-3, MRG-1) as (system, value), and an SSN if one is there."""
    own, ssn = [], ""
    for r in range(1, repetitions(message, segment, field) + 1):
        base = f"{segment}.F{field}.R{r}"
        number = value(message, f"{base}.C1")
        kind = value(message, f"{base}.C5")
        if not number:
            continue
        if kind == "SS":
            ssn = number
            continue
        authority = value(message, f"{base}.C4.S1") or value(message, f"{base}.C4")
        system = _system_of(organization, authority, value(message, f"{base}.C4.S2"), value(message, f"{base}.C4.S3"))
        if system is not None:
            own.append((system, number))
    return own, ssn


def _names(message: hl7.Message) -> tuple[dict, list[str]]:
    """The legal (or first) name of PID-5, and maiden or other previous family names."""
    names = []
    for r in range(1, repetitions(message, "PID", 5) + 1):
        base = f"PID.F5.R{r}"
        names.append({
            "family": value(message, f"{base}.C1.S1") or value(message, f"{base}.C1"),
            "given": value(message, f"{base}.C2"), "middle": value(message, f"{base}.C3"),
            "suffix": value(message, f"{base}.C4"), "type": value(message, f"{base}.C7"),
        })  # fmt: skip
    current = next((n for n in names if n["type"] in ("L", "")), names[0] if names else None)
    previous = [n["family"] for n in names if n["type"] in ("M", "B") and n["family"]]
    return current or {"family": "", "given": "", "middle": "", "suffix": ""}, previous


def _phones(message: hl7.Message) -> list[str]:
    phones = []
    for field in (13, 14):
        for r in range(1, repetitions(message, "PID", field) + 1):
            base = f"PID.F{field}.R{r}"
            if value(message, f"{base}.C3") in ("Internet", "X.400"):
                continue
            parts = value(message, f"{base}.C6") + value(message, f"{base}.C7")
            number = value(message, f"{base}.C12") or parts or value(message, f"{base}.C1")
            if number:
                phones.append(number)
    return phones


def _email(message: hl7.Message) -> str:
    for field in (13, 14):
        for r in range(1, repetitions(message, "PID", field) + 1):
            address = value(message, f"PID.F{field}.R{r}.C4")
            if "@" in address:
                return address
    return ""


def _address(message: hl7.Message) -> dict:
    count = repetitions(message, "PID", 11)
    chosen = next((r for r in range(1, count + 1) if value(message, f"PID.F11.R{r}.C7") in ("H", "")), 1)
    base = f"PID.F11.R{chosen}"
    street = " ".join(v for v in (value(message, f"{base}.C1.S1") or value(message, f"{base}.C1"),
                                  value(message, f"{base}.C2")) if v)  # fmt: skip
    return {"address_line": street, "city": value(message, f"{base}.C3"), "state": value(message, f"{base}.C4"),
            "postal_code": value(message, f"{base}.C5")}  # fmt: skip


@dataclass(frozen=True)
class PatientFromPid:
    identifier_system: str
    local_id: str
    demographics: Demographics


@dataclass(frozen=True)
class CheckedPid:
    """What a PID must carry for the index to take it; read before a message is acknowledged."""

    identifier_system: str
    local_id: str
    ssn_in_identifiers: str
    sex: str
    birth_date: date | None


def check_pid(message: hl7.Message, organization: Organization) -> CheckedPid:
    """The PID's identifier, sex and birth date, or the problem that refuses it (AE, with the field)."""
    own, ssn_from_list = identifiers(message, "PID", 3, organization)
    if not own:
        raise MessageProblem(
            "AE", "101", "PID-3 has no patient identifier under the sender's identifier systems", "PID^1^3"
        )
    sex = value(message, "PID.F8")
    if sex and sex.upper() not in SEX:
        raise MessageProblem("AE", "103", "PID-8: administrative sex is not in table 0001", "PID^1^8")
    born = _hl7_date(value(message, "PID.F7.R1.C1") or value(message, "PID.F7"), "PID^1^7")
    system, local_id = own[0]
    return CheckedPid(system, local_id, ssn_from_list, SEX.get(sex.upper(), "unknown") if sex else "unknown", born)


def patient_from_pid(message: hl7.Message, organization: Organization) -> PatientFromPid:
    """The registration a PID segment carries, or the problem that refuses it (AE, with the field)."""
    checked = check_pid(message, organization)
    name, previous = _names(message)
    return PatientFromPid(
        identifier_system=checked.identifier_system,
        local_id=checked.local_id,
        demographics=Demographics(
            given_name=name["given"],
            middle_name=name["middle"],
            family_name=name["family"],
            suffix=name["suffix"],
            previous_family_names=tuple(previous),
            sex=checked.sex,
            birth_date=checked.birth_date,
            ssn=value(message, "PID.F19") or checked.ssn_in_identifiers,
            phones=tuple(_phones(message)),
            email=_email(message),
            **_address(message),
        ),
    )


def merged_identifier(message: hl7.Message, organization: Organization) -> tuple[str, str]:
    """A40: the prior identifier (MRG-1) that the PID's patient replaces."""
    try:
        message.segment("MRG")
    except KeyError:
        raise MessageProblem("AE", "100", "an A40 needs an MRG segment", "MRG") from None
    own, _ = identifiers(message, "MRG", 1, organization)
    if not own:
        raise MessageProblem("AE", "101", "MRG-1 has no identifier under the sender's identifier systems", "MRG^1^1")
    return own[0]


def second_patient(message: hl7.Message, organization: Organization) -> tuple[str, str]:
    """A37: the identifier in the second PID segment, the record to unlink from the first."""
    segments = message.segments("PID")
    if len(segments) < 2:
        raise MessageProblem("AE", "100", "an A37 needs two PID segments", "PID")
    second = hl7.parse(str(message.segment("MSH")) + "\r" + str(segments[1]) + "\r")
    own, _ = identifiers(second, "PID", 3, organization)
    if not own:
        raise MessageProblem("AE", "101", "PID-3 of the second patient has no identifier of the sender's", "PID^2^3")
    return own[0]


# --- acknowledgements -----------------------------------------------------------------------


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\"))  # fmt: skip


def ack(head: Header | None, code: str, *, ack_id: str, problem: MessageProblem | None = None) -> bytes:
    """An original-mode ACK (MSH, MSA, and ERR when refused). Works from what the MSH told, if anything."""
    version = head.version if head and head.version in SUPPORTED_VERSIONS else "2.5"
    event = head.event if head else ""
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                "HIE",
                "HIE",
                _escape(head.sending_application if head else ""),
                _escape(head.sending_facility if head else ""),
                now,
                "",
                f"ACK^{event}^ACK",
                ack_id,
                head.processing_id if head and head.processing_id else "P",
                version,
            ]
        ),
        "|".join(["MSA", code, _escape(head.control_id if head else ""), _escape(problem.reason if problem else "")]),
    ]
    if problem is not None:
        location = problem.location.split("^")
        segment_id = location[0]
        sequence = location[1] if len(location) > 1 else ""
        field = location[2] if len(location) > 2 else ""
        if version.startswith(("2.3", "2.4")):
            segments.append(
                f"ERR|{segment_id}^{sequence}^{field}^{problem.error_code}&{_escape(problem.reason)}&HL70357"
            )
        else:
            segments.append(
                f"ERR||{segment_id}^{sequence}^{field}|{problem.error_code}^{_escape(problem.reason)}^HL70357|E"
                f"||||{_escape(problem.reason)}"
            )
    return ("\r".join(segments) + "\r").encode()
