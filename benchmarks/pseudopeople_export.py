"""pseudopeople's simulated population as the input of `manage.py dedupe_csv`, with its truth.

Runs in a virtual environment of its own (benchmarks/requirements-pseudopeople.txt: its pins
differ from the node's). It generates the seven data sets of one year from the sample
population the package ships (offline) and writes them as seven member organizations, each
with only the fields that kind of source has:

| organization | fields |
| --- | --- |
| census, acs, cps, wic | names, birth date, sex, address |
| ssa (social security) | SSN, names (full middle name), birth date, sex |
| w2 (W-2 and 1099), f1040 (the 1040's filer) | SSN, names, mailing address; no birth date |

`true_person` is the row's `simulant_id`. Values are written as the data set has them (a date
of birth that does not exist, such as month 17, stays as written): what a node is sent.
Beside the CSV, OUT.special.json lists the twin and father/son pairs of simulants, read from
the census without noise (same household; twins: the same birth date; father and son: two
males, one the other's parent by the census relationship, birth years 15 to 50 apart).

    .pseudopeople-venv/bin/python benchmarks/pseudopeople_export.py OUT.csv [--noise 2] [--seed 0]
"""

import argparse
import csv
import json
import math
import re

import pandas as pd
import pseudopeople as psp

HEADER = ["org_id", "local_id", "given_name", "middle_name", "family_name", "suffix", "sex", "birth_date", "ssn",
          "phone", "email", "address_line", "city", "state", "postal_code", "true_person"]  # fmt: skip

# (organization, generator, birth date format, address column prefix, has SSN, has birth date and sex)
SOURCES = (
    ("census", psp.generate_decennial_census, "mdy/", "", False, True),
    ("acs", psp.generate_american_community_survey, "mdy/", "", False, True),
    ("cps", psp.generate_current_population_survey, "mdy/", "", False, True),
    ("wic", psp.generate_women_infants_and_children, "mdy", "", False, True),
    ("ssa", psp.generate_social_security, "ymd", None, True, True),
    ("w2", psp.generate_taxes_w2_and_1099, None, "mailing_address_", True, False),
    ("f1040", psp.generate_taxes_1040, None, "mailing_address_", True, False),
)
DATASET_OF = {
    "census": "decennial_census", "acs": "american_community_survey", "cps": "current_population_survey",
    "wic": "women_infants_and_children", "ssa": "social_security", "w2": "taxes_w2_and_1099", "f1040": "taxes_1040",
}  # fmt: skip
PARENT_OF_REFERENCE = "Parent"
CHILDREN = ("Biological child", "Adopted child", "Stepchild")
REFERENCE_SIDE = ("Reference person", "Opposite-sex spouse", "Same-sex spouse", "Opposite-sex unmarried partner",
                  "Same-sex unmarried partner")  # fmt: skip


def scaled(config: dict, factor: float) -> dict:
    """The configuration with every row- and cell-level noise probability times `factor` (at most 1)."""
    if isinstance(config, dict):
        return {
            key: min(value * factor, 1.0)
            if isinstance(value, (int, float)) and str(key).endswith("probability") and key != "token_probability"
            else scaled(value, factor)
            for key, value in config.items()
        }
    return config


def text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def iso_date(raw: str, layout: str) -> str:
    """The data set's date as YYYY-MM-DD, digits kept as written; "" when it is not eight digits."""
    digits = re.sub(r"\D", "", raw) if layout == "mdy/" else raw
    if layout == "mdy/" and "/" in raw:
        parts = raw.split("/")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            digits = parts[0].zfill(2) + parts[1].zfill(2) + parts[2]
    if len(digits) != 8 or not digits.isdigit():
        return ""
    if layout.startswith("mdy"):
        return f"{digits[4:]}-{digits[:2]}-{digits[2:4]}"
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def rows_of(org: str, frame: pd.DataFrame, layout: str | None, prefix: str | None, ssn: bool, born: bool) -> list:
    rows = []
    for n, r in enumerate(frame.to_dict("records")):
        row = {
            "org_id": org, "local_id": f"{org}-{n}", "given_name": text(r.get("first_name")),
            "middle_name": text(r.get("middle_name") or r.get("middle_initial")), "family_name": text(r.get("last_name")),
            "true_person": text(r["simulant_id"]),
        }  # fmt: skip
        if ssn:
            row["ssn"] = text(r.get("ssn"))
        if born:
            row["birth_date"] = iso_date(text(r.get("date_of_birth")), layout)
            row["sex"] = text(r.get("sex")).lower()
        if prefix is not None:
            street = " ".join(
                v for v in (text(r.get(f"{prefix}street_number")), text(r.get(f"{prefix}street_name")),
                            text(r.get(f"{prefix}unit_number"))) if v
            )  # fmt: skip
            box = text(r.get(f"{prefix}po_box"))
            row["address_line"] = street or (f"PO Box {box}" if box else "")
            row["city"] = text(r.get(f"{prefix}city"))
            row["state"] = text(r.get(f"{prefix}state"))
            row["postal_code"] = text(r.get(f"{prefix}zipcode"))
        rows.append(row)
    return rows


def special_pairs(seed: int) -> tuple[list, list]:
    """Twin and father/son pairs of simulant ids, from the census without noise."""
    census = psp.generate_decennial_census(seed=seed, config=psp.NO_NOISE)
    census["year_of_birth"] = pd.to_datetime(census["date_of_birth"], format="%m/%d/%Y", errors="coerce").dt.year
    twins, generations = set(), set()
    for _, household in census.groupby("household_id"):
        members = household.to_dict("records")
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                pair = tuple(sorted((a["simulant_id"], b["simulant_id"])))
                if a["date_of_birth"] == b["date_of_birth"]:
                    twins.add(pair)
                    continue
                if not (a["sex"] == b["sex"] == "Male"):
                    continue
                gap = abs((a["year_of_birth"] or 0) - (b["year_of_birth"] or 0))
                roles = {a["relationship_to_reference_person"], b["relationship_to_reference_person"]}
                parent_and_child = (roles & set(REFERENCE_SIDE) and roles & set(CHILDREN)) or (
                    "Reference person" in roles and PARENT_OF_REFERENCE in roles
                )
                if parent_and_child and 15 <= gap <= 50:
                    generations.add(pair)
    return sorted(twins), sorted(generations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--noise", type=float, default=1.0, help="scale of row- and cell-level noise (2: doubled)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = scaled(psp.get_config(), args.noise) if args.noise != 1.0 else None
    rows = []
    for org, generate, layout, prefix, ssn, born in SOURCES:
        frame = generate(seed=args.seed, config=config and {DATASET_OF[org]: config[DATASET_OF[org]]})
        rows += rows_of(org, frame, layout, prefix, ssn, born)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HEADER, restval="")
        writer.writeheader()
        writer.writerows(rows)
    twins, generations = special_pairs(args.seed)
    with open(f"{args.out}.special.json", "w") as handle:
        json.dump({"twin_pairs": twins, "generation_pairs": generations}, handle)
    print(json.dumps({"records": len(rows), "twin_pairs": len(twins), "generation_pairs": len(generations)}))


if __name__ == "__main__":
    main()
