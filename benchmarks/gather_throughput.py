"""Gather-job throughput against loopback custodians, with real Celery workers, on PostgreSQL.

    .venv/bin/python benchmarks/gather_throughput.py [--custodians 10] [--persons 200] [--documents 5] [--concurrency 4]

Starts --custodians small FHIR servers on loopback (each answers the node's client-credentials
token request and ITI-67 searches with --documents DocumentReferences per patient, by
reference), registers them as members with their endpoints and the node's credentials there,
and writes --persons persons held by every custodian and by one requesting member (set-based
SQL: this measures the exchange, not matching). A Celery worker (prefork, --concurrency
processes) on Redis does the work. The script starts one gather job per person through the
same service as Patient/$gather-documents and measures the time until every job has ended:
jobs and custodian calls per second, and documents indexed. The table replaces the "Document
exchange" section of docs/benchmarks.md.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, replace_section  # noqa: E402

DATABASE = "hie_bench_gather"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
BROKER = "redis://127.0.0.1:6379/3"
CONTENT = b"%PDF-1.7 benchmark document"


def psql(sql: str, database: str = DATABASE) -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                           "-qAtc", sql], check=True, capture_output=True, text=True).stdout  # fmt: skip


def node_env() -> dict:
    return {**os.environ, "DATABASE_URL": DATABASE_URL, "CELERY_BROKER_URL": BROKER, "LOG_LEVEL": "WARNING",
            "HIE_DATA_DIR": os.environ["HIE_DATA_DIR"]}  # fmt: skip


def custodian_server(documents: int) -> ThreadingHTTPServer:
    """A member's FHIR server: a token for anyone with the benchmark's credentials, and N documents per patient."""
    sha1 = base64.b64encode(hashlib.sha1(CONTENT, usedforsecurity=False).digest()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(b'{"access_token": "bench", "token_type": "Bearer", "expires_in": 3600}')

        def do_GET(self) -> None:
            value = parse_qs(urlparse(self.path).query)["patient.identifier"][0].split("|", 1)[1]
            base = f"http://127.0.0.1:{self.server.server_address[1]}/r4"
            entries = [{"resource": {
                "resourceType": "DocumentReference", "status": "current",
                "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{base}-{value}-{n}"},
                "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
                "subject": {"reference": f"Patient/{value}"}, "date": "2026-11-01T10:00:00Z",
                "content": [{"attachment": {"contentType": "application/pdf", "url": f"{base}/Binary/{value}-{n}",
                                            "size": len(CONTENT), "hash": sha1}}],
            }} for n in range(documents)]  # fmt: skip
            self._send(json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def build(custodians: list[ThreadingHTTPServer], persons: int) -> None:
    manage = [sys.executable, "manage.py"]
    run = {"env": {**node_env(), "CUSTODIAN_CLIENT_SECRET": "bench-secret"}, "cwd": ROOT, "check": True,
           "capture_output": True}  # fmt: skip
    subprocess.run([*manage, "create_member", "Requester", "--identifier-system", "urn:oid:2.998.0"], **run)
    for n, server in enumerate(custodians, start=1):
        port = server.server_address[1]
        subprocess.run([*manage, "create_member", f"Custodian {n}", "--identifier-system", f"urn:oid:2.998.{n}"],
                       **run)  # fmt: skip
        subprocess.run([*manage, "set_custodian_access", f"Custodian {n}", "--endpoint",
                        f"http://127.0.0.1:{port}/r4", "--token-url", f"http://127.0.0.1:{port}/token",
                        "--client-id", "hie-node"], **run)  # fmt: skip
    psql(f"""
        INSERT INTO matching_person (euid, status, golden, created_at, updated_at)
            SELECT 'E' || upper(substr(md5(p::text), 1, 12)), 'active', '{{}}', now(), now()
            FROM generate_series(1, {persons}) p;
        INSERT INTO matching_patientrecord (organization_id, identifier_system, local_id, given_name, middle_name,
                family_name, suffix, previous_family_names, sex, ssn, phones, email, address_line, city, state,
                postal_code, norm, source, version, active, created_at, updated_at)
            SELECT s.organization_id, s.uri, 'P' || p.id, '', '', '', '', '[]', 'unknown', '', '[]', '', '', '', '',
                   '', '{{}}', 'csv', 1, true, now(), now()
            FROM matching_person p CROSS JOIN orgs_identifiersystem s;
        INSERT INTO matching_link (record_id, person_id, state, source, contributions, updated_at)
            SELECT r.id, substr(r.local_id, 2)::int, 'match', 'auto', '{{}}', now() FROM matching_patientrecord r;
        ANALYZE;
    """)  # noqa: S608 - numbers this script chose


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--custodians", type=int, default=10)
    parser.add_argument("--persons", type=int, default=200)
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    os.environ["HIE_DATA_DIR"] = tempfile.mkdtemp(prefix="hie-bench-gather-")
    psql(f"DROP DATABASE IF EXISTS {DATABASE}", "postgres")
    psql(f"CREATE DATABASE {DATABASE}", "postgres")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=node_env(), cwd=ROOT, check=True)
    custodians = [custodian_server(args.documents) for _ in range(args.custodians)]
    build(custodians, args.persons)

    os.environ.update(node_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
    import django

    django.setup()
    from django.db import transaction

    from hie.audit.services import SYSTEM
    from hie.exchange.models import CallStatus, CustodianCall, GatherJob, JobStatus
    from hie.exchange.services import start_gather
    from hie.locator.models import DocumentEntry
    from hie.orgs.models import Organization
    from matching.models import Person

    celery = str(Path(sys.executable).parent / "celery")
    subprocess.run([celery, "-A", "hie", "purge", "-f"], env=node_env(), cwd=ROOT, check=True, capture_output=True)
    worker = subprocess.Popen([celery, "-A", "hie", "worker", "-c", str(args.concurrency), "--loglevel", "WARNING",
                               "--without-heartbeat", "--without-gossip", "--without-mingle"],
                              env=node_env(), cwd=ROOT)  # fmt: skip
    try:
        time.sleep(6)  # the worker connects to the broker
        requester = Organization.objects.get(name="Requester")
        persons = list(Person.objects.order_by("pk"))
        started = time.monotonic()
        for person in persons:
            with transaction.atomic():
                start_gather(requester=requester, person=person, purpose="TREAT", idempotency_key=f"bench-{person.pk}",
                             prefetch=False, deadline_seconds=3600, actor=SYSTEM)  # fmt: skip
        enqueued = time.monotonic() - started
        while GatherJob.objects.exclude(status__in=[JobStatus.DONE, JobStatus.PARTIAL]).exists():
            time.sleep(0.2)
            if time.monotonic() - started > 1800:
                raise RuntimeError("gather jobs did not finish in 30 minutes")
        elapsed = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(30)
    calls = CustodianCall.objects.count()
    failed = CustodianCall.objects.exclude(status=CallStatus.DONE).count()
    documents = DocumentEntry.objects.count()
    jobs = GatherJob.objects.count()
    section = "\n".join([
        "## Document exchange: gather jobs against loopback custodians",
        "",
        f"Command: `.venv/bin/python benchmarks/gather_throughput.py --custodians {args.custodians} --persons "
        f"{args.persons} --documents {args.documents} --concurrency {args.concurrency}`  ",
        f"Machine: {machine()}. Run on {time.strftime('%Y-%m-%d')}. PostgreSQL 15, Redis as the broker, one Celery "
        f"worker of {args.concurrency} processes. {args.custodians} custodian FHIR servers on loopback (threaded "
        f"Python HTTP servers in the benchmark's process), each holding every one of {args.persons} persons with "
        f"{args.documents} documents by reference. One gather job per person (each asks all custodians: one "
        "token request per custodian and process, then an ITI-67 search per call), started through the service "
        f"behind Patient/$gather-documents ({enqueued:.1f} s to start them all); time until every job ended. No "
        "peer runs on this machine, so no ratio is given.",
        "",
        "| jobs | custodian calls | documents indexed | seconds | jobs/s | calls/s | calls not done |",
        "|---|---|---|---|---|---|---|",
        f"| {jobs:,} | {calls:,} | {documents:,} | {elapsed:.1f} | {jobs / elapsed:.1f} | {calls / elapsed:.0f} "
        f"| {failed} |",
        "",
    ])  # fmt: skip
    replace_section("## Document exchange", section)
    print(section)


if __name__ == "__main__":
    main()
