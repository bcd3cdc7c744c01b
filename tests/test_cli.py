"""The command line's overview, and how ``agentmaestro run`` prints a run it follows."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from django.core.management import find_commands

import agentmaestro
from agentmaestro.cli import COMMANDS
from agentmaestro.client import Printer
from agentmaestro.config import Config

ROOT = Path(__file__).resolve().parent.parent


def test_the_overview_names_every_command_and_variable() -> None:
    package = Path(agentmaestro.__file__).parent
    ours = {
        name
        for app in ("console", "runs")
        for name in find_commands(str(package / app / "management"))
    }
    assert ours | {"run"} == set(COMMANDS)

    out = subprocess.run(
        [sys.executable, "-m", "agentmaestro.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgres://nowhere/x"},
    ).stdout
    for name in COMMANDS:
        assert f"  {name} " in out
    for field in Config.model_fields.values():
        assert field.alias is not None
        assert field.alias in out
        assert field.description


def frame(seq: int, event_type: str, **payload: object) -> dict[str, object]:
    return {"type": "event", "seq": seq, "event_type": event_type, "payload": payload}


def test_the_worker_help_says_how_model_calls_are_made_and_reads_the_environment() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentmaestro.cli", "worker", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "AGENTMAESTRO_MAX_MODEL_CALLS": "77"},
        check=True,
    )
    text = " ".join(result.stdout.split())
    assert "--model-calls {async,threads}" in text
    assert "[AGENTMAESTRO_MODEL_CALLS, async]" in text  # the default
    assert "[AGENTMAESTRO_MAX_MODEL_CALLS, 77]" in text
    assert "[AGENTMAESTRO_ENGINE_THREADS, 4]" in text


def test_the_printer_streams_model_text_and_shows_tools_and_the_answer() -> None:
    out = io.StringIO()
    printer = Printer(out, color=False)
    for f in [
        frame(2, "run.status_changed", from_status="PENDING", to_status="RUNNING"),
        frame(3, "step.created", index=1, kind="MODEL_CALL", status="STARTED", payload={}),
        {"type": "token.delta", "ephemeral": True, "step_index": 1, "text": "Let me "},
        {"type": "token.delta", "ephemeral": True, "step_index": 1, "text": "compute."},
        frame(4, "step.updated", index=1, status="COMPLETED", payload={"turn": 0, "text": "x"}),
        frame(5, "tool_call.created", id="c1", tool_name="calculator", arguments={"e": "2+3"}),
        frame(6, "tool_call.updated", id="c1", status="SUCCEEDED", result={"value": 5}),
        frame(7, "tool_call.created", id="c2", tool_name="echo", arguments={}),
        frame(
            8, "tool_call.updated", id="c2", status="FAILED", error={"code": "x", "message": "y"}
        ),
        frame(
            9,
            "step.updated",
            index=5,
            status="COMPLETED",
            payload={"turn": 1, "text": "Done", "usage": {"input_tokens": 4, "output_tokens": 1}},
        ),
        # An older log's totals after a turn, then a turn of today's that adds to them.
        frame(10, "run.usage_updated", input_tokens=7, output_tokens=3),
        frame(
            11,
            "step.created",
            index=6,
            kind="MODEL_CALL",
            status="COMPLETED",
            payload={"turn": 2, "text": "", "usage": {"input_tokens": 2, "output_tokens": 2}},
        ),
        frame(
            12,
            "run.status_changed",
            from_status="RUNNING",
            to_status="COMPLETED",
            output={"text": "5"},
        ),
    ]:
        printer.frame(f)
    assert printer.status == "COMPLETED"
    assert out.getvalue().splitlines() == [
        "● RUNNING",
        "model ▸ ",
        "  Let me compute.",
        'tool ▸ calculator({"e":"2+3"})',
        '  ◂ calculator → {"value":5}',
        "tool ▸ echo({})",
        "  ◂ echo ✗ x: y",
        "model ▸ Done",
        "● COMPLETED",
        "tokens: 9 in, 5 out",
        "5",
    ]


def test_the_printer_shows_turns_and_calls_announced_finished() -> None:
    """Eager continuation announces an inline model turn and a built-in call finished, in
    their step.created and tool_call.created: the same lines as the two-event form."""
    out = io.StringIO()
    printer = Printer(out, color=False)
    model = {"turn": 0, "text": "Checking."}
    for f in [
        frame(3, "step.created", index=1, kind="MODEL_CALL", status="COMPLETED", payload=model),
        frame(4, "step.created", index=2, kind="TOOL_CALL", status="COMPLETED", payload={}),
        frame(
            5,
            "tool_call.created",
            id="c1",
            tool_name="echo",
            arguments={"value": 1},
            status="SUCCEEDED",
            result={"echo": 1},
        ),
        frame(
            6,
            "tool_call.created",
            id="c2",
            tool_name="nope",
            arguments={},
            status="FAILED",
            error={"code": "unknown_tool", "message": "No tool."},
        ),
        frame(7, "step.created", index=3, kind="MESSAGE", status="COMPLETED", payload=model),
    ]:
        printer.frame(f)
    assert out.getvalue().splitlines() == [
        "model ▸ Checking.",
        'tool ▸ echo({"value":1})',
        '  ◂ echo → {"echo":1}',
        "tool ▸ nope({})",
        "  ◂ nope ✗ unknown_tool: No tool.",
    ]
