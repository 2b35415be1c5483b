"""Take the README's console screenshots from the demo data: `make screenshots`.

Seeds a throw-away SQLite node (the same demo data `make run` loads), starts it, signs in as
the demo user in headless Chromium and saves PNGs of the main pages next to this file.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("SCREENSHOT_PORT", "8765"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "HIE_DATA_DIR": data_dir}
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
            env.pop(name, None)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input"], env=env, check=True, capture_output=True)
        subprocess.run([*manage, "seed_demo"], env=env, check=True, capture_output=True)
        server = subprocess.Popen([*manage, "runserver", f"127.0.0.1:{PORT}", "--noreload"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{PORT}"
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 - our own loopback server
                    break
                except OSError:
                    time.sleep(0.5)
            shoot(base)
        finally:
            server.terminate()
            server.wait(10)


def shoot(base: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{base}/console/login/")
        page.fill("#id_username", "demo")
        page.fill("#id_password", os.environ.get("DEMO_PASSWORD", "demo-hie-console"))
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/console/")
        page.screenshot(path=str(HERE / "dashboard.png"), full_page=True)
        page.goto(f"{base}/console/review/")
        page.screenshot(path=str(HERE / "review-queue.png"))
        page.click("#review-list tbody a >> nth=0")
        page.wait_for_selector("section.candidate")
        page.screenshot(path=str(HERE / "review.png"), full_page=True)
        page.click("section.candidate h2 a >> nth=0")
        page.wait_for_selector("#golden-record")
        page.screenshot(path=str(HERE / "patient.png"), full_page=True)
        browser.close()
    print(f"screenshots written to {HERE}")


if __name__ == "__main__":
    main()
