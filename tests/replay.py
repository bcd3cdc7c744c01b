from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.replay import fold
from agentmaestro.runs.selectors import run_events_since
from agentmaestro.runs.services.snapshot import run_snapshot


def _pretty(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def assert_replays(run_id: Any) -> dict[str, Any]:
    """fold(events) must equal the snapshot, field for field; returns the snapshot."""
    snapshot = run_snapshot(run_id)
    folded = fold(run_events_since(run_id, 0))
    if folded != snapshot:
        diff = "\n".join(
            difflib.unified_diff(
                _pretty(snapshot), _pretty(folded), "snapshot", "fold(events)", lineterm=""
            )
        )
        raise AssertionError(f"run {run_id}: fold(events) != snapshot\n{diff}")
    return snapshot


def assert_all_runs_replay() -> None:
    for run_id in AgentRun.objects.values_list("id", flat=True):
        assert_replays(run_id)


def verify_action(run_id: Any, action: Callable[[], Any]) -> Any:
    """Zulip-style: snapshot, act, apply only the new events to the old snapshot, compare.

    Proves that the events an action emits describe exactly the change it made.
    """
    before = run_snapshot(run_id)
    result = action()
    after = run_snapshot(run_id)
    events = run_events_since(run_id, 0)
    folded = fold(events)
    assert fold(events[: before["last_seq"]]) == before
    if folded != after:
        diff = "\n".join(
            difflib.unified_diff(_pretty(after), _pretty(folded), "after", "fold", lineterm="")
        )
        raise AssertionError(f"events of the action do not describe its change\n{diff}")
    return result
