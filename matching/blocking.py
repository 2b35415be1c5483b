"""Blocking: the keys under which a record is filed, so candidates are one indexed query away.

Several independent passes, so that a typo in one field does not hide a true match: a
candidate only has to share one key. Keys hold no readable PHI: values are hashed.
"""

import hashlib

import numpy as np
import pandas as pd

# The passes, named in the key so an oversized block can be reported by pass.
PASSES = (
    "ssn",  # full valid SSN
    "ssn_part",  # the last four digits and the rest apart: one mistyped digit leaves one part intact
    "phone",  # any phone, E.164
    "email",
    "dob",  # birth date with day and month in sorted order: also finds day/month transpositions
    "fam_year",  # phonetic family name + birth year
    "fam_given",  # phonetic family name + nickname root of the given name (birth date typos)
    "given_postal",  # phonetic given name + postal code (family name changes)
    "addr",  # street line + postal code (household, with the name comparison deciding)
    "house_postal",  # house number + postal code (a misspelt street name)
)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _dob_sorted(birth_date: str) -> str:
    if len(birth_date) != 8:
        return ""
    month, day = birth_date[4:6], birth_date[6:8]
    return birth_date[:4] + min(month, day) + max(month, day)


def given_root(norm: dict) -> str:
    """One stable representative of the given name's nickname group (the first formal name)."""
    group = norm.get("given_group") or []
    return group[0] if group else ""


def blocking_keys(norm: dict) -> list[str]:
    values: dict[str, list[str]] = {
        "ssn": [norm["ssn"]] if norm.get("ssn") else [],
        "ssn_part": [f"first:{norm['ssn'][:-4]}", f"last:{norm['ssn'][-4:]}"] if norm.get("ssn") else [],
        "phone": list(norm.get("phones") or []),
        "email": [norm["email"]] if norm.get("email") else [],
        "dob": [_dob_sorted(norm.get("birth_date", ""))],
        "fam_year": [],
        "fam_given": [],
        "given_postal": [],
        "addr": [],
        "house_postal": [],
    }
    year = norm.get("birth_date", "")[:4]
    family_codes = [code for code in (norm.get("family_sx"), norm.get("family_sx_last")) if code]
    for code in family_codes:
        if year:
            values["fam_year"].append(f"{code}|{year}")
        group = norm.get("given_group") or []
        for name in group:
            values["fam_given"].append(f"{code}|{name}")
    if norm.get("given_sx") and norm.get("postal"):
        values["given_postal"].append(f"{norm['given_sx']}|{norm['postal']}")
    if norm.get("address") and norm.get("postal"):
        values["addr"].append(f"{norm['address']}|{norm['postal']}")
        house = norm["address"].split(" ", 1)[0]
        if house.isdigit():
            values["house_postal"].append(f"{house}|{norm['postal']}")
    keys = {key_for(name, value) for name, items in values.items() for value in items if value}
    return sorted(keys)


def key_for(pass_name: str, value: str) -> str:
    """The key one pass files a normalised value under (exact look-ups such as a phone search use it)."""
    return f"{pass_name}:{_digest(value)}"


def pass_of(key: str) -> str:
    return key.split(":", 1)[0]


def candidate_pairs(record_keys: list[list[str]], cap: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """All pairs (i < j) of records, by position, that share a blocking key, without repeats.

    Blocks larger than `cap` are skipped; returns the largest skipped block per pass.
    """
    positions = np.repeat(np.arange(len(record_keys)), [len(keys) for keys in record_keys])
    keys = pd.Series([key for keys in record_keys for key in keys], dtype="string")
    frame = pd.DataFrame({"key": pd.factorize(keys)[0], "position": positions})
    sizes = frame.groupby("key")["position"].transform("size")
    oversized: dict[str, int] = {}
    if (sizes > cap).any():
        for key, size in zip(keys[(sizes > cap).to_numpy()], sizes[sizes > cap], strict=True):
            oversized[pass_of(key)] = max(oversized.get(pass_of(key), 0), int(size))
    frame = frame[(sizes > 1) & (sizes <= cap)]
    pairs = frame.merge(frame, on="key", suffixes=("_l", "_r"))
    pairs = pairs[pairs["position_l"] < pairs["position_r"]]
    unique = np.unique(pairs[["position_l", "position_r"]].to_numpy(dtype=np.int64), axis=0)
    if not len(unique):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), oversized
    return unique[:, 0], unique[:, 1], oversized
