"""The plain data the step store reads and writes (both forms share it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from agentmaestro.agents.models import Agent
from agentmaestro.agents.providers.base import Message
from agentmaestro.runs.events.types import NewEvent, StoredEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.tools.models import ToolDefinition


@dataclass
class Loaded:
    """A run's state as one step needs it (the run row is locked by the caller)."""

    run: AgentRun
    agent: Agent
    # The newest MODEL_CALL step and the tool calls of its turn (model order).
    model: AgentStep | None
    calls: list[ToolCall]
    observed: bool
    # Definitions of the tools in the agent's policy, by name.
    tools: dict[str, ToolDefinition]


@dataclass
class Changes:
    """What one step writes. Rows are unsaved model instances holding the new values."""

    run: AgentRun
    # The run's last_seq as read: the write applies only if it still is (else Stale).
    expect_seq: int
    events: list[NewEvent] = field(default_factory=list)
    new_steps: list[AgentStep] = field(default_factory=list)
    # (step, attempt it must still have, or None); the step must still be STARTED.
    finished_steps: list[tuple[AgentStep, int | None]] = field(default_factory=list)
    # (call, the index of the new TOOL_CALL step it belongs to).
    new_calls: list[tuple[ToolCall, int]] = field(default_factory=list)
    # (call, the status and attempt it must still have).
    changed_calls: list[tuple[ToolCall, str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events)


@dataclass
class Written:
    last_seq: int
    # Not broadcast yet: the caller announces them (events.store.announce_on_commit).
    events: list[StoredEvent]
    workspace_id: uuid.UUID
    status: str
    # The database ids of the new steps, by index.
    step_ids: dict[int, int]
    # How many fenced rows matched; fewer than asked means a fence failed.
    finished_steps: int
    changed_calls: int


class FenceFailed(Exception):
    """A fenced row changed between the read and the write; the caller rolls back."""


class Stale(Exception):
    """The run moved on since the state the write was planned from; nothing was written.

    Only a step planned from state kept in memory (eager continuation) can meet this: a
    step that read under the run's lock holds it until it commits.
    """


@dataclass
class ModelContext:
    system_prompt: str
    input: Any
    model_settings: dict[str, Any]
    tool_policy: dict[str, Any]
    # (kind, status, payload) of the run's MODEL_CALL and OBSERVATION steps before the
    # one being answered, in order.
    steps: list[tuple[str, str, dict[str, Any]]]
    # The workspace's tools named in the agent's policy.
    tools: list[ToolDefinition]
    # The conversation messages of steps[:history_steps], kept by the engine's
    # build_model_request so that a context carried along converts each step once.
    history: list[Message] = field(default_factory=list)
    history_steps: int = 0
