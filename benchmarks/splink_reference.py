"""The reference: Splink (DuckDB backend) deduplicating the same CSV that dedupe_csv reads.

Runs in its own virtual environment (see benchmarks/README.md), reads the dedupe_csv input
format and writes org_id,local_id,person_id per threshold. A fair configuration: name
comparisons with term-frequency adjustments, Splink's date-of-birth comparison, EM training
in two sessions, u from random sampling, and the same blocking passes as the node uses.

    python splink_reference.py IN.csv OUT_PREFIX --thresholds 0.5 0.8 0.9 0.95 0.99
"""

import argparse
import json
import resource
import time

import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def prepare(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["unique_id"] = frame["org_id"] + "|" + frame["local_id"]
    for column in ("given_name", "middle_name", "family_name", "city", "address_line", "email", "suffix", "sex"):
        frame[column] = frame[column].str.strip().str.lower()
    for column in ("ssn", "phone"):
        frame[column] = frame[column].str.replace(r"\D", "", regex=True)
    frame["birth_year"] = frame["birth_date"].str[:4]
    frame = frame.replace("", None)
    return frame


def build_settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("family_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.DamerauLevenshteinAtThresholds("ssn", [1]),
            cl.ExactMatch("phone"),
            cl.EmailComparison("email"),
            cl.JaroWinklerAtThresholds("address_line", [0.9, 0.8]),
            cl.ExactMatch("postal_code").configure(term_frequency_adjustments=True),
            cl.ExactMatch("city"),
            cl.ExactMatch("sex"),
            cl.ExactMatch("middle_name"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("ssn"),
            block_on("phone"),
            block_on("email"),
            block_on("birth_date"),
            block_on("family_name", "birth_year"),
            block_on("family_name", "given_name"),
            block_on("given_name", "postal_code"),
            block_on("address_line", "postal_code"),
        ],
        retain_intermediate_calculation_columns=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("out_prefix")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.95])
    args = parser.parse_args()

    started = time.monotonic()
    frame = prepare(args.input)
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(frame), build_settings())
    linker.training.estimate_probability_two_random_records_match(
        [block_on("ssn", "birth_date"), block_on("given_name", "family_name", "birth_date")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("family_name", "given_name"))
    predictions = linker.inference.predict(threshold_match_probability=min(args.thresholds))
    timings = {"train_and_predict": time.monotonic() - started}
    for threshold in args.thresholds:
        mark = time.monotonic()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        ).as_pandas_dataframe()
        timings[f"cluster_{threshold}"] = time.monotonic() - mark
        out = frame[["org_id", "local_id", "unique_id"]].merge(
            clusters[["unique_id", "cluster_id"]], on="unique_id", how="left"
        )
        out.rename(columns={"cluster_id": "person_id"})[["org_id", "local_id", "person_id"]].to_csv(
            f"{args.out_prefix}.{threshold}.csv", index=False
        )
    first = f"cluster_{args.thresholds[0]}"
    print(json.dumps({
        "seconds_to_first_clustering": timings["train_and_predict"] + timings[first],
        "timings": timings,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "records": len(frame),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
