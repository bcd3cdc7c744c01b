"""``agentmaestro standalone`` in a real browser: start a run from the console, watch it end.

The run is executed by the engine inside the standalone process; the page follows it
over the WebSocket (in-memory channel layer) until COMPLETED, tables included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.test_standalone import standalone
from tests.console.test_stream_page_browser import browser_page, wait_until_live
from tests.live import free_port

pytestmark = pytest.mark.slow

SCREENSHOT = Path("/tmp/standalone-run.png")  # noqa: S108 — a fixed place to look at it
RUN_TIMEOUT_MS = 30_000


def test_a_run_started_from_the_console_is_watched_to_completion(tmp_path: Path) -> None:
    with standalone(tmp_path, tmp_path / "data", free_port(), "browser") as server:
        password = server.banner("Login").split()[2]
        with browser_page() as page:
            page.goto(f"{server.url}/login/?next=/")
            page.fill("#id_username", "demo")
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/")

            page.fill("#new-run-prompt", "Watched from a browser")
            page.click("#new-run-form button[type=submit]")
            page.wait_for_url(f"{server.url}/runs/*/stream/")
            wait_until_live(page)
            expect(page.locator("#run-status")).to_have_text("COMPLETED", timeout=RUN_TIMEOUT_MS)

            # The tables followed the run live: every step and tool call shows its end.
            expect(page.locator("#steps-body tr")).to_have_count(10)
            expect(page.locator("#steps-body tr td:nth-child(3)")).to_have_text(["COMPLETED"] * 10)
            expect(page.locator("#calls-body tr td:nth-child(2)")).to_have_text(["SUCCEEDED"] * 4)
            expect(page.locator("#timeline-body tr[data-seq]").last).to_contain_text(
                "RUNNING → COMPLETED"
            )
            expect(page.locator("#run-finished")).not_to_have_text("—")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
