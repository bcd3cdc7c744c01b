"""The stream page in a real browser (headless Chromium), against a real web process.

Events written by this process travel through Redis to the server's consumer and over
the WebSocket to the page, exactly as in production.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.services.runs import run_add_note
from agentmaestro.runs.services.steps import step_append
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus
from tests.factories import PASSWORD, Personas, make_personas
from tests.live import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/stream-page.png")  # noqa: S108 — a fixed place to look at it
TIMEOUT_MS = 10_000


def off_thread[T](fn: Callable[[], T]) -> T:
    """Run a database call in another thread and wait for it.

    Playwright's sync API keeps an event loop running in this thread, and Django refuses
    database calls from a thread with a running loop (SynchronousOnlyOperation).
    """

    def call() -> T:
        try:
            return fn()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


@contextmanager
def browser_page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}; install it or set CHROMIUM_PATH")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], f"the page raised: {errors}"
        finally:
            browser.close()


def server_password(user: Any) -> None:
    """Give ``user`` the persona password in a hash the web process can check.

    The test settings hash with MD5 for speed; the web process runs the real settings,
    which do not accept MD5 hashes.
    """
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])


def log_in(page: Page, server: LiveServer, username: str, next_path: str) -> None:
    page.goto(f"{server.url}/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    # Generous: on a loaded machine the first page of a fresh server can take a while.
    page.wait_for_url(f"{server.url}{next_path}", timeout=30_000)


def wait_until_live(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def timeline(page: Page) -> list[tuple[int, str, str]]:
    rows = page.locator("#timeline-body tr[data-seq]")
    return [
        (int(row[0]), row[1], row[3])
        for row in ([cell.strip() for cell in text.split("\t")] for text in rows.all_inner_texts())
    ]


def wait_for_seq(page: Page, seq: int) -> None:
    expect(page.locator(f'#timeline-body tr[data-seq="{seq}"]')).to_have_count(1)


def a_run_with_history(personas: Personas) -> AgentRun:
    run = personas.run({"prompt": "Plan a trip to Porto"})
    run_transition(run_id=run.id, to_status=RunStatus.RUNNING)
    step_append(
        run_id=run.id,
        kind=StepKind.MODEL_CALL,
        payload={"text": "Looking at trains first."},
        status=StepStatus.COMPLETED,
    )
    run.refresh_from_db()
    return run


def test_the_stream_page_shows_stored_events_then_live_ones_across_drops_and_reloads(
    web_server: LiveServer,
) -> None:
    personas = make_personas()
    server_password(personas.member)
    run = a_run_with_history(personas)
    stored = run.last_seq
    stream_path = f"/runs/{run.id}/stream/"
    socket_urls: list[str] = []

    with browser_page() as page:
        page.on("websocket", lambda ws: socket_urls.append(ws.url))
        log_in(page, web_server, personas.member.username, stream_path)
        wait_until_live(page)

        # The stored history, rendered from the snapshot the page was served with.
        first = timeline(page)
        assert [(seq, kind) for seq, kind, _ in first] == [
            (1, "run.created"),
            (2, "run.status_changed"),
            (3, "step.created"),
            (4, "step.updated"),
        ]
        assert first[1][2] == "PENDING → RUNNING"
        assert socket_urls[-1].endswith(f"?since_seq={stored}")
        expect(page.locator("#run-status")).to_have_text("RUNNING")

        # Events appended elsewhere appear live, in order, without a reload.
        for i in range(1, 4):
            off_thread(lambda i=i: run_add_note(run_id=run.id, message=f"live {i}", source="test"))
        wait_for_seq(page, stored + 3)
        live = timeline(page)[stored:]
        assert live == [(stored + i, "run.note", f"[test] live {i}") for i in range(1, 4)]

        # A dropped connection comes back by itself, asking for exactly what it lacks.
        page.evaluate("window.amStream.drop()")
        off_thread(lambda: run_add_note(run_id=run.id, message="while away", source="test"))
        wait_for_seq(page, stored + 4)
        wait_until_live(page)
        assert socket_urls[-1].endswith(f"?since_seq={stored + 3}")
        after_drop = timeline(page)
        assert [seq for seq, _, _ in after_drop] == list(range(1, stored + 5))
        assert after_drop[-1][2] == "[test] while away"

        # A reload shows the same timeline: nothing lost, nothing twice.
        page.reload()
        wait_until_live(page)
        assert timeline(page) == after_drop
        assert socket_urls[-1].endswith(f"?since_seq={stored + 4}")

        # A note added through the page's form comes back as the next event.
        page.fill("#note-message", "added from the browser")
        page.click("#note-form button[type=submit]")
        wait_for_seq(page, stored + 5)
        assert timeline(page)[-1] == (
            stored + 5,
            "run.note",
            f"[user:{personas.member.username}] added from the browser",
        )
        expect(page.locator("#note-status")).to_have_text(f"Note added as event {stored + 5}.")
        expect(page.locator("#note-message")).to_have_value("")
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Cancelling over the socket ends the run, and the page follows.
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#cancel-button")
        expect(page.locator("#run-status")).to_have_text("CANCELLED")
        expect(page.locator("#cancel-button")).to_be_hidden()
        wait_for_seq(page, stored + 6)
        assert timeline(page)[-1][1:] == (
            "run.status_changed",
            f"RUNNING → CANCELLED (cancelled): Cancelled by {personas.member.username}.",
        )
        assert [seq for seq, _, _ in timeline(page)] == list(range(1, stored + 7))

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_a_viewer_watches_live_but_has_no_note_form_or_cancel_button(
    web_server: LiveServer,
) -> None:
    personas = make_personas()
    server_password(personas.viewer)
    run = a_run_with_history(personas)

    with browser_page() as page:
        log_in(page, web_server, personas.viewer.username, f"/runs/{run.id}/stream/")
        wait_until_live(page)
        expect(page.locator("#note-form")).to_have_count(0)
        expect(page.locator("#cancel-button")).to_have_count(0)

        off_thread(lambda: run_add_note(run_id=run.id, message="for viewers too", source="test"))
        wait_for_seq(page, run.last_seq + 1)
        expect(page.locator("#heartbeat")).to_have_text(re.compile(r"last_seq \d+"))
