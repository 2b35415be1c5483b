"""Field-by-field comparison of record pairs into discrete agreement levels, vectorised.

Records are held column-wise in a RecordTable; a comparison takes two index arrays (the left
and right record of each pair) and returns one agreement level per pair and field. The same
function serves one incoming record against its candidates and a whole batch of pairs.
Level 0 is "different", higher levels agree more strongly, MISSING means a side is empty.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import pandas as pd
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
from rapidfuzz.process import cpdist

from matching.arrays import distinct, members

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


def _codes(values: list[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for strings (equal strings, equal codes, in order of first appearance) and
    the distinct strings."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _derived_codes(codes: np.ndarray, uniques: np.ndarray, derive) -> np.ndarray:
    """The codes _codes would give `derive(value)` of every value: derived once per distinct value.
    (Distinct values come in order of first appearance, so the derived codes are numbered alike.)"""
    derived, _ = _codes([derive(value) for value in uniques.tolist()])
    return derived[codes]


def _codes_in(values: np.ndarray, book: np.ndarray) -> np.ndarray:
    """The code of each value in another code book (`book`, distinct strings), -1 where it is not there."""
    index = {value: code for code, value in enumerate(book.tolist())}
    return np.array([index.get(value, -1) for value in values.tolist()], dtype=np.int64)


def _padded_codes(lists: list[list[str]], width: int) -> np.ndarray:
    """Codes of up to `width` values per record in one shared code book, -1 where there are fewer."""
    counts = np.fromiter((min(len(values), width) for values in lists), dtype=np.int64, count=len(lists))
    flat = [value for values in lists for value in values[:width]]
    matrix = np.full((len(lists), width), -1, dtype=np.int64)
    if flat:
        rows = np.repeat(np.arange(len(lists)), counts)
        columns = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        matrix[rows, columns] = _codes(flat)[0]
    return matrix


class RecordTable:
    """Normalised records (PatientRecord.norm dicts) as columns, strings also as integer codes."""

    TEXT = ("given", "middle", "family", "birth_date", "sex", "ssn", "ssn4", "email", "address", "city", "postal",
            "suffix")  # fmt: skip

    def __init__(self, norms: list[dict]) -> None:
        self.size = len(norms)
        for name, values in zip(self.TEXT, _text_columns(norms, self.TEXT), strict=True):
            column = np.array(values, dtype=object)
            codes, uniques = _codes(column)
            setattr(self, name, column)
            setattr(self, f"{name}_code", codes)
            setattr(self, f"{name}_uniques", uniques)
            empty = np.flatnonzero(uniques == "") if len(uniques) else ()
            setattr(self, f"{name}_missing", codes == empty[0] if len(empty) else np.zeros(len(codes), bool))
        self.given_length = np.fromiter(map(len, self.given_uniques.tolist()), np.int64, len(self.given_uniques))[
            self.given_code
        ]
        self.given_initial = _derived_codes(self.given_code, self.given_uniques, lambda value: value[:1])
        self.middle_initial = _derived_codes(self.middle_code, self.middle_uniques, lambda value: value[:1])
        self.family_tokens = _padded_codes([n.get("family_tokens") or [] for n in norms], 4)
        self.phones = _padded_codes([n.get("phones") or [] for n in norms], 3)
        self.dob = _packed_dates(self.birth_date)
        self.birth_year = _birth_years(self.birth_date_code, self.birth_date_uniques)
        # Each given name's code among family names and the other way round (-1: none): name swaps.
        self.given_as_family = _codes_in(self.given_uniques, self.family_uniques)[self.given_code]
        self.family_as_given = _codes_in(self.family_uniques, self.given_uniques)[self.family_code]
        self.nickname_pairs = self._nickname_pairs([n.get("given_group") or [] for n in norms])
        self.ssn_bytes, self.ssn_lengths = _byte_rows(self.ssn_uniques)

    def _nickname_pairs(self, groups: list[list[str]]) -> np.ndarray:
        """Codes (a * size + b) of given-name pairs where one name is in the other's nickname group."""
        _, uniques = _codes(list(self.given))
        index = {name.lower(): code for code, name in enumerate(uniques) if name}
        seen: set[int] = set()
        pairs = []
        for code, group in zip(self.given_code.tolist(), groups, strict=True):
            if code in seen:
                continue
            seen.add(code)
            for other in group:
                other_code = index.get(other)
                if other_code is not None and other_code != code:
                    pairs += [code * len(uniques) + other_code, other_code * len(uniques) + code]
        self.given_codebook = len(uniques)
        return distinct(np.array(pairs, dtype=np.int64))


def _byte_rows(uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values as rows of bytes (uint8, one row per value, zero-padded) and their
    lengths, -1 where a value is not ASCII (its bytes would not stand for its characters)."""
    lengths = np.fromiter((len(u) if u.isascii() else -1 for u in uniques), dtype=np.int64, count=len(uniques))
    width = max(int(lengths.max()) if len(lengths) else 0, 2)
    rows = np.array([u.encode() if u.isascii() else b"" for u in uniques], dtype=f"S{width}")
    return rows.view(np.uint8).reshape(len(uniques), width), lengths


def _text_columns(norms: list[dict], names: tuple[str, ...]) -> list[tuple | list]:
    """The values of some text fields of the records, a column per field, "" where one is missing.

    Norms written by normalise() have every field: one look-up of all of them per record, then
    transposed, takes half the time of a look-up per field and record."""
    try:
        columns = list(zip(*map(itemgetter(*names), norms), strict=True)) if norms else [() for _ in names]
    except KeyError:  # a norm without some field
        return [[n.get(name) or "" for n in norms] for name in names]
    return [[value or "" for value in column] if None in column else column for column in columns]


def _packed_dates(dates: np.ndarray) -> np.ndarray:
    """YYYYMMDD strings as one uint64 each, a digit per byte (year first); 0 where the date is missing."""
    fixed = np.array([d if len(d) == 8 else "" for d in dates], dtype="S8")
    return fixed.view(">u8").astype(np.uint64) if len(fixed) else np.zeros(0, np.uint64)


def _birth_years(codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
    """The year of each YYYYMMDD birth date as an integer, 0 where the date is missing."""
    years = np.fromiter((int(d[:4]) if len(d) == 8 and d[:4].isdigit() else 0 for d in uniques.tolist()),
                        dtype=np.int64, count=len(uniques))  # fmt: skip
    return years[codes] if len(years) else np.zeros(len(codes), np.int64)


def generations_apart(table: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per pair: whether both birth years are known and lie a generation apart (15 to 50 years):
    a parent and a child, whatever else they share."""
    a, b = table.birth_year[left], table.birth_year[right]
    gap = np.abs(a - b)
    return (a > 0) & (b > 0) & (gap >= GENERATION_YEARS[0]) & (gap <= GENERATION_YEARS[1])


GENERATION_YEARS = (15, 50)

_BYTES = np.uint64(0x0101010101010101)


def _differing_bytes(x: np.ndarray) -> np.ndarray:
    """How many of the eight bytes of each value are not zero."""
    x = x | (x >> np.uint64(4))
    x = x | (x >> np.uint64(2))
    x = (x | (x >> np.uint64(1))) & _BYTES
    return (x * _BYTES) >> np.uint64(56)


def _similarity_where(
    p: "_Pairs", name: str, where: np.ndarray, scorer=JaroWinkler.normalized_similarity
) -> np.ndarray:
    """String similarity of column `name` for the pairs in `where` (elsewhere 0): only where it can
    change the level, and once per distinct pair of values (names and towns repeat)."""
    out = np.zeros(len(p.left))
    idx = np.flatnonzero(where)
    if len(idx):
        a, b, _ = p.codes(name)
        width = np.int64(len(getattr(p.t, f"{name}_uniques")))
        inverse, distinct = pd.factorize(a[idx] * width + b[idx])
        uniques = getattr(p.t, f"{name}_uniques")
        similarity = cpdist(
            list(uniques[distinct // width]), list(uniques[distinct % width]), scorer=scorer, workers=p.workers
        )
        out[idx] = similarity[inverse]
    return out


def _any_shared(codes: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Whether the records of each pair share a value, in a table's rows of padded codes (values
    from the first column on, -1 after them). Most records have one value: every pair compares
    first values, and only pairs where a side has more compare all of them."""
    first = codes[left, 0]
    shared = (first == codes[right, 0]) & (first >= 0)
    several = codes[:, 1] >= 0 if codes.shape[1] > 1 else np.zeros(len(codes), dtype=bool)
    rest = np.flatnonzero(several[left] | several[right])
    if len(rest):
        a, b = codes[left[rest]], codes[right[rest]]
        any_pair = np.zeros(len(rest), dtype=bool)
        for i in range(a.shape[1]):
            for j in range(b.shape[1]):
                any_pair |= (a[:, i] == b[:, j]) & (a[:, i] >= 0)
        shared[rest] = any_pair
    return shared


class _Pairs:
    """The two sides of each pair, for one column at a time."""

    def __init__(self, table: RecordTable, left: np.ndarray, right: np.ndarray, workers: int = -1) -> None:
        self.t, self.left, self.right = table, left, right
        self.workers = workers  # threads for string similarities (-1: one per core)

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left codes, right codes, either side missing)."""
        codes, missing = getattr(self.t, f"{name}_code"), getattr(self.t, f"{name}_missing")
        return codes[self.left], codes[self.right], missing[self.left] | missing[self.right]


def _given(p: _Pairs) -> np.ndarray:
    t = p.t
    a, b, missing = p.codes("given")
    exact = a == b
    nickname = members(a * t.given_codebook + b, t.nickname_pairs) & ~exact
    jw = _similarity_where(p, "given", ~exact & ~missing & ~nickname)
    # A short form the nickname list lacks (Mari for Marisol): one name begins the other. Checked
    # only where the similarity leaves it in doubt.
    doubtful = np.flatnonzero((jw >= 0.80) & (jw < 0.92))
    for i, x, y in zip(doubtful.tolist(), a[doubtful].tolist(), b[doubtful].tolist(), strict=True):
        shorter, longer = sorted((t.given_uniques[x], t.given_uniques[y]), key=len)
        nickname[i] = len(shorter) >= 3 and longer.startswith(shorter)
    one_is_initial = ((t.given_length[p.left] == 1) | (t.given_length[p.right] == 1)) & (
        t.given_initial[p.left] == t.given_initial[p.right]
    )
    level = np.select([exact, nickname, jw >= 0.92, jw >= 0.80, one_is_initial], [5, 4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _family(p: _Pairs) -> np.ndarray:
    a, b, missing = p.codes("family")
    exact = a == b
    shared = _any_shared(p.t.family_tokens, p.left, p.right) & ~exact
    jw = _similarity_where(p, "family", ~exact & ~missing & ~shared)
    level = np.select([exact, shared, jw >= 0.92, jw >= 0.80], [4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _middle(p: _Pairs) -> np.ndarray:
    a, b, missing = p.codes("middle")
    initial = p.t.middle_initial[p.left] == p.t.middle_initial[p.right]
    level = np.select([a == b, initial], [2, 1], default=0)
    return np.where(missing, MISSING, level)


def _birth_date(p: _Pairs) -> np.ndarray:
    a, b = p.t.dob[p.left], p.t.dob[p.right]
    missing = (a == 0) | (b == 0)
    sixteen = np.uint64(16)
    same_year = (a >> (sixteen * np.uint64(2))) == (b >> (sixteen * np.uint64(2)))  # YYYY: the high four bytes
    month_a, day_a = (a >> sixteen) & np.uint64(0xFFFF), a & np.uint64(0xFFFF)
    month_b, day_b = (b >> sixteen) & np.uint64(0xFFFF), b & np.uint64(0xFFFF)
    swapped = same_year & (month_a == day_b) & (day_a == month_b)
    differing = _differing_bytes(a ^ b)
    level = np.select([a == b, swapped, differing == 1, same_year], [4, 3, 2, 1], default=0)
    return np.where(missing, MISSING, level)


def _equal(p: _Pairs, name: str) -> np.ndarray:
    a, b, missing = p.codes(name)
    return np.where(missing, MISSING, (a == b).astype(np.int64))


def _one_edit_apart(p: _Pairs, name: str, where: np.ndarray) -> np.ndarray:
    """For the pairs in `where`: whether the two values are one edit apart (Damerau-Levenshtein
    distance 1: one character changed, added or dropped, or two neighbours swapped).

    ASCII values of one length, such as SSNs, are compared as rows of bytes, all pairs at once
    (every pair differs in some identifier, so there are about as many distinct pairs of values
    as pairs); others by the edit distance.
    """
    out = np.zeros(len(p.left), dtype=bool)
    idx = np.flatnonzero(where)
    if not len(idx):
        return out
    a, b, _ = p.codes(name)
    # The table's values as rows of bytes (made once per table, not once per share of pairs).
    matrix, lengths = getattr(p.t, f"{name}_bytes"), getattr(p.t, f"{name}_lengths")
    same_length = (lengths[a[idx]] == lengths[b[idx]]) & (lengths[a[idx]] >= 0)
    even = idx[same_length]
    x, y = matrix[a[even]], matrix[b[even]]
    differing = x != y
    count = differing.sum(axis=1)
    first = np.minimum(differing.argmax(axis=1), matrix.shape[1] - 2)[:, None]
    swapped = (
        (count == 2)
        & np.take_along_axis(differing, first + 1, axis=1)[:, 0]
        & (np.take_along_axis(x, first, axis=1) == np.take_along_axis(y, first + 1, axis=1))[:, 0]
        & (np.take_along_axis(x, first + 1, axis=1) == np.take_along_axis(y, first, axis=1))[:, 0]
    )
    out[even] = (count == 1) | swapped
    uneven = np.zeros(len(p.left), dtype=bool)
    uneven[idx[~same_length]] = True
    out |= _similarity_where(p, name, uneven, scorer=DamerauLevenshtein.distance) == 1
    return out


def _ssn(p: _Pairs) -> np.ndarray:
    a, b, full_missing = p.codes("ssn")
    a4, b4, four_missing = p.codes("ssn4")
    full = ~full_missing
    one_edit = _one_edit_apart(p, "ssn", full & (a != b))
    last_four = ~four_missing & (a4 == b4)
    level = np.select([full & (a == b), one_edit, last_four], [3, 2, 1], default=0)
    return np.where(four_missing, MISSING, level)


def _phone(p: _Pairs) -> np.ndarray:
    present = (p.t.phones[p.left, 0] >= 0) & (p.t.phones[p.right, 0] >= 0)
    return np.where(present, _any_shared(p.t.phones, p.left, p.right).astype(np.int64), MISSING)


def _address(p: _Pairs) -> np.ndarray:
    line_a, line_b, line_missing = p.codes("address")
    postal_a, postal_b, postal_missing = p.codes("postal")
    city_a, city_b, city_missing = p.codes("city")
    same_postal = ~postal_missing & (postal_a == postal_b)
    city_jw = _similarity_where(p, "city", ~city_missing & (city_a != city_b))
    same_city = ~city_missing & ((city_a == city_b) | (city_jw >= 0.90))
    # A street line agrees only within the same ZIP code or city (or where neither is known).
    place_agrees = same_postal | (postal_missing & (same_city | city_missing))
    same_line = ~line_missing & (line_a == line_b)
    jw = _similarity_where(p, "address", ~line_missing & ~same_line & place_agrees)
    level = np.select(
        [same_line & place_agrees, ~line_missing & (jw >= 0.88) & place_agrees, same_postal, same_city],
        [4, 3, 2, 1],
        default=0,
    )
    return np.where(line_missing & postal_missing & city_missing, MISSING, level)


# A large set of pairs is compared in shares of at most this many, by threads (one per core):
# a batch's millions of pairs take seconds of numpy on one core, and shares of this size keep
# its scratch arrays small (all at once, they held 230 MB more at the peak).
PAIRS_PER_SHARE = 250_000


def compare(table: RecordTable, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Agreement levels, shape (pairs, fields), for the pairs (left[i], right[i]) of the table.

    Each pair's levels depend on its two records alone, so a large set of pairs is cut into
    shares compared by threads and put back in order. The work is numpy's and rapidfuzz's,
    which let go of the interpreter lock for it. (Forked processes did it a third slower for a
    batch's 2.8 million pairs: forking a process that holds a batch in memory, and copying the
    pages that the children then touch, cost the kernel nearly as much time as the comparing
    cost the children; and a Celery worker may not fork at all.)
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    shares = -(-len(left) // PAIRS_PER_SHARE)
    threads = min(os.cpu_count() or 1, shares)
    if threads < 2:
        return _compare(table, left, right)
    bounds = np.linspace(0, len(left), shares + 1).astype(np.int64).tolist()
    levels = np.empty((len(left), len(FIELDS)), dtype=np.int8, order="F")

    def share(n: int) -> None:
        start, end = bounds[n], bounds[n + 1]
        # Each thread has a core of its own: threads of its own for similarities would contend.
        levels[start:end] = _compare(table, left[start:end], right[start:end], workers=1)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(share, range(shares)))  # list(): a thread's error is raised here
    return levels


def _compare(table: RecordTable, left: np.ndarray, right: np.ndarray, workers: int = -1) -> np.ndarray:
    if not len(left):
        return np.zeros((0, len(FIELDS)), dtype=np.int8, order="F")
    p = _Pairs(table, left, right, workers)
    columns = {
        "given": _given(p),
        "family": _family(p),
        "middle": _middle(p),
        "birth_date": _birth_date(p),
        "sex": _equal(p, "sex"),
        "ssn": _ssn(p),
        "phone": _phone(p),
        "email": _equal(p, "email"),
        "address": _address(p),
        "suffix": _equal(p, "suffix"),
    }
    # Column by column: each field's levels lie together, for the steps that read them a field
    # at a time (weights, rules).
    levels = np.empty((len(left), len(FIELDS)), dtype=np.int8, order="F")
    for i, field in enumerate(FIELDS):
        levels[:, i] = columns[field.name]
    _apply_name_swap(table, left, right, levels)
    return levels


def _apply_name_swap(table: RecordTable, left: np.ndarray, right: np.ndarray, levels: np.ndarray) -> None:
    """Given and family written the other way round agree, a little less than written the same way."""
    # Only pairs whose given names differ can be swaps; compare the strings for those alone.
    candidates = np.flatnonzero(
        (table.given_code[left] != table.given_code[right]) & ~table.given_missing[left] & ~table.family_missing[left]
    )
    a, b = left[candidates], right[candidates]
    swapped = candidates[
        (table.given_as_family[a] == table.family_code[b]) & (table.family_as_given[a] == table.given_code[b])
    ]
    levels[swapped, FIELD_INDEX["given"]] = level_of("given", "nickname")
    levels[swapped, FIELD_INDEX["family"]] = level_of("family", "shared_part")
