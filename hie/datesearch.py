"""FHIR date search terms (`[prefix]YYYY[-MM[-DD]]`): parsed into the range of days they cover, and
matched against a day or a period, for every search of the node (PDQm birthdate, ITI-67 dates,
Consent date and period)."""

import calendar
import re
from datetime import date

from hie.exceptions import ValidationFailed

_DATE = re.compile(r"^(eq|ne|lt|le|gt|ge)?(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def date_range(text: str, name: str = "birthdate") -> tuple[str, date, date]:
    """A FHIR date search value as (prefix, first day, last day) of the range its precision covers."""
    found = _DATE.match(text)
    if not found:
        raise ValidationFailed(f"{name} must be [prefix]YYYY[-MM[-DD]] with prefix eq, ne, lt, le, gt or ge")
    prefix, year, month, day = found.groups()
    try:
        if day:
            first = last = date(int(year), int(month), int(day))
        elif month:
            first = date(int(year), int(month), 1)
            last = date(int(year), int(month), calendar.monthrange(int(year), int(month))[1])
        else:
            first, last = date(int(year), 1, 1), date(int(year), 12, 31)
    except ValueError:
        raise ValidationFailed(f"{name} is not a valid date") from None
    return prefix or "eq", first, last


def date_matches(term: tuple[str, date, date], first_day: date | None, last_day: date | None = None) -> bool:
    """Does [first_day, last_day] (a single day when last_day is None) meet the FHIR date term?"""
    if first_day is None:
        return False
    last_day = last_day or first_day
    prefix, first, last = term
    return {
        "eq": first <= first_day and last_day <= last,
        "ne": not (first <= first_day and last_day <= last),
        "lt": first_day < first,
        "le": first_day <= last,
        "gt": last_day > last,
        "ge": last_day >= first,
    }[prefix]
