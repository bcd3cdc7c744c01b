"""``agentmaestro standalone`` in a real browser: start a run from the console, watch it end.

The run is executed by the engine inside the standalone process; the page follows it
over the WebSocket (in-memory channel layer) until COMPLETED, timeline included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.test_standalone import standalone
from tests.console.test_stream_page_browser import browser_page
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
            page.wait_for_url(f"{server.url}/w/demo/")

            page.fill("#new-run-prompt", "Watched from a browser")
            page.click("#new-run-form button[type=submit]")
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}/$"))
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            expect(page.locator("#run-status")).to_have_attribute(
                "data-status", "COMPLETED", timeout=RUN_TIMEOUT_MS
            )

            # The timeline followed the run live: every step and tool call shows its end.
            expect(page.locator("#timeline [data-step-index]")).to_have_count(10)
            statuses = page.locator("#timeline [data-step-index]").evaluate_all(
                "items => items.map(item => item.dataset.status)"
            )
            assert statuses == ["COMPLETED"] * 10
            expect(page.locator("#timeline .call .badge")).to_have_text(["succeeded"] * 4)
            expect(page.locator("#outcome .answer")).to_contain_text("42 / 6 = 7")
            expect(page.locator("#event-log-body li").last).to_contain_text("running → completed")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
