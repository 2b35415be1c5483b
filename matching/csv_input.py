"""Registrations from CSV files (bulk loads and batch deduplication).

Errors name the line and the field, never the value: a report may travel further than the data.
"""

import argparse
import csv
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

from hie.bulk import without_cycle_collection
from matching.services import Demographics

HEADER = ["org_id", "local_id", "given_name", "middle_name", "family_name", "suffix", "sex", "birth_date", "ssn",
          "phone", "email", "address_line", "city", "state", "postal_code"]  # fmt: skip
EARLIEST_BIRTH = date(1880, 1, 1)
SEXES = {"": "unknown", "male": "male", "m": "male", "female": "female", "f": "female", "other": "other",
         "o": "other", "unknown": "unknown", "u": "unknown"}  # fmt: skip


class CsvRegistration(NamedTuple):  # one per row of a bulk load: made at the speed of a tuple
    line: int
    org_id: str
    local_id: str
    demographics: Demographics


@dataclass(frozen=True)
class CsvError:
    line: int
    message: str


def parse_row(line: int, row: dict, today: date | None = None) -> CsvRegistration:
    """One row to a registration; ValueError names what is wrong with it. (`today` bounds birth
    dates; a caller reading many rows looks it up once.)"""
    org_id = (row.get("org_id") or "").strip()
    local_id = (row.get("local_id") or "").strip()
    if not local_id:
        raise ValueError("local_id is empty")
    raw_date = (row.get("birth_date") or "").strip()
    try:
        birth_date = date.fromisoformat(raw_date) if raw_date else None
    except ValueError:
        raise ValueError("birth_date is not a date in YYYY-MM-DD form") from None
    if birth_date and not EARLIEST_BIRTH <= birth_date <= (today or date.today()):
        raise ValueError("birth_date is outside 1880 to today")
    sex = SEXES.get((row.get("sex") or "").strip().lower())
    if sex is None:
        raise ValueError("sex is not one of male, female, other, unknown")
    phone = (row.get("phone") or "").strip()
    return CsvRegistration(
        line=line,
        org_id=org_id,
        local_id=local_id,
        demographics=Demographics(
            given_name=(row.get("given_name") or "").strip(),
            middle_name=(row.get("middle_name") or "").strip(),
            family_name=(row.get("family_name") or "").strip(),
            suffix=(row.get("suffix") or "").strip(),
            sex=sex,
            birth_date=birth_date,
            ssn=(row.get("ssn") or "").strip(),
            phones=(phone,) if phone else (),
            email=(row.get("email") or "").strip(),
            address_line=(row.get("address_line") or "").strip(),
            city=(row.get("city") or "").strip(),
            state=(row.get("state") or "").strip(),
            postal_code=(row.get("postal_code") or "").strip(),
        ),
    )


def readable_file(value: str) -> Path:
    """A command's input file argument: a file that exists and can be read, or a usage error."""
    path = Path(value)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {value}: no such file, or not readable")
    return path


@without_cycle_collection()  # a file's rows are hundreds of thousands of tuples: half the time went to the collector
def read_registrations(path: Path) -> tuple[list[CsvRegistration], list[CsvError]]:
    try:
        return _read_registrations(path)
    except UnicodeDecodeError:
        return [], [CsvError(1, "the file is not UTF-8 text")]


def _read_registrations(path: Path) -> tuple[list[CsvRegistration], list[CsvError]]:
    registrations, errors = [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in ("org_id", "local_id") if column not in (reader.fieldnames or [])]
        if missing:
            return [], [CsvError(1, f"the header lacks {', '.join(missing)}; expected {','.join(HEADER)}")]
        seen: dict[tuple[str, str], int] = {}
        today = date.today()
        for line, row in enumerate(reader, start=2):
            try:
                registration = parse_row(line, row, today)
            except ValueError as exc:
                errors.append(CsvError(line, str(exc)))
                continue
            key = (registration.org_id, registration.local_id)
            if key in seen:
                errors.append(CsvError(line, f"org_id and local_id repeat line {seen[key]}"))
                continue
            seen[key] = line
            registrations.append(registration)
    return registrations, errors
