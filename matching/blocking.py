"""Blocking: the keys under which a record is filed, so candidates are one indexed query away.

Several independent passes, so that a typo in one field does not hide a true match: a
candidate only has to share one key. Keys hold no readable PHI: values are hashed.
"""

import hashlib
from collections.abc import Collection

import numpy as np
import pandas as pd

from matching.arrays import distinct

# The passes, numbered in the key so an oversized block can be reported by pass.
PASSES = (
    "ssn",  # full valid SSN
    "ssn_part",  # the last four digits and the rest apart: one mistyped digit leaves one part intact
    "phone",  # any phone, E.164
    "email",
    "dob",  # birth date with day and month in sorted order: also finds day/month transpositions
    "fam_year",  # phonetic family name + birth year + first letter of the given name
    "fam_given",  # phonetic family name + nickname root of the given name (birth date typos)
    "given_postal",  # phonetic given name + postal code (family name changes)
    "addr",  # street line + postal code (household, with the name comparison deciding)
    "house_postal",  # house number + postal code (a misspelt street name)
    "given_postal_split",  # given_postal with the birth year, for an oversized given_postal block
)
# A pass whose blocks can outgrow the cap (one town's ZIP code holds every John) has a second,
# finer pass: its keys carry the first pass's value and the birth year. Where a block of the
# first pass is over the cap, its records are paired within the finer blocks instead of not at
# all; where it is not, the finer keys add nothing and the batch leaves them out. (A record
# without a birth date is not split: the same home still finds it through house_postal.)
SPLIT_PASSES = {"given_postal": "given_postal_split"}


# A key is one integer: the pass's place in PASSES above a 59-bit hash of the value. Two values
# whose hashes collide share a block, which costs a candidate pair, never a link. A finer pass's
# key is the first pass's hash with its low SPLIT_BITS replaced by a hash of the added value, so
# the block it splits is known from the key alone.
HASH_BITS = 59
SPLIT_BITS = 16
_PASS_NUMBER = {name: number for number, name in enumerate(PASSES)}
_PASS_PREFIX = {name: number << HASH_BITS for name, number in _PASS_NUMBER.items()}
_HASH_MASK = (1 << HASH_BITS) - 1
_SPLIT_MASK = (1 << SPLIT_BITS) - 1


def _dob_sorted(birth_date: str) -> str:
    if len(birth_date) != 8:
        return ""
    month, day = birth_date[4:6], birth_date[6:8]
    return birth_date[:4] + min(month, day) + max(month, day)


def given_root(norm: dict) -> str:
    """One stable representative of the given name's nickname group (the first formal name)."""
    group = norm.get("given_group") or []
    return group[0] if group else ""


def blocking_keys(norm: dict, passes: Collection[str] = PASSES) -> list[int]:
    """The record's keys, of the given passes only if asked (training uses two of them)."""
    values: list[tuple[str, str]] = []  # (pass, value)
    ssn = norm.get("ssn")
    if ssn:
        values += [("ssn", ssn), ("ssn_part", f"first:{ssn[:-4]}"), ("ssn_part", f"last:{ssn[-4:]}")]
    values += [("phone", phone) for phone in norm.get("phones") or ()]
    values += [("email", norm.get("email")), ("dob", _dob_sorted(norm.get("birth_date", "")))]
    year = norm.get("birth_date", "")[:4]
    initial = (norm.get("given") or "")[:1]
    group = norm.get("given_group") or ()
    for code in (norm.get("family_sx"), norm.get("family_sx_last")):
        if code:
            if year:
                values.append(("fam_year", f"{code}|{year}|{initial}"))
            values += [("fam_given", f"{code}|{name}") for name in group]
    postal = norm.get("postal")
    splits: list[tuple[str, str, str]] = []  # (pass, value, added value)
    if postal:
        address = norm.get("address")
        house = address.split(" ", 1)[0] if address else ""
        if norm.get("given_sx"):
            given_postal = f"{norm['given_sx']}|{postal}"
            values.append(("given_postal", given_postal))
            splits.append(("given_postal", given_postal, year))
        if address:
            values.append(("addr", f"{address}|{postal}"))
            if house.isdigit():
                values.append(("house_postal", f"{house}|{postal}"))
    every = passes is PASSES
    keys = {key_for(name, value) for name, value in values if value and (every or name in passes)}
    keys.update(split_key_for(name, value, added) for name, value, added in splits
                if added and (every or SPLIT_PASSES[name] in passes))  # fmt: skip
    return sorted(keys)


def key_for(pass_name: str, value: str) -> int:
    """The key one pass files a normalised value under (exact look-ups such as a phone search use it)."""
    digest = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    return _PASS_PREFIX[pass_name] | (digest >> (64 - HASH_BITS))


def split_key_for(pass_name: str, value: str, added: str) -> int:
    """The finer pass's key for a value of `pass_name` and an added value (SPLIT_PASSES)."""
    digest = int.from_bytes(hashlib.blake2b(added.encode(), digest_size=8).digest(), "big")
    return (
        (key_for(pass_name, value) & _HASH_MASK & ~_SPLIT_MASK)
        | _PASS_PREFIX[SPLIT_PASSES[pass_name]]
        | (digest & _SPLIT_MASK)
    )


def _split_stems(keys: np.ndarray) -> np.ndarray:
    """Per key: the block of a finer pass it splits or belongs to, as one integer (the finer pass's
    number above the first pass's hash without its low bits); -1 for keys of other passes."""
    keys = np.asarray(keys, dtype=np.int64)
    numbers = keys >> HASH_BITS
    stems = np.full(len(keys), -1, dtype=np.int64)
    for coarse, finer in SPLIT_PASSES.items():
        stem = (keys & _HASH_MASK) >> SPLIT_BITS
        stems = np.where(numbers == _PASS_NUMBER[coarse], (_PASS_NUMBER[finer] << HASH_BITS) | stem, stems)
        stems = np.where(numbers == _PASS_NUMBER[finer], (_PASS_NUMBER[finer] << HASH_BITS) | stem, stems)
    return stems


def blocks_in_use(sizes: np.ndarray, keys: np.ndarray, cap: int) -> tuple[np.ndarray, int]:
    """Per distinct key (`sizes`: how many records each holds): whether its block is paired, and
    how many oversized blocks are split by a finer pass instead. A block over the cap is not; a
    finer pass's block is paired only where the block it splits is over the cap."""
    used = sizes <= cap
    finer = np.isin(np.asarray(keys, dtype=np.int64) >> HASH_BITS, [_PASS_NUMBER[f] for f in SPLIT_PASSES.values()])
    if not finer.any():
        return used, 0
    stems = _split_stems(keys)
    coarse = (stems >= 0) & ~finer
    oversized_stems = np.unique(stems[coarse & ~used])
    used &= ~finer | np.isin(stems, oversized_stems)
    split = int(np.isin(oversized_stems, stems[finer]).sum())
    return used, split


def pass_of(key: int) -> str:
    return PASSES[int(key) >> HASH_BITS]


def block_pairs(
    codes: np.ndarray, keys: np.ndarray, positions: np.ndarray, ranks: np.ndarray, decides: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Pairs of records that share a blocking key, each once, as (later, earlier) positions.

    Entry n files the record at `positions[n]` under the key `keys[codes[n]]` (keys factorised,
    as pd.factorize gives them); an entry at position -1 counts
    towards its block's size but pairs with nobody (a record that cannot be a candidate). Within
    a pair the record of the higher rank (`ranks`, per position) is the later one, and a pair is
    made only where the later record `decides` (per position). Pairs come sorted by later then
    earlier position. Blocks of more than `cap` entries are skipped (a block of a pass with a
    finer pass is paired within that pass's blocks instead: blocks_in_use); returns the largest
    skipped block per pass.
    """
    empty = np.zeros(0, np.int64)
    if not len(codes):
        return empty, empty, {}
    sizes = np.bincount(codes)
    oversized: dict[str, int] = {}
    for code in np.flatnonzero(sizes > cap).tolist():
        name = pass_of(keys[code])
        oversized[name] = max(oversized.get(name, 0), int(sizes[code]))
    used, _ = blocks_in_use(sizes, np.asarray(keys)[: len(sizes)], cap)
    positions = np.asarray(positions, dtype=np.int64)
    keep = (sizes[codes] > 1) & used[codes] & (positions >= 0)
    codes, positions = codes[keep], positions[keep]
    order = np.lexsort((positions, ranks[positions], codes))  # by block, then rank
    codes, positions = codes[order], positions[order]
    # Each deciding entry pairs with the entries before it in its block.
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    block_start = np.repeat(first, np.diff(np.r_[first, len(codes)]))
    counts = np.where(decides[positions], np.arange(len(codes)) - block_start, 0)
    later = np.repeat(np.arange(len(codes)), counts)
    earlier = block_start[later] + np.arange(len(later)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = np.int64(len(ranks))
    unique = distinct(positions[later] * width + positions[earlier])
    return unique // width, unique % width, oversized


def candidate_pairs(record_keys: list[list[int]], cap: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """All pairs (i < j) of records, by position, that share a blocking key, without repeats,
    sorted by i then j. Blocks larger than `cap` are skipped; returns the largest skipped block per pass.
    """
    positions = np.repeat(np.arange(len(record_keys)), [len(keys) for keys in record_keys])
    keys = np.array([key for keys in record_keys for key in keys], dtype=np.int64)
    return pairs_sharing(keys, positions, len(record_keys), cap)


def pairs_sharing(
    keys: np.ndarray, positions: np.ndarray, count: int, cap: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """candidate_pairs of `count` records whose keys come as arrays: entry n files the record at
    `positions[n]` under `keys[n]`."""
    everyone = np.arange(count)
    codes, uniques = pd.factorize(np.asarray(keys, dtype=np.int64))
    later, earlier, oversized = block_pairs(codes, uniques, positions, everyone, np.ones(count, bool), cap)
    order = np.lexsort((later, earlier))
    return earlier[order], later[order], oversized


def pass_range(pass_name: str) -> tuple[int, int]:
    """The keys of one pass: from the lowest to just above the highest."""
    return _PASS_PREFIX[pass_name], _PASS_PREFIX[pass_name] + (1 << HASH_BITS)
