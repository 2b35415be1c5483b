"""Field-by-field comparison of record pairs into discrete agreement levels, vectorised.

Records are held column-wise in a RecordTable; a comparison takes two index arrays (the left
and right record of each pair) and returns one agreement level per pair and field. The same
function serves one incoming record against its candidates and a whole batch of pairs.
Level 0 is "different", higher levels agree more strongly, MISSING means a side is empty.
"""

from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
from rapidfuzz.process import cpdist

MISSING = -1


@dataclass(frozen=True)
class Field:
    name: str
    levels: tuple[str, ...]  # from "different" (0) up to the strongest agreement


FIELDS: tuple[Field, ...] = (
    Field("given", ("different", "initial", "similar", "very_similar", "nickname", "exact")),
    Field("family", ("different", "similar", "very_similar", "shared_part", "exact")),
    Field("middle", ("different", "initial", "exact")),
    Field("birth_date", ("different", "same_year", "one_digit", "day_month_swapped", "exact")),
    Field("sex", ("different", "same")),
    Field("ssn", ("different", "last_four", "one_digit", "exact")),
    Field("phone", ("different", "same")),
    Field("email", ("different", "same")),
    # Street, city and ZIP code describe one fact, a home: compared as one field so a shared
    # home is not counted three times.
    Field("address", ("different", "same_city", "same_postal", "similar_street", "same_street")),
    Field("suffix", ("different", "same")),
)
FIELD_INDEX = {field.name: i for i, field in enumerate(FIELDS)}


def level_of(field: str, name: str) -> int:
    return FIELDS[FIELD_INDEX[field]].levels.index(name)


class RecordTable:
    """Normalised records (PatientRecord.norm dicts) as columns."""

    TEXT = ("given", "middle", "family", "birth_date", "sex", "ssn", "ssn4", "email", "address", "city", "postal",
            "suffix")  # fmt: skip

    def __init__(self, norms: list[dict]) -> None:
        self.size = len(norms)
        for name in self.TEXT:
            setattr(self, name, np.array([n.get(name, "") or "" for n in norms], dtype=object))
        self.given_group = np.array([frozenset(n.get("given_group") or ()) for n in norms], dtype=object)
        self.family_tokens = np.array([frozenset(n.get("family_tokens") or ()) for n in norms], dtype=object)
        self.phones = np.array([frozenset(n.get("phones") or ()) for n in norms], dtype=object)
        self.dob_digits = _digits_matrix(self.birth_date)


def _digits_matrix(dates: np.ndarray) -> np.ndarray:
    """YYYYMMDD strings as an (n, 8) array of character codes; zeros where the date is missing."""
    fixed = np.array([d if len(d) == 8 else "" for d in dates], dtype="U8")
    return fixed.view(np.uint32).reshape(len(fixed), 8) if len(fixed) else np.zeros((0, 8), np.uint32)


def _similarity(a: np.ndarray, b: np.ndarray, scorer=JaroWinkler.normalized_similarity) -> np.ndarray:
    if len(a) == 0:
        return np.zeros(0)
    return cpdist(list(a), list(b), scorer=scorer, workers=1)


def _sets_meet(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> np.ndarray:
    out = np.zeros(len(a), dtype=bool)
    idx = np.flatnonzero(where)
    out[idx] = [not x.isdisjoint(y) for x, y in zip(a[idx], b[idx], strict=True)]
    return out


def _related(
    names_a: np.ndarray, names_b: np.ndarray, groups_a: np.ndarray, groups_b: np.ndarray, where: np.ndarray
) -> np.ndarray:
    """Whether one name is in the other's nickname group."""
    out = np.zeros(len(names_a), dtype=bool)
    idx = np.flatnonzero(where)
    out[idx] = [
        x.lower() in gy or y.lower() in gx
        for x, y, gx, gy in zip(names_a[idx], names_b[idx], groups_a[idx], groups_b[idx], strict=True)
    ]
    return out


def _missing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == "") | (b == "")


def _given(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.given[left], t.given[right]
    missing = _missing(a, b)
    exact = a == b
    jw = _similarity(a, b)
    nickname = _related(a, b, t.given_group[left], t.given_group[right], ~exact & ~missing)
    first_a = np.array([s[:1] for s in a], dtype=object)
    first_b = np.array([s[:1] for s in b], dtype=object)
    one_is_initial = (np.array([len(s) == 1 for s in a]) | np.array([len(s) == 1 for s in b])) & (first_a == first_b)
    level = np.select([exact, nickname, jw >= 0.92, jw >= 0.80, one_is_initial], [5, 4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _family(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.family[left], t.family[right]
    missing = _missing(a, b)
    exact = a == b
    jw = _similarity(a, b)
    shared = _sets_meet(t.family_tokens[left], t.family_tokens[right], ~exact & ~missing)
    level = np.select([exact, shared, jw >= 0.92, jw >= 0.80], [4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _middle(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.middle[left], t.middle[right]
    initial = np.array([x[:1] == y[:1] for x, y in zip(a, b, strict=True)], dtype=bool)
    level = np.select([a == b, initial], [2, 1], default=0)
    return np.where(_missing(a, b), MISSING, level)


def _birth_date(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.dob_digits[left], t.dob_digits[right]
    missing = (a[:, 0] == 0) | (b[:, 0] == 0)
    differing = (a != b).sum(axis=1)
    same_year = (a[:, :4] == b[:, :4]).all(axis=1)
    swapped = same_year & (a[:, 4:6] == b[:, 6:8]).all(axis=1) & (a[:, 6:8] == b[:, 4:6]).all(axis=1)
    level = np.select([differing == 0, swapped, differing == 1, same_year], [4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _equal_or_missing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(_missing(a, b), MISSING, (a == b).astype(np.int64))


def _ssn(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.ssn[left], t.ssn[right]
    a4, b4 = t.ssn4[left], t.ssn4[right]
    full = ~_missing(a, b)
    edits = _similarity(a, b, scorer=DamerauLevenshtein.distance)
    last_four = ~_missing(a4, b4) & (a4 == b4)
    level = np.select([full & (a == b), full & (edits == 1), last_four], [3, 2, 1], default=0)
    return np.where(_missing(a4, b4), MISSING, level)


def _phone(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b = t.phones[left], t.phones[right]
    present = np.array([bool(x) and bool(y) for x, y in zip(a, b, strict=True)], dtype=bool)
    meet = _sets_meet(a, b, present)
    return np.where(present, meet.astype(np.int64), MISSING)


def _address(t: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    line_a, line_b = t.address[left], t.address[right]
    postal_a, postal_b = t.postal[left], t.postal[right]
    city_a, city_b = t.city[left], t.city[right]
    has_line = ~_missing(line_a, line_b)
    has_postal = ~_missing(postal_a, postal_b)
    has_city = ~_missing(city_a, city_b)
    same_postal = has_postal & (postal_a == postal_b)
    same_city = has_city & (_similarity(city_a, city_b) >= 0.90)
    # A street line agrees only within the same ZIP code or city (or where neither is known).
    place_agrees = same_postal | (~has_postal & (same_city | ~has_city))
    jw = _similarity(line_a, line_b)
    level = np.select(
        [has_line & (line_a == line_b) & place_agrees, has_line & (jw >= 0.88) & place_agrees, same_postal, same_city],
        [4, 3, 2, 1],
        default=0,
    )
    return np.where(~has_line & ~has_postal & ~has_city, MISSING, level)


def compare(table: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Agreement levels, shape (pairs, fields), for the pairs (left[i], right[i]) of the table."""
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    columns = {
        "given": _given(table, left, right),
        "family": _family(table, left, right),
        "middle": _middle(table, left, right),
        "birth_date": _birth_date(table, left, right),
        "sex": _equal_or_missing(table.sex[left], table.sex[right]),
        "ssn": _ssn(table, left, right),
        "phone": _phone(table, left, right),
        "email": _equal_or_missing(table.email[left], table.email[right]),
        "address": _address(table, left, right),
        "suffix": _equal_or_missing(table.suffix[left], table.suffix[right]),
    }
    levels = np.stack([columns[field.name] for field in FIELDS], axis=1) if len(left) else np.zeros((0, len(FIELDS)))
    _apply_name_swap(table, left, right, levels)
    return levels.astype(np.int8)


def _apply_name_swap(table: RecordTable, left: np.ndarray, right: np.ndarray, levels: np.ndarray) -> None:
    """Given and family written the other way round agree, a little less than written the same way."""
    if not len(left):
        return
    swapped = (
        (table.given[left] == table.family[right])
        & (table.family[left] == table.given[right])
        & (table.given[left] != table.given[right])
        & (table.given[left] != "")
        & (table.family[left] != "")
    )
    levels[swapped, FIELD_INDEX["given"]] = level_of("given", "nickname")
    levels[swapped, FIELD_INDEX["family"]] = level_of("family", "shared_part")
