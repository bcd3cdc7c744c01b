"""The console in a real browser against a real web process and a real Celery worker.

Runs are executed by the engine (scripted provider, built-in tools) in the worker
process; their events travel through Redis to the web process's consumers and over the
WebSocket to headless Chromium. What the page shows is compared with the database.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from agentmaestro.agents.models import Agent
from agentmaestro.common.time import iso
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_add_note, run_create
from tests.console.test_stream_page_browser import browser_page, log_in, off_thread, server_password
from tests.engine.helpers import scripted_agent
from tests.factories import Personas, make_personas
from tests.live import LiveServer, Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Waits on the engine's progress (the session's worker may still be starting).
RUN_TIMEOUT_MS = 30_000


def script(delay_ms: int) -> list[dict[str, Any]]:
    """Two turns with tool calls, then an answer; each model turn takes ``delay_ms``."""
    return [
        {
            "text": "Computing 6 * 7 and looking at the clock.",
            "tool_calls": [
                {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                {"name": "current_time", "arguments": {"timezone": "UTC"}},
            ],
            "delay_ms": delay_ms,
        },
        {
            "text": "Now 42 / 6.",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": "42 / 6"}}],
            "delay_ms": delay_ms,
        },
        {"text": "6 * 7 = 42 and 42 / 6 = 7.", "delay_ms": delay_ms},
    ]


def setup(delay_ms: int) -> tuple[Personas, Agent]:
    personas = make_personas()
    server_password(personas.member)
    agent = scripted_agent(personas.workspace, script(delay_ms), slug="counter")
    return personas, agent


def start_run(personas: Personas, agent: Agent, prompt: str) -> AgentRun:
    """A run started as the console's form does: created, then its first tick enqueued."""
    run = run_create(agent=agent, input={"prompt": prompt}, created_by=personas.member)
    dispatch.enqueue_tick(run.id)
    return run


def shown_seqs(page: Page) -> list[int]:
    return [
        int(s)
        for s in page.locator("#event-log-body li").evaluate_all(
            "items => items.map(item => item.dataset.seq)"
        )
    ]


def shown_steps(page: Page) -> list[tuple[int, str]]:
    rows: list[list[str]] = page.locator("#timeline [data-step-index]").evaluate_all(
        "items => items.map(item => [item.dataset.stepIndex, item.dataset.status])"
    )
    return [(int(index), status) for index, status in rows]


def shown_calls(page: Page) -> list[tuple[str, str]]:
    rows: list[list[str]] = page.locator("#timeline .call").evaluate_all(
        "calls => calls.map(call => [call.dataset.callId, call.dataset.status])"
    )
    return [(call_id, status) for call_id, status in rows]


def wait_finished(page: Page) -> None:
    expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "COMPLETED", timeout=RUN_TIMEOUT_MS
    )


def connection_log(page: Page) -> list[str]:
    log: list[str] = page.evaluate("window.amRun.view.connectionLog")
    return log


def socket_since_seqs(page: Page) -> list[int]:
    """The since_seq of every socket the page opened, in order."""
    urls: list[str] = page.evaluate("window.amRun.socket.urls")
    return [int(url.rsplit("since_seq=", 1)[1]) for url in urls]


def went(log: list[str], first: str) -> list[str]:
    """The indicator's states from the last ``first`` on, with repeats merged."""
    tail = log[len(log) - 1 - log[::-1].index(first) :]
    return [state for i, state in enumerate(tail) if i == 0 or tail[i - 1] != state]


def assert_page_matches_database(page: Page, run: AgentRun) -> None:
    """The timeline, the event log and the numbers on the page are the database's."""
    seqs, steps, calls, fresh = off_thread(
        lambda: (
            list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)),
            list(
                AgentStep.objects.filter(run=run).order_by("index").values_list("index", "status")
            ),
            [
                (str(c.id), c.status)
                for c in ToolCall.objects.filter(run=run).order_by("step__index", "position")
            ],
            AgentRun.objects.get(id=run.id),
        )
    )
    assert seqs == list(range(1, fresh.last_seq + 1))
    assert shown_seqs(page) == seqs  # every event, in order, none twice
    assert page.evaluate("window.amRun.view.applied") == seqs
    assert shown_steps(page) == steps
    assert shown_calls(page) == calls
    expect(page.locator("#stat-steps")).to_have_text(str(fresh.step_count))
    expect(page.locator("#stat-calls")).to_have_text(str(fresh.tool_call_count))
    expect(page.locator("#stat-tokens")).to_have_text(
        f"{fresh.input_tokens} in · {fresh.output_tokens} out"
    )
    if fresh.status == "COMPLETED":
        expect(page.locator("#outcome .answer")).to_have_text(fresh.output["text"])
    else:
        expect(page.locator("#outcome")).to_contain_text(fresh.error["message"])
    # The times the page folded from the events (step and call times are the events'
    # own: docs/events.md) are the rows'.
    step_times, call_times = off_thread(
        lambda: (
            [
                [i, iso(c), iso(f)]
                for i, c, f in AgentStep.objects.filter(run=run)
                .order_by("index")
                .values_list("index", "created_at", "finished_at")
            ],
            sorted(
                [str(i), iso(c), iso(s), iso(f)]
                for i, c, s, f in ToolCall.objects.filter(run=run).values_list(
                    "id", "created_at", "started_at", "finished_at"
                )
            ),
        )
    )
    folded_steps, folded_calls = page.evaluate(
        """() => [
            [...window.amRun.state.steps.values()].sort((a, b) => a.index - b.index)
                .map((s) => [s.index, s.created_at, s.finished_at]),
            [...window.amRun.state.calls.values()]
                .map((c) => [c.id, c.created_at, c.started_at, c.finished_at]).sort(),
        ]"""
    )
    assert folded_steps == step_times
    assert sorted(folded_calls) == call_times
    # The waterfall has a bar per model turn and per tool call.
    model_steps = off_thread(lambda: AgentStep.objects.filter(run=run, kind="MODEL_CALL").count())
    expect(page.locator("#waterfall .wf-model")).to_have_count(model_steps)
    expect(page.locator("#waterfall .wf-tool")).to_have_count(len(calls))


def test_a_member_starts_a_run_from_the_dashboard_and_watches_it_finish_live(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    personas, agent = off_thread(lambda: setup(delay_ms=400))

    with browser_page() as page:
        log_in(page, web_server, personas.member.username, "/w/acme/")
        expect(page.locator("#ws-connection")).to_have_attribute("data-state", "live")
        page.select_option("#new-run-agent", label=agent.name)
        page.fill("#new-run-prompt", "What is 6 * 7?")
        page.click("#new-run-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}/$"))
        run_id = page.url.rstrip("/").rsplit("/", 1)[1]
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")

        wait_finished(page)
        run = off_thread(lambda: AgentRun.objects.get(id=run_id))
        assert run.input == {"prompt": "What is 6 * 7?"}
        assert_page_matches_database(page, run)
        # The model's text streamed in before each turn completed, then became the
        # durable text: the last turn reads exactly as stored.
        assert page.evaluate("window.amRun.view.deltasShown") > 0
        expect(page.locator("#timeline .kind-model .say").last).to_have_text(
            "6 * 7 = 42 and 42 / 6 = 7."
        )
        expect(page.locator("#timeline .kind-message .answer")).to_have_text(
            "6 * 7 = 42 and 42 / 6 = 7."
        )
        expect(page.locator("#cancel-button")).to_be_hidden()

        # Back on the dashboard, the run is listed as completed.
        page.click("nav.sections >> text=Runs")
        row = page.locator(f'#runs-body tr[data-run-id="{run_id}"]')
        expect(row).to_have_attribute("data-status", "COMPLETED")


def test_a_reload_in_the_middle_of_a_run_shows_the_same_timeline(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    personas, agent = off_thread(lambda: setup(delay_ms=1200))
    run = off_thread(lambda: start_run(personas, agent, "slowly"))

    with browser_page() as page:
        log_in(page, web_server, personas.member.username, f"/runs/{run.id}/")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        # Mid-run: the first tool calls have been made, the run is not finished.
        expect(page.locator('#timeline [data-step-index="2"]')).to_have_count(
            1, timeout=RUN_TIMEOUT_MS
        )
        before_seqs = shown_seqs(page)
        before_steps = page.locator("#timeline [data-step-index]").all_inner_texts()
        assert page.locator("#run-status").get_attribute("data-status") != "COMPLETED"

        page.reload()
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        after_seqs = shown_seqs(page)
        assert after_seqs[: len(before_seqs)] == before_seqs
        after_steps = page.locator("#timeline [data-step-index]").all_inner_texts()
        # Completed steps read the same (a running turn's duration moves on).
        for before, after in zip(before_steps[:-1], after_steps, strict=False):
            assert before == after

        wait_finished(page)
        assert_page_matches_database(page, run)


def test_a_cut_socket_reconnects_and_catches_up_with_nothing_missing_or_doubled(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    personas, agent = off_thread(lambda: setup(delay_ms=1000))
    run = off_thread(lambda: start_run(personas, agent, "bumpy"))

    with browser_page() as page:
        log_in(page, web_server, personas.member.username, f"/runs/{run.id}/")
        indicator = page.locator("#connection")
        expect(indicator).to_have_attribute("data-state", "live")
        expect(page.locator('#timeline [data-step-index="1"]')).to_have_count(
            1, timeout=RUN_TIMEOUT_MS
        )

        # Closed from the page, as a network failure would: reconnecting, then live, and
        # the new socket asks for what follows the last applied seq.
        applied = page.evaluate("window.amRun.state.lastSeq")
        page.evaluate("window.amRun.drop()")
        # The close is reported asynchronously; the page then waits >= 0.5 s to reconnect.
        expect(indicator).to_have_attribute("data-state", "reconnecting")
        expect(indicator).to_have_attribute("data-state", "live")
        assert went(connection_log(page), "reconnecting") == ["reconnecting", "live"]
        since = socket_since_seqs(page)
        assert len(since) >= 2
        assert since[-1] >= applied

        # The browser goes offline; events committed meanwhile arrive after it is back.
        page.context.set_offline(True)
        expect(indicator).to_have_attribute("data-state", "offline")
        offline_seq = page.evaluate("window.amRun.state.lastSeq")
        note = off_thread(
            lambda: run_add_note(run_id=run.id, message="while offline", source="test")
        )
        assert note > offline_seq
        page.context.set_offline(False)
        expect(indicator).to_have_attribute("data-state", "live")
        assert went(connection_log(page), "offline") == ["offline", "reconnecting", "live"]
        assert socket_since_seqs(page)[len(since)] == offline_seq
        expect(page.locator(f'#timeline [data-note-seq="{note}"]')).to_contain_text("while offline")

        wait_finished(page)
        assert_page_matches_database(page, run)


def test_a_member_cancels_a_run_from_its_page(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    personas, agent = off_thread(lambda: setup(delay_ms=1500))
    run = off_thread(lambda: start_run(personas, agent, "never mind"))

    with browser_page() as page:
        log_in(page, web_server, personas.member.username, f"/runs/{run.id}/")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        expect(page.locator('#timeline [data-step-index="1"]')).to_have_count(
            1, timeout=RUN_TIMEOUT_MS
        )

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#cancel-button")
        expect(page.locator("#run-status")).to_have_attribute(
            "data-status", "CANCELLED", timeout=RUN_TIMEOUT_MS
        )
        expect(page.locator("#cancel-button")).to_be_hidden()
        expect(page.locator("#outcome h2")).to_have_text("Cancelled")
        expect(page.locator("#outcome")).to_contain_text(f"Cancelled by {personas.member.username}")
        assert_page_matches_database(page, run)


def test_the_dashboard_shows_new_runs_and_their_status_changes_without_a_reload(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    personas, agent = off_thread(lambda: setup(delay_ms=300))
    quiet = off_thread(
        lambda: Agent.objects.create(workspace=personas.workspace, slug="quiet", name="Quiet")
    )

    with browser_page() as page:
        log_in(page, web_server, personas.member.username, "/w/acme/?agent=counter")
        expect(page.locator("#ws-connection")).to_have_attribute("data-state", "live")
        expect(page.locator("#runs-empty")).to_be_visible()
        expect(page.locator('#run-tiles a[href="?status=COMPLETED"] .tile-n')).to_have_text("0")

        run = off_thread(lambda: start_run(personas, agent, "appears live"))
        # A run of another agent does not match the filter and stays off the list.
        hidden = off_thread(
            lambda: run_create(
                agent=quiet, input={"prompt": "filtered out"}, created_by=personas.member
            )
        )
        row = page.locator(f'#runs-body tr[data-run-id="{run.id}"]')
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-status", "COMPLETED", timeout=RUN_TIMEOUT_MS)
        expect(row.locator(".status-cell .badge")).to_have_text("completed")
        finished = off_thread(lambda: AgentRun.objects.get(id=run.id))
        expect(row).to_have_attribute("data-last-seq", str(finished.last_seq))
        expect(page.locator("#runs-empty")).to_be_hidden()
        expect(page.locator(f'#runs-body tr[data-run-id="{hidden.id}"]')).to_have_count(0)
        expect(page.locator("#runs-body tr")).to_have_count(1)
        # The counts (every run of the workspace) follow too.
        completed = page.locator('#run-tiles a[href="?status=COMPLETED"] .tile-n')
        expect(completed).to_have_text("1")
        expect(page.locator('#run-tiles a[href="?status=active"] .tile-n')).to_have_text("1")
