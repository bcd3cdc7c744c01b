"""Read a run's persisted state into the plain data ``decide()`` takes."""

from __future__ import annotations

from datetime import datetime

from agentmaestro.runs.engine.decide import RunState
from agentmaestro.runs.engine.plan import Plan
from agentmaestro.runs.engine.store import read_locked
from agentmaestro.runs.models import AgentRun


def load_state(run: AgentRun, now: datetime) -> RunState:
    """The state of ``run``, exactly as a step would see it (locks its row)."""
    loaded = read_locked(run.id)
    if loaded is None:
        raise AgentRun.DoesNotExist(f"no run {run.id}")
    return Plan(loaded, now, eager=False).state()
