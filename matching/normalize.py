"""Normalisation of demographics into the forms that blocking and comparison use.

Everything a registrar would call "the same value written differently" becomes equal here:
case, accents, punctuation, name suffixes, nicknames, SSN and phone formatting, US street
address abbreviations (USPS Publication 28, through scourgify).
"""

import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from functools import lru_cache

import jellyfish
import phonenumbers
from nicknames import NickNamer
from scourgify import normalize_address_record
from scourgify.exceptions import AddressNormalizationError

SUFFIXES = {
    "JR": "JR", "JNR": "JR", "JUNIOR": "JR",
    "SR": "SR", "SNR": "SR", "SENIOR": "SR",
    "II": "II", "2ND": "II", "III": "III", "3RD": "III", "IV": "IV", "4TH": "IV", "V": "V", "5TH": "V",
}  # fmt: skip
# Titles and degrees carry no identity.
NOISE_TOKENS = {"MR", "MRS", "MS", "MISS", "DR", "PROF", "REV", "MD", "PHD", "DDS", "RN", "ESQ"}
PLACEHOLDER_SSNS = {"123456789", "987654321", "078051120", "219099999", "111111111", "999999999"}
_NON_NAME = re.compile(r"[^A-Z' -]")
_SPACES = re.compile(r"\s+")

_nicknamer = NickNamer()


@lru_cache(maxsize=100_000)
def fold(text: str | None) -> str:
    """Upper case without accents, punctuation other than hyphen and apostrophe, or doubled spaces."""
    if not text:
        return ""
    if text.isascii():  # nothing to decompose (most names and places)
        stripped = text.upper()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        stripped = stripped.upper().replace("ß", "SS").replace("Æ", "AE").replace("Ø", "O").replace("Ł", "L")
    return _SPACES.sub(" ", _NON_NAME.sub(" ", stripped.replace(".", " "))).strip()


def name_tokens(text: str | None) -> tuple[list[str], str]:
    """Tokens of a name with titles removed and a generational suffix split out."""
    tokens = [t.replace("'", "") for t in fold(text).replace("-", " ").split()]
    suffix = ""
    kept = []
    for token in tokens:
        if not token or token in NOISE_TOKENS:
            continue
        if token in SUFFIXES and kept:  # a lone "V" or "II" as the whole name stays a name
            suffix = SUFFIXES[token]
            continue
        kept.append(token)
    return kept, suffix


def normalise_suffix(text: str | None) -> str:
    token = fold(text).replace(" ", "")
    return SUFFIXES.get(token, token)


@lru_cache(maxsize=50_000)
def nickname_group(given: str) -> tuple[str, ...]:
    """The name and the names the `nicknames` dataset relates it to directly (both directions).

    Two given names agree as nicknames when one is in the other's group. Groups are not
    intersected: that would chain William to Robert through Bill.
    """
    if not given:
        return ()
    lowered = given.lower()
    group = {lowered} | _nicknamer.canonicals_of(lowered) | _nicknamer.nicknames_of(lowered)
    return tuple(sorted(group))


@lru_cache(maxsize=100_000)
def phonetic(token: str) -> str:
    return jellyfish.soundex(token) if token else ""


def normalise_ssn(text: str | None) -> tuple[str, str]:
    """(the nine digits, the last four). Invalid and placeholder numbers are treated as missing.

    A value with only four digits (a record that keeps just the last four) gives only those.
    """
    digits = re.sub(r"\D", "", text or "")
    if len(digits) == 4 and digits != "0000":
        return "", digits
    if len(digits) != 9:
        # A national identifier of another country's length is compared as it is.
        if 6 <= len(digits) <= 12 and len(set(digits)) > 1:
            return digits, digits[-4:]
        return "", ""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if (
        area in {"000", "666"}
        or area.startswith("9")
        or group == "00"
        or serial == "0000"
        or digits in PLACEHOLDER_SSNS
        or len(set(digits)) == 1
    ):
        return "", ""
    return digits, serial


@lru_cache(maxsize=100_000)
def normalise_phone(text: str, region: str = "US") -> str:
    """E.164, or empty for a number that cannot be a real one."""
    if not text or not text.strip():
        return ""
    digits = re.sub(r"\D", "", text)
    if region == "US" and len(digits) == 10 and digits[0] in "23456789" and "+" not in text and "x" not in text.lower():
        return "+1" + digits  # a plain NANP number: what phonenumbers would answer, without parsing
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(text: str | None) -> str:
    value = (text or "").strip().lower()
    return value if "@" in value and "." in value.rsplit("@", 1)[-1] else ""


def normalise_postal(text: str | None) -> str:
    digits = re.sub(r"\D", "", text or "")
    return digits[:5] if len(digits) >= 5 else fold(text).replace(" ", "")


_NON_ADDRESS = re.compile(r"[^A-Z0-9 ]")


# A number standing as a word of its own (between spaces or at an end of the line), and any digit.
_WHOLE_NUMBER = re.compile(r"(?<!\S)[0-9]+(?!\S)")
_ANY_DIGIT = re.compile(r"\d")
_NON_ZERO_DIGIT = re.compile(r"[1-9]")


def normalise_street(line: str) -> str:
    """The street line in USPS Publication 28 form; a line the parser cannot read is folded as it is.

    Lines that differ only in the non-zero digits of their numbers (house and apartment) are
    parsed alike: usaddress describes a number to its model by its length and trailing zeros,
    never by its digits, and scourgify copies the numbers it is given. So such a line is
    standardised as its "shape", each number's non-zero digits written as one digit of its own
    (1 for the first number, 2 for the second: "418 Alder Creek Rd Apt 27" as "111 Alder Creek
    Rd Apt 22"), once for every home on the street, and each number put back where its shape
    came out. Where the standard form holds digits other than those shapes (a numbered street
    given an ordinal, a number read as part of a word), the line is standardised as it is.
    """
    shaped = _shaped(line)
    if shaped:
        shapes, numbers, shaped_line = shaped
        words = _street(shaped_line).split(" ")
        if sorted(word for word in words if _ANY_DIGIT.search(word)) == sorted(shapes):
            # Two numbers share a shape only if neither has a non-zero digit: they are the same.
            number_of = dict(zip(shapes, numbers, strict=True))
            return " ".join(number_of.get(word, word) for word in words)
    return _street(line)


def _shaped(line: str) -> tuple[list[str], list[str], str] | None:
    """(the shapes, the numbers, the line with the shapes for the numbers) of a line whose digits
    all stand in numbers of their own (at most nine of them)."""
    numbers = _WHOLE_NUMBER.findall(line) if line else ()
    if not numbers or len(numbers) > 9 or _ANY_DIGIT.search(_WHOLE_NUMBER.sub("", line)):
        return None
    shapes = [_NON_ZERO_DIGIT.sub(str(n), number) for n, number in enumerate(numbers, start=1)]
    found = iter(shapes)
    return shapes, numbers, _WHOLE_NUMBER.sub(lambda _: next(found), line)


# Standard forms worked out ahead of a bulk load, for the processes that normalise it (see
# prepared_streets).
_prepared_streets: dict[str, str] = {}


def _street(line: str) -> str:
    standard = _prepared_streets.get(line)
    return _standard_street(line) if standard is None else standard


def streets_to_parse(lines: Iterable[str]) -> list[str]:
    """The distinct lines normalise_street gives the parser first for these street lines (the
    shapes of numbered lines, other lines as they are)."""
    wanted = set()
    for line in lines:
        shaped = _shaped(line)
        wanted.add(shaped[2] if shaped else line)
    wanted.discard("")
    return sorted(wanted)


def standardise_streets(lines: list[str]) -> dict[str, str]:
    """Each line's standard form, as normalise_street's parser gives it."""
    return {line: _standard_street(line) for line in lines}


@contextmanager
def prepared_streets(standard: dict[str, str]) -> Iterator[None]:
    """A block in which normalise_street takes these standard forms as known: processes forked
    in it inherit them, so a street that several of them meet is parsed once, not once by each."""
    _prepared_streets.update(standard)
    try:
        yield
    finally:
        _prepared_streets.clear()


@lru_cache(maxsize=200_000)
def _standard_street(line: str) -> str:
    """scourgify's standard form of a street line (only the street line is kept, so the parser is
    given a fixed city, state and ZIP); folded as it is where it cannot be read."""
    if not line or not line.strip():
        return ""
    try:
        standard = normalize_address_record(
            {"address_line_1": line, "city": "ANYTOWN", "state": "NY", "postal_code": "00000"}
        )
        parts = [standard.get("address_line_1") or "", standard.get("address_line_2") or ""]
        return _SPACES.sub(" ", " ".join(parts)).strip()
    except (AddressNormalizationError, ValueError, TypeError, KeyError, IndexError):
        decomposed = unicodedata.normalize("NFKD", line.upper())
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        return _SPACES.sub(" ", _NON_ADDRESS.sub(" ", plain)).strip()


def normalise(
    *,
    given_name: str = "",
    middle_name: str = "",
    family_name: str = "",
    suffix: str = "",
    previous_family_names: list[str] | tuple[str, ...] = (),
    sex: str = "",
    birth_date: date | None = None,
    ssn: str = "",
    phones: list[str] | tuple[str, ...] = (),
    email: str = "",
    address_line: str = "",
    city: str = "",
    state: str = "",
    postal_code: str = "",
) -> dict:
    """The normalised forms of one record's demographics (stored as PatientRecord.norm)."""
    given_tokens, given_suffix = name_tokens(given_name)
    middle_tokens, _ = name_tokens(middle_name)
    family_tokens, family_suffix = name_tokens(family_name)
    previous_tokens = [token for name in previous_family_names for token in name_tokens(name)[0]]
    given = given_tokens[0] if given_tokens else ""
    # "Mary Ann" as a given name: the second token is as good as a middle name.
    middle = " ".join(middle_tokens or given_tokens[1:2])
    ssn9, ssn4 = normalise_ssn(ssn)
    postal = normalise_postal(postal_code)
    state_code = fold(state).replace(" ", "")
    return {
        "given": given,
        "given_group": list(nickname_group(given)),
        "middle": middle,
        "family": " ".join(family_tokens),
        "family_tokens": sorted(set(family_tokens) | set(previous_tokens)),
        "given_sx": phonetic(given),
        "family_sx": phonetic(family_tokens[0]) if family_tokens else "",
        "family_sx_last": phonetic(family_tokens[-1]) if len(family_tokens) > 1 else "",
        "suffix": normalise_suffix(suffix) or given_suffix or family_suffix,
        "sex": {"male": "M", "female": "F", "m": "M", "f": "F"}.get((sex or "").lower(), ""),
        "birth_date": birth_date.strftime("%Y%m%d") if birth_date else "",
        "ssn": ssn9,
        "ssn4": ssn4,
        "phones": sorted({p for p in (normalise_phone(raw) for raw in phones) if p}),
        "email": normalise_email(email),
        "address": normalise_street(address_line or ""),
        "city": fold(city),
        "state": state_code,
        "postal": postal,
    }
