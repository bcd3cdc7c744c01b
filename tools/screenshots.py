"""Screenshots of every console page, at desktop and phone widths, to judge how they look.

    .venv/bin/python tools/screenshots.py [OUT_DIR]      (default /tmp/agentmaestro-screens)

Starts ``agentmaestro standalone`` in a temporary data directory (SQLite, in-process
engine, the seeded demo user and agents), logs in as the demo user in headless Chromium
(CHROMIUM_PATH, default /usr/bin/chromium), starts a run from the dashboard, and takes
full-page PNGs of: the login page, the dashboard, the run page mid-run, finished and
cancelled, the raw stream page, the agents list and an agent's page. The PNGs are for
looking at, not for committing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
CLI = Path(sys.executable).with_name("agentmaestro")
DROP_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "AGENTMAESTRO_DATA_DIR",
}


def start_standalone(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CLI), "standalone", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=data_dir.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"standalone exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"standalone did not start:\n{log.read_text()}")
        time.sleep(0.2)


def shoot(page: Page, out: Path, name: str) -> None:
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # let the layout settle after the resize (a picture, not a test)
        page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/agentmaestro-screens")  # noqa: S108
    out.mkdir(parents=True, exist_ok=True)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "standalone.log"
        process = start_standalone(Path(tmp) / "data", port, log)
        try:
            match = re.search(r"Login:\s+demo / (\S+)", log.read_text())
            if not match:
                raise SystemExit(f"no password in the banner:\n{log.read_text()}")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(30_000)
                page.on("pageerror", lambda error: print(f"page error: {error}"))
                page.goto(f"{url}/login/")
                shoot(page, out, "01-login")
                page.fill("#id_username", "demo")
                page.fill("#id_password", match.group(1))
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(r".*/w/[^/]+/$"))
                dashboard = page.url
                page.fill("#new-run-prompt", "What is 6 * 7, and what time is it?")
                page.click("#new-run-form button[type=submit]")
                page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}/$"))
                run_url = page.url
                expect(page.locator('#timeline [data-step-index="2"]')).to_have_count(1)
                shoot(page, out, "03-run-midway")
                expect(page.locator("#run-status")).to_have_attribute("data-status", "COMPLETED")
                page.evaluate("document.getElementById('event-log').open = true")
                shoot(page, out, "04-run-finished")
                # A run cancelled midway, for the look of an ended-badly run.
                page.goto(dashboard)
                page.fill("#new-run-prompt", "Start, then be cancelled")
                page.click("#new-run-form button[type=submit]")
                page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}/$"))
                expect(page.locator('#timeline [data-step-index="1"]')).to_have_count(1)
                page.once("dialog", lambda dialog: dialog.accept())
                page.click("#cancel-button")
                expect(page.locator("#run-status")).to_have_attribute("data-status", "CANCELLED")
                shoot(page, out, "08-run-cancelled")
                page.goto(dashboard)
                shoot(page, out, "02-dashboard")
                page.goto(run_url + "stream/")
                shoot(page, out, "05-stream")
                page.goto(dashboard + "agents/")
                shoot(page, out, "06-agents")
                page.click(".agent-card >> nth=0")
                page.wait_for_url(re.compile(r".*/agents/[^/]+/$"))
                shoot(page, out, "07-agent")
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
