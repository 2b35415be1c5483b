"""HL7 v2 intake speed: messages per second stored and acknowledged, and end to end to linked.

    .venv/bin/python benchmarks/mllp_throughput.py [--messages 3000] [--connections 1 10]

On a fresh PostgreSQL database it starts `manage.py mllp_listen` and a Celery worker on Redis
(as in production), then sends synthetic ADT^A04 registrations (matching/synthetic.py) with
python-hl7's asyncio MLLP streams (encoded frames; only the ACK code is read): first over one
connection, then spread over ten, each connection waiting for every ACK before its next message
(original-mode acknowledgement). Each is done twice: with the worker stopped while messages
arrive, then with it applying them.
"Accepted" counts ACKed messages per second; "to linked" runs until the worker has applied
every message to the index. The table replaces the "HL7 v2 intake" section of
docs/benchmarks.md.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, replace_section  # noqa: E402

DATABASE = "hie_bench_mllp"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
BROKER = "redis://127.0.0.1:6379/14"
QUEUE = "hie-bench-mllp"
PORT = 2597
SYSTEM_OID = "2.16.840.1.113883.3.9100.1"


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qAtc", sql], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def node_env() -> dict:
    return {**os.environ, "DATABASE_URL": DATABASE_URL, "CELERY_BROKER_URL": BROKER, "LOG_LEVEL": "WARNING",
            "CELERY_TASK_DEFAULT_QUEUE": QUEUE}  # fmt: skip


def adt_messages(count: int, offset: int) -> list[str]:
    from matching.synthetic import generate

    rows = generate(int(count / 1.4) + 10, seed=500 + offset).rows[:count]
    messages = []
    for n, row in enumerate(rows):
        born = row["birth_date"].replace("-", "")
        sex = {"male": "M", "female": "F"}.get(row["sex"], "U")
        pid = [""] * 18
        pid[1] = f"B{offset}-{n}^^^BENCH&{SYSTEM_OID}&ISO^MR"
        pid[3] = f"{row['family_name']}^{row['given_name']}^{row['middle_name']}^{row['suffix']}"
        pid[5], pid[6] = born, sex
        pid[9] = f"{row['address_line']}^^{row['city']}^{row['state']}^{row['postal_code']}^USA^H"
        pid[11] = row["phone"]
        pid[17] = row["ssn"]
        messages.append(
            f"MSH|^~\\&|EHR|BENCH|HIE|HIE|20261125120000||ADT^A04^ADT_A01|C{offset}-{n}|P|2.5.1\r"
            f"EVN|A04|20261125120000\rPID|1|{'|'.join(pid)}\r"
        )
    return messages


async def send_all(messages: list[str], connections: int) -> tuple[float, int]:
    from hl7.mllp import open_hl7_connection

    # The sending systems' own work (building and encoding their messages) is done before the clock
    # starts, and each ACK is only checked for its code: the client shares the node's two cores.
    encoded = [message.encode() for message in messages]
    share = [encoded[i::connections] for i in range(connections)]
    accepted = 0

    async def one(batch: list[bytes]) -> None:
        nonlocal accepted
        reader, writer = await open_hl7_connection("127.0.0.1", PORT)
        for message in batch:
            writer.writeblock(message)
            await writer.drain()
            ack = await reader.readblock()
            accepted += b"\rMSA|AA|" in ack
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(batch) for batch in share))
    return time.perf_counter() - started, accepted


def processed() -> int:
    return int(psql("SELECT count(*) FROM hl7v2_inboundmessage WHERE state = 'processed'", DATABASE))


def start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "hie", "worker", "-Q", QUEUE, "--concurrency=2",
                             "--loglevel=WARNING", "--without-gossip", "--without-mingle"], env=node_env(),
                            cwd=ROOT)  # fmt: skip


def waiting() -> int:
    return int(psql("SELECT count(*) FROM hl7v2_inboundmessage WHERE state = 'received'", DATABASE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
    import django

    django.setup()
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(f"CREATE DATABASE {DATABASE}")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], env=node_env(), cwd=ROOT, check=True)
    subprocess.run([python, "manage.py", "create_member", "Bench Hospital", "--identifier-system",
                    f"urn:oid:{SYSTEM_OID}", "--facility", "BENCH", "--hl7-allow-address", "127.0.0.1"],
                   env=node_env(), cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=True, capture_output=True)
    listener = subprocess.Popen([python, "manage.py", "mllp_listen", "--port", str(PORT)], env=node_env(), cwd=ROOT)
    worker = None
    results = []
    try:
        time.sleep(5)
        # A node that has been running has table statistics (autovacuum's ANALYZE); a fresh database
        # has none and the planner would scan the inbox. Discharges (A03, stored only) warm it up.
        warm_up = [m.replace("ADT^A04^ADT_A01|C", "ADT^A03^ADT_A03|W") for m in adt_messages(500, 99)]
        asyncio.run(send_all(warm_up, 10))
        psql("ANALYZE", DATABASE)
        for offset, connections in enumerate(args.connections):
            # First with no worker applying messages (what the listener alone takes in), then with
            # the worker applying them on the same two cores while more arrive.
            for busy in (False, True):
                if busy and worker is None:
                    worker = start_worker()
                messages = adt_messages(args.messages, 2 * offset + busy)
                before = processed()
                started = time.perf_counter()
                wall, accepted = asyncio.run(send_all(messages, connections))
                if worker is None:
                    worker = start_worker()
                while waiting():
                    time.sleep(0.2)
                end_to_end = time.perf_counter() - started
                linked = processed() - before
                results.append({"connections": connections, "worker_busy": busy, "messages": len(messages),
                                "accepted": accepted, "accepted_per_s": accepted / wall, "processed": linked,
                                "linked_per_s": linked / end_to_end})  # fmt: skip
                print(json.dumps(results[-1]), file=sys.stderr)
                if not busy:
                    worker.terminate()
                    worker.wait(30)
                    worker = None
    finally:
        listener.terminate()
        listener.wait(20)
        if worker is not None:
            worker.terminate()
            worker.wait(30)
    write_report(args, results)


def write_report(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "## HL7 v2 intake over MLLP",
        "",
        f"Command: `.venv/bin/python benchmarks/mllp_throughput.py --messages {args.messages} --connections "
        f"{' '.join(map(str, args.connections))}`  ",
        f"Machine: {machine()}. Run on {time.strftime('%Y-%m-%d')}. PostgreSQL 15 (fsync and synchronous commit "
        "on), Redis, `manage.py mllp_listen` (one database thread, group commit) and a Celery worker (concurrency "
        "2) on the same two cores as the sending client (python-hl7's asyncio MLLP streams, sending encoded "
        "frames and reading only MSA-1 of each ACK). Synthetic ADT^A04 registrations; "
        "each connection waits for its ACK before its next message. Each row is measured twice: with no worker "
        "running while the messages arrive (the worker starts when the last is ACKed: the listener's own intake), "
        'and with the worker applying messages on the same cores as they arrive. "To linked" runs from the '
        "first message sent until the worker has applied the last. No peer listener runs here, so no ratio is "
        "given. Before the runs, 500 discharges (stored only) and an ANALYZE give the planner the statistics a "
        "running node has.",
        "",
        "| connections | worker while receiving | messages | ACKed AA | accepted msg/s (stored and ACKed) | "
        "applied to the index | end to end msg/s (sent to linked) | target 1,000 accepted msg/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        met = "met" if r["accepted_per_s"] >= 1000 else "not met"
        busy = "applying" if r["worker_busy"] else "stopped"
        lines.append(f"| {r['connections']} | {busy} | {r['messages']:,} | {r['accepted']:,} | "
                     f"{r['accepted_per_s']:.0f} | {r['processed']:,} | {r['linked_per_s']:.0f} | {met} |")  # fmt: skip
    section = "\n".join(lines) + "\n"
    replace_section("## HL7 v2 intake", section)


if __name__ == "__main__":
    main()
