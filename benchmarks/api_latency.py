"""Latency and throughput of PIXm ($ihe-pix) and $match through the real server, on PostgreSQL.

    .venv/bin/python benchmarks/api_latency.py [--sizes 100000 1000000] [--requests 1000]

Builds one PostgreSQL database and grows it: synthetic registrations (matching/synthetic.py)
are loaded in chunks through `manage.py dedupe_csv` (bulk registration, training once, batch
matching), and each time the index reaches a size in --sizes the node is served by gunicorn
(two sync workers, as on this two-core machine) and measured over HTTP with a real OAuth2
token: sequential requests for p50/p95/p99 latency, then four concurrent clients for
throughput. The table replaces the "Member API" section of docs/benchmarks.md.
"""

import argparse
import csv
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import Server, machine, replace_section  # noqa: E402

DATABASE = "hie_bench_api"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
PORT = 8765
CHUNK_PEOPLE = 140_000  # about 200,000 records per dedupe_csv run
RECORDS_PER_PERSON = 1.47  # what the synthetic population averages
COLUMNS = ["org_id", "local_id", "given_name", "middle_name", "family_name", "suffix", "sex", "birth_date", "ssn",
           "phone", "email", "address_line", "city", "state", "postal_code"]  # fmt: skip


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qAtc", sql], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def node_env() -> dict:
    return {**os.environ, "DATABASE_URL": DATABASE_URL, "LOG_LEVEL": "WARNING", "FHIR_RATE_LIMIT": "0",
            "ACCESS_TOKEN_EXPIRE_SECONDS": "36000", "ALLOWED_HOSTS": "127.0.0.1,localhost"}  # fmt: skip


def manage(*args: str, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], env=node_env(), cwd=ROOT, check=True,
                          capture_output=capture, text=True)  # fmt: skip
    return done.stdout if capture else ""


def record_count() -> int:
    return int(psql("SELECT count(*) FROM matching_patientrecord", DATABASE).strip())


def load_chunk(chunk: int, people: int, work: Path) -> float:
    """Generate one chunk of new people and load it; returns seconds taken."""
    from matching.synthetic import generate

    population = generate(people, seed=1000 + chunk)
    path = work / f"chunk{chunk}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in population.rows:
            writer.writerow({**row, "local_id": f"C{chunk}-{row['local_id']}"})
    started = time.monotonic()
    options = [] if chunk == 0 else ["--no-train"]
    manage("dedupe_csv", str(path), "--out", str(work / "out.csv"), *options)
    path.unlink()
    return time.monotonic() - started


def samples(count: int) -> list[dict]:
    """Random registered records: their identifier (for PIX) and demographics (for $match)."""
    sql = (
        "SELECT json_agg(r) FROM (SELECT identifier_system, local_id, given_name, family_name, sex, birth_date, "  # noqa: S608 - only an int is interpolated
        "phones, address_line, city, state, postal_code FROM matching_patientrecord ORDER BY random() "
        f"LIMIT {int(count)}) r"
    )
    return json.loads(psql(sql, DATABASE).strip())


def patient_of(row: dict, rng: random.Random) -> dict:
    resource = {"resourceType": "Patient", "name": [{"family": row["family_name"], "given": [row["given_name"]]}],
                "gender": row["sex"], "birthDate": row["birth_date"],
                "address": [{"line": [row["address_line"]], "city": row["city"], "state": row["state"],
                             "postalCode": row["postal_code"]}]}  # fmt: skip
    if row["phones"] and rng.random() < 0.5:
        resource["telecom"] = [{"system": "phone", "value": row["phones"][0]}]
    return resource


def token() -> str:
    issued = json.loads(manage("create_member", f"Bench {time.time_ns()}", "--identifier-system",
                               f"urn:oid:2.999.{time.time_ns()}", "--scopes", "system/Patient.read",
                               capture=True).strip().splitlines()[-1])  # fmt: skip
    answer = requests.post(f"http://127.0.0.1:{PORT}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(issued["client_id"], issued["client_secret"]), timeout=30)  # fmt: skip
    answer.raise_for_status()
    return answer.json()["access_token"]


def measure(send, bodies: list, clients: int) -> tuple[list[float], float, int]:
    """Latencies in ms (sequential when clients == 1) and requests per second."""
    latencies: list[float] = []
    errors = 0

    def one(body: object) -> None:
        nonlocal errors
        start = time.perf_counter()
        status = send(body)
        latencies.append((time.perf_counter() - start) * 1000)
        errors += status >= 400 and status != 404

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    return latencies, len(bodies) / (time.perf_counter() - started), errors


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[int(share * 100) - 1]


def measure_size(size: int, count: int) -> dict:
    rng = random.Random(size)  # noqa: S311 - varies the queries, not a secret
    rows = samples(count)
    with Server(node_env(), PORT):
        headers = {"Authorization": f"Bearer {token()}", "X-Purpose-Of-Use": "TREAT",
                   "Content-Type": "application/fhir+json"}  # fmt: skip
        local = threading.local()

        def call(method: str, path: str, body: bytes | None = None) -> int:
            # One keep-alive connection per client thread, with the standard library's lean client.
            if not hasattr(local, "connection"):
                local.connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            local.connection.request(method, path, body=body, headers=headers)
            response = local.connection.getresponse()
            response.read()
            return response.status

        def pix(row: dict) -> int:
            query = urlencode({"sourceIdentifier": f"{row['identifier_system']}|{row['local_id']}"})
            return call("GET", f"/fhir/Patient/$ihe-pix?{query}")

        def match(row: dict) -> int:
            body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient_of(row, rng)}]}
            return call("POST", "/fhir/Patient/$match", json.dumps(body).encode())

        results = {"size": size}
        for name, send in (("pix", pix), ("match", match)):
            measure(send, rows[:50], 1)  # warm-up
            latencies, _, errors = measure(send, rows, 1)
            _, throughput, errors_concurrent = measure(send, rows, 4)
            results[name] = {
                "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                "p99": percentile(latencies, 0.99), "throughput": throughput,
                "errors": errors + errors_concurrent, "requests": len(rows),
            }  # fmt: skip
    return results


def write_report(args: argparse.Namespace, results: list[dict], load_seconds: float) -> None:
    lines = [
        "## Member API: PIXm and $match latency",
        "",
        f"Command: `.venv/bin/python benchmarks/api_latency.py --sizes {' '.join(map(str, args.sizes))} "
        f"--requests {args.requests}`  ",
        f"Machine: {machine()}. Run on {time.strftime('%Y-%m-%d')}. PostgreSQL 15; gunicorn with two workers of four threads; "
        "the client on the same machine, over HTTP with an OAuth2 bearer token and X-Purpose-Of-Use, every request "
        f"audited. Index built with `dedupe_csv` from the synthetic population ({load_seconds:.0f} s to load and "
        "match in this run; 0 with --keep). Latency: sequential requests for records sampled at random; throughput: four concurrent "
        "clients. No peer system runs on this machine (HAPI FHIR MDM and OpenCR need their own server builds, "
        "which cannot be fetched here), so no ratio is given.",
        "",
        "| records in the index | PIX p50 / p95 / p99 ms | PIX req/s | $match p50 / p95 / p99 ms | $match req/s "
        "| target p95 (PIX < 10, $match < 50) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pix, match = r["pix"], r["match"]
        met = "met" if pix["p95"] < 10 and match["p95"] < 50 else "not met"
        lines.append(
            f"| {r['records']:,} | {pix['p50']:.1f} / {pix['p95']:.1f} / {pix['p99']:.1f} | {pix['throughput']:.0f} "
            f"| {match['p50']:.1f} / {match['p95']:.1f} / {match['p99']:.1f} | {match['throughput']:.0f} | {met} "
            f"| {pix['errors'] + match['errors']} |"
        )
    section = "\n".join(lines) + "\n"
    replace_section("## Member API", section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="reuse the database of an earlier run")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
    os.environ.setdefault("HIE_DATA_DIR", tempfile.mkdtemp(prefix="hie-bench-settings-"))
    import django

    django.setup()
    if not args.keep:
        psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        psql(f"CREATE DATABASE {DATABASE}")
    manage("migrate", "-v0")
    results, load_seconds, chunk = [], 0.0, 0
    with tempfile.TemporaryDirectory(prefix="hie-bench-api-") as work:
        for size in sorted(args.sizes):
            while (have := record_count()) < size:
                people = min(CHUNK_PEOPLE, int((size - have) / RECORDS_PER_PERSON) + 1)
                load_seconds += load_chunk(chunk, people, Path(work))
                chunk += 1
                print(f"loaded chunk {chunk}: {record_count():,} records", file=sys.stderr)
            result = measure_size(size, args.requests)
            result["records"] = record_count()
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
    write_report(args, results, load_seconds)


if __name__ == "__main__":
    main()
