"""Find-documents (MHD ITI-67) latency through the real server, on PostgreSQL.

    .venv/bin/python benchmarks/document_find.py [--persons 200000] [--documents 1000000] [--requests 1000] [--keep]

Builds a PostgreSQL database with --persons enterprise persons, each registered at one to three
of three members (records confirmed as the person), and --documents locator entries spread over
those records, about a tenth of them with a sensitive security label, and a patient opt-out for
one person in twenty. The rows are written with set-based SQL: this measures the locator, not
matching (benchmarks/matching_accuracy.py and api_latency.py measure that). The node is served by
gunicorn (two workers of four threads) and asked over HTTP, with a real OAuth2 token and purpose
of use, for the current documents of records sampled at random, by one member's identifier:
sequential requests for p50/p95/p99, then four concurrent clients for throughput. Every request
goes through consent.decide() per custodian and label and is audited. The table replaces the
"Record locator" section of docs/benchmarks.md.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.api_latency import measure, percentile  # noqa: E402
from benchmarks.report import Server, machine, replace_section  # noqa: E402

DATABASE = "hie_bench_docs"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
PORT = 8766
MEMBERS = 3


def psql(sql: str, database: str = DATABASE) -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                           "-qAtc", sql], check=True, capture_output=True, text=True).stdout  # fmt: skip


def node_env() -> dict:
    return {**os.environ, "DATABASE_URL": DATABASE_URL, "LOG_LEVEL": "WARNING", "FHIR_RATE_LIMIT": "0",
            "ACCESS_TOKEN_EXPIRE_SECONDS": "36000", "ALLOWED_HOSTS": "127.0.0.1,localhost"}  # fmt: skip


def manage(*args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], env=node_env(), cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def build(persons: int, documents: int) -> tuple[float, list[dict]]:
    """Members, persons, records, links, documents and some opt-outs; returns seconds and the members' clients."""
    started = time.monotonic()
    clients = []
    for m in range(MEMBERS):
        out = manage("create_member", f"Member {m}", "--identifier-system", f"urn:oid:2.999.{m}",
                     "--scopes", "system/DocumentReference.read", "system/DocumentReference.write")  # fmt: skip
        clients.append(json.loads(out.strip().splitlines()[-1]))
    organizations = psql("SELECT string_agg(id::text, ',' ORDER BY name) FROM orgs_organization").strip()
    psql(f"""
        CREATE TEMP TABLE org AS SELECT (string_to_array('{organizations}', ','))[i]::int AS id, i - 1 AS n
            FROM generate_series(1, {MEMBERS}) i;
        INSERT INTO matching_person (euid, status, golden, created_at, updated_at)
            SELECT 'E' || upper(substr(md5(p::text), 1, 12)), 'active', '{{}}', now(), now()
            FROM generate_series(1, {persons}) p;
        -- Each person at members 0..k-1 (k = 1, 2 or 3, 1.5 on average).
        INSERT INTO matching_patientrecord (organization_id, identifier_system, local_id, given_name, middle_name,
                family_name, suffix, previous_family_names, sex, ssn, phones, email, address_line, city, state,
                postal_code, norm, source, version, active, created_at, updated_at)
            SELECT org.id, 'urn:oid:2.999.' || org.n, 'P' || p.id, '', '', '', '', '[]', 'unknown', '', '[]', '', '',
                   '', '', '', '{{}}', 'csv', 1, true, now(), now()
            FROM matching_person p JOIN org ON org.n < 1 + (p.id % 4 = 0)::int + (p.id % 4 = 1)::int * 2;
        INSERT INTO matching_link (record_id, person_id, state, source, contributions, updated_at)
            SELECT r.id, substr(r.local_id, 2)::int, 'match', 'auto', '{{}}', now() FROM matching_patientrecord r;
        -- Documents over the records, a tenth of them labelled PSY (released only on an explicit permit).
        INSERT INTO locator_documententry (custodian_id, record_id, master_system, master_value, submission_set,
                status, type_code, categories, date, author_given, author_family, facility, events, setting, format,
                security_labels, related, content_type, size, sha1, sha256, url, stored, prefetched, title, resource,
                version, created_at, updated_at)
            SELECT r.organization_id, r.id, 'urn:ietf:rfc:3986', 'urn:uuid:' || d, '', 'current',
                   'http://loinc.org|' || (ARRAY['18842-5','11506-3','11502-2','34133-9'])[1 + d % 4], '[]',
                   now() - (d % 900) * interval '1 day', '[]', '[]', '', '[]', '', '',
                   CASE WHEN d % 10 = 0 THEN '["PSY"]' ELSE '[]' END::jsonb, '[]', 'application/pdf', 1000, '', '',
                   '', 'documents/' || d, '', 'Document ' || d,
                   jsonb_build_object('resourceType', 'DocumentReference', 'status', 'current',
                       'masterIdentifier', jsonb_build_object('system', 'urn:ietf:rfc:3986', 'value', 'urn:uuid:' || d),
                       'subject', jsonb_build_object('identifier', jsonb_build_object('system', r.identifier_system,
                                                                                      'value', r.local_id)),
                       'content', jsonb_build_array(jsonb_build_object('attachment',
                           jsonb_build_object('contentType', 'application/pdf')))),
                   1, now(), now()
            FROM generate_series(1, {documents}) d
            JOIN matching_patientrecord r ON r.id = 1 + (hashint4(d) & 2147483647) % (SELECT max(id) FROM matching_patientrecord);
        -- One person in twenty opted out (a deny under their EUID).
        INSERT INTO consent_consent (patient_system, patient_value, status, policy_rule, date_recorded, source,
                attachment, provision, version, updated_at)
            SELECT 'https://hie.example.org/fhir/sid/euid', euid, 'active', 'OPTOUT', now() - interval '1 day',
                   'verbal', '', '{{"type": "deny", "actors": [], "purposes": [], "labels": [], "period": null,
                   "data_period": null, "provisions": []}}', 1, now()
            FROM matching_person WHERE id % 20 = 0;
        ANALYZE;
    """)  # noqa: S608 - numbers and ids this script made
    return time.monotonic() - started, clients


def samples(count: int) -> list[dict]:
    sql = (
        "SELECT json_agg(r) FROM (SELECT identifier_system, local_id FROM matching_patientrecord "  # noqa: S608
        f"WHERE identifier_system = 'urn:oid:2.999.0' ORDER BY random() LIMIT {int(count)}) r"
    )
    return json.loads(psql(sql).strip())


def measure_find(client: dict, count: int) -> dict:
    rows = samples(count)
    with Server(node_env(), PORT):
        answer = requests.post(f"http://127.0.0.1:{PORT}/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(client["client_id"], client["client_secret"]), timeout=30)  # fmt: skip
        answer.raise_for_status()
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Purpose-Of-Use": "TREAT"}
        local = threading.local()
        found = []

        def find(row: dict) -> int:
            if not hasattr(local, "connection"):
                local.connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            query = urlencode({"patient.identifier": f"{row['identifier_system']}|{row['local_id']}",
                               "status": "current"})  # fmt: skip
            local.connection.request("GET", f"/fhir/DocumentReference?{query}", headers=headers)
            response = local.connection.getresponse()
            body = response.read()
            if response.status == 200:
                found.append(json.loads(body)["total"])
            return response.status

        measure(find, rows[:50], 1)  # warm-up
        latencies, _, errors = measure(find, rows, 1)
        _, throughput, errors_concurrent = measure(find, rows, 4)
    return {
        "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
        "throughput": throughput, "errors": errors + errors_concurrent, "requests": len(rows),
        "documents_per_answer": sum(found) / max(len(found), 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="reuse the database of an earlier run")
    args = parser.parse_args()
    os.environ.setdefault("HIE_DATA_DIR", tempfile.mkdtemp(prefix="hie-bench-settings-"))
    build_seconds, clients = 0.0, []
    if not args.keep:
        psql(f"DROP DATABASE IF EXISTS {DATABASE}", "postgres")
        psql(f"CREATE DATABASE {DATABASE}", "postgres")
        manage("migrate", "-v0")
        build_seconds, clients = build(args.persons, args.documents)
        (Path(tempfile.gettempdir()) / "hie-bench-docs-clients.json").write_text(json.dumps(clients))
    else:
        clients = json.loads((Path(tempfile.gettempdir()) / "hie-bench-docs-clients.json").read_text())
    counts = psql("SELECT (SELECT count(*) FROM matching_person) || ',' || (SELECT count(*) FROM "
                  "matching_patientrecord) || ',' || (SELECT count(*) FROM locator_documententry)").strip()  # fmt: skip
    persons, records, documents = (int(v) for v in counts.split(","))
    result = measure_find(clients[0], args.requests)
    met = "met" if result["p95"] < 30 else "not met"
    section = "\n".join([
        "## Record locator: find documents (MHD ITI-67)",
        "",
        f"Command: `.venv/bin/python benchmarks/document_find.py --persons {args.persons} --documents {args.documents} "
        f"--requests {args.requests}`  ",
        f"Machine: {machine()}. Run on {time.strftime('%Y-%m-%d')}. PostgreSQL 15; gunicorn with two workers of four "
        f"threads; the client on the same machine over HTTP with an OAuth2 bearer token and X-Purpose-Of-Use TREAT. "
        f"Index: {persons:,} persons, {records:,} records at {MEMBERS} members, {documents:,} document entries "
        f"(a tenth labelled PSY), one person in twenty opted out; written with SQL in {build_seconds:.0f} s "
        "(0 with --keep). Each request names one member's identifier; the node resolves the person, reads the "
        "documents of all their records, runs consent.decide() per custodian and label, audits, and answers a "
        f"searchset Bundle (on average {result['documents_per_answer']:.1f} documents). Latency: sequential requests "
        "for records sampled at random; throughput: four concurrent clients. No peer registry runs on this machine "
        "(an XDS/MHD registry such as OpenHIM's mediators needs a server build that cannot be fetched here), so no "
        "ratio is given. Gather-job throughput against loopback custodians is not measured yet.",
        "",
        "| document entries | p50 / p95 / p99 ms | req/s (4 clients) | target p95 < 30 ms | errors |",
        "|---|---|---|---|---|",
        f"| {documents:,} | {result['p50']:.1f} / {result['p95']:.1f} / {result['p99']:.1f} | "
        f"{result['throughput']:.0f} | {met} | {result['errors']} |",
        "",
    ])  # fmt: skip
    replace_section("## Record locator", section)
    print(section)


if __name__ == "__main__":
    main()
