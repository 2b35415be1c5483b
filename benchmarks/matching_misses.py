"""Which rule kept each true pair apart: the pairs the node leaves in two persons, counted by rule.

    .venv/bin/python benchmarks/matching_misses.py [--datasets febrl3 febrl4 pseudopeople]

Deduplicates each dataset with `manage.py dedupe_csv` on a fresh embedded database, then scores
every true pair the node left in two persons again with the trained model and counts them by the
registrar rules that applied ("none" when the pair itself scores high and its records sit in two
persons because another record of their cluster was kept apart). A true pair that shares no
blocking key is counted as "not blocked". Prints one JSON line per dataset.
"""

import argparse
import csv
import itertools
import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["febrl3", "febrl4"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hie-misses-"))
    os.environ.pop("DATABASE_URL", None)
    os.environ["HIE_DATA_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
    import django

    django.setup()
    for name in args.datasets:
        print(json.dumps({"dataset": name, **misses(name, work)}))


def misses(name: str, work: Path) -> dict:
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.matching_accuracy import HEADER, dataset, loadable
    from matching.compare import RecordTable
    from matching.models import PatientRecord
    from matching.selectors import active_scorer

    connection.close()
    database = Path(connection.settings_dict["NAME"])
    database.unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    pseudopeople = argparse.Namespace(pseudopeople_python=str(ROOT / ".pseudopeople-venv" / "bin" / "python"))
    rows, _, _ = dataset(name, work, pseudopeople)
    rows, _ = loadable(rows)
    source, out = work / f"{name}.csv", work / f"{name}.out.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HEADER, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    call_command("dedupe_csv", str(source), "--out", str(out))
    with open(out) as handle:
        person = {(r["org_id"], r["local_id"]): r["person_id"] for r in csv.DictReader(handle)}
    clusters = defaultdict(list)
    for row in rows:
        clusters[str(row["true_person"])].append((row["org_id"], str(row["local_id"])))
    apart = [(a, b) for members in clusters.values() for a, b in itertools.combinations(members, 2)
             if person[a] != person[b]]  # fmt: skip
    records = {(r.organization.name, r.local_id): r for r in PatientRecord.objects.select_related("organization")}
    scorer = active_scorer()
    by_rule: Counter = Counter()
    for a, b in apart:
        norms = [records[a].norm, records[b].norm]
        if not set(records[a].blocking_keys.values_list("key", flat=True)) & set(
            records[b].blocking_keys.values_list("key", flat=True)
        ):
            by_rule["not blocked"] += 1
            continue
        scored = scorer.score(RecordTable(norms), np.array([0]), np.array([1]))
        by_rule[" + ".join(scored.rules_of(0)) or "none"] += 1
    true_pairs = sum(len(m) * (len(m) - 1) // 2 for m in clusters.values())
    return {"true_pairs": true_pairs, "apart": len(apart), "by_rule": dict(by_rule.most_common())}


if __name__ == "__main__":
    main()
