"""What every benchmark script shares: the machine it ran on, and its section of docs/benchmarks.md."""

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import requests

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    memory = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")) / 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}"


def replace_section(heading: str, section: str, report: Path = REPORT) -> None:
    """Put `section` in place of the section starting with `heading` (or append it)."""
    text = report.read_text() if report.exists() else "# Benchmarks\n\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 3)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    report.write_text(text)


class Server:
    """The node served by gunicorn (two workers of four threads, as fits two cores), for the duration of a block."""

    def __init__(self, env: dict, port: int) -> None:
        self.env, self.port = env, port

    def __enter__(self) -> "Server":
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.process = subprocess.Popen([gunicorn, "hie.wsgi", "-w", "2", "--threads", "4", "-b",
                                         f"127.0.0.1:{self.port}", "--log-level", "warning"],
                                        env=self.env, cwd=REPORT.parent.parent)  # fmt: skip
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
