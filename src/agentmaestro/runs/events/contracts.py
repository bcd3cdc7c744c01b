"""Typed, versioned contracts for every event type.

Each event type has one Pydantic model per version. Writers always use the newest
version; readers pass stored payloads through :func:`upcast`, which applies each
registered upcaster in turn (v1 -> v2 -> ... -> newest), so nothing downstream ever
sees an old shape. Rules for changing a contract are in ``docs/events.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from agentmaestro.common.errors import AppError
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class EventPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class EventType:
    name: str
    description: str
    versions: dict[int, type[EventPayload]] = field(default_factory=dict)
    # upcasters[n] turns a version-n payload into a version-(n+1) payload.
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    @property
    def current_version(self) -> int:
        return max(self.versions)

    @property
    def schema(self) -> type[EventPayload]:
        return self.versions[self.current_version]


class EventRegistry:
    def __init__(self) -> None:
        self.types: dict[str, EventType] = {}

    def contract(
        self, name: str, version: int, description: str = ""
    ) -> Callable[[type[EventPayload]], type[EventPayload]]:
        def register(model: type[EventPayload]) -> type[EventPayload]:
            event_type = self.types.setdefault(name, EventType(name=name, description=""))
            if version in event_type.versions:
                raise ValueError(f"{name} v{version} is registered twice")
            event_type.versions[version] = model
            if description:
                event_type.description = description
            return model

        return register

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def register(fn: Upcaster) -> Upcaster:
            self.types[name].upcasters[from_version] = fn
            return fn

        return register

    def get(self, name: str) -> EventType:
        try:
            return self.types[name]
        except KeyError:
            raise UnknownEventType(
                f"Unknown event type {name!r}.", details={"type": name}
            ) from None

    def validate(self, name: str, payload: Payload) -> tuple[int, Payload]:
        """Check a new payload against the newest contract; return (version, JSON-ready payload)."""
        event_type = self.get(name)
        try:
            model = event_type.schema.model_validate(payload)
        except ValidationError as exc:
            raise InvalidEventPayload(
                f"Payload for {name} does not match its contract.",
                details={
                    "type": name,
                    "errors": exc.errors(include_url=False, include_context=False),
                },
            ) from exc
        return event_type.current_version, model.model_dump(mode="json")

    def upcast(self, name: str, version: int, payload: Payload) -> tuple[int, Payload]:
        event_type = self.get(name)
        while version < event_type.current_version:
            payload = event_type.upcasters[version](payload)
            version += 1
        return version, payload

    def check_complete(self) -> None:
        """Every old version must have an upcaster to the next one."""
        for event_type in self.types.values():
            for version in event_type.versions:
                if version != event_type.current_version and version not in event_type.upcasters:
                    raise ValueError(f"{event_type.name} v{version} has no upcaster")


class UnknownEventType(AppError):
    code = "unknown_event_type"


class InvalidEventPayload(AppError):
    code = "invalid_event_payload"


registry = EventRegistry()


class RunError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    message: str


@registry.contract("run.created", 1, "A run was created. Always seq 1.")
class RunCreatedV1(EventPayload):
    workspace_id: str
    agent_id: str
    input: JsonValue
    parent_run_id: str | None
    parent_tool_call_id: str | None
    created_by_id: int | None
    created_at: str


@registry.contract(
    "run.status_changed",
    1,
    "The run moved from one status to another (only moves in the transition table). "
    "Entering a terminal status carries the output (COMPLETED) or the error (FAILED, CANCELLED).",
)
class RunStatusChangedV1(EventPayload):
    from_status: RunStatus
    to_status: RunStatus
    at: str
    reason: str | None = None
    output: JsonValue = None
    error: RunError | None = None


@registry.contract(
    "run.usage_updated",
    1,
    "Token usage of the run so far (running totals), for usage recorded outside a model "
    "turn. A model turn's own usage is in its MODEL_CALL step's `payload.usage`, which its "
    "`step.created`/`step.updated` carries; the run's totals are the sum of those (the "
    "engine sent this event after every turn until 2026-12; such logs fold the same).",
)
class RunUsageUpdatedV1(EventPayload):
    input_tokens: int
    output_tokens: int


@registry.contract(
    "run.note", 1, "A free-form annotation (operator note, diagnostics); changes no state."
)
class RunNoteV1(EventPayload):
    message: str
    source: str = "system"


@registry.contract(
    "step.created",
    1,
    "A step was appended to the run. A step created already finished (a TOOL_CALL, an "
    "OBSERVATION, a MESSAGE) carries its `finished_at` and needs no `step.updated`.",
)
class StepCreatedV1(EventPayload):
    index: int
    kind: StepKind
    status: StepStatus
    payload: dict[str, JsonValue]
    created_at: str
    finished_at: str | None = None


@registry.contract(
    "step.created",
    2,
    "A step was appended to the run, at the event's `created_at`. A step created already "
    "finished (status not `STARTED`: a TOOL_CALL, an OBSERVATION, a MESSAGE) finished at "
    "that same time and needs no `step.updated`. The step's times are the event's own, "
    "so they are not repeated in the payload (v1 carried `created_at` and `finished_at`).",
)
class StepCreatedV2(EventPayload):
    index: int
    kind: StepKind
    status: StepStatus
    payload: dict[str, JsonValue]


def _without(*names: str) -> Upcaster:
    """An upcaster that drops fields a newer version no longer repeats (derivable from
    the envelope: its run id, or its ``created_at``, which every writer sets from the
    same clock reading as the rows)."""

    def upcast(payload: Payload) -> Payload:
        return {k: v for k, v in payload.items() if k not in names}

    return upcast


registry.upcaster("step.created", 1)(_without("created_at", "finished_at"))


@registry.contract(
    "step.updated", 1, "A step changed status; `payload`, when present, replaces the old one."
)
class StepUpdatedV1(EventPayload):
    index: int
    status: StepStatus
    payload: dict[str, JsonValue] | None = None
    finished_at: str | None = None


@registry.contract(
    "step.updated",
    2,
    "A step changed status; `payload`, when present, replaces the old one. A step that "
    "leaves `STARTED` finished at the event's `created_at` (v1 repeated it as `finished_at`).",
)
class StepUpdatedV2(EventPayload):
    index: int
    status: StepStatus
    payload: dict[str, JsonValue] | None = None


registry.upcaster("step.updated", 1)(_without("finished_at"))


@registry.contract(
    "tool_call.created",
    1,
    "The model asked for a tool call. A call created already finished (refused before "
    "running, or a built-in tool run inside the step) carries its `attempt`, `result`, "
    "`error`, `started_at` and `finished_at` and needs no `tool_call.updated`.",
)
class ToolCallCreatedV1(EventPayload):
    id: str
    step_index: int | None
    tool_name: str
    provider_call_id: str
    arguments: JsonValue
    status: ToolCallStatus
    idempotency_key: str
    created_at: str
    attempt: int = 0
    result: JsonValue = None
    error: RunError | None = None
    started_at: str | None = None
    finished_at: str | None = None


@registry.contract(
    "tool_call.created",
    2,
    "The model asked for a tool call. A call created already finished (refused before "
    "running, or a built-in tool run inside the step) carries its `attempt`, `result`, "
    "`error`, `started_at` and `finished_at` and needs no `tool_call.updated`. The call's "
    "idempotency key is not repeated here: it is always `<run id>:<id>` (v1 carried it).",
)
class ToolCallCreatedV2(EventPayload):
    id: str
    step_index: int | None
    tool_name: str
    provider_call_id: str
    arguments: JsonValue
    status: ToolCallStatus
    created_at: str
    attempt: int = 0
    result: JsonValue = None
    error: RunError | None = None
    started_at: str | None = None
    finished_at: str | None = None


# The key is derived from the run and call ids, which readers have anyway.
registry.upcaster("tool_call.created", 1)(_without("idempotency_key"))


@registry.contract(
    "tool_call.created",
    3,
    "The model asked for a tool call, at the event's `created_at`. A call created already "
    "finished (refused before running, or a built-in tool run inside the step) carries its "
    "`attempt`, `result` and `error` and needs no `tool_call.updated`: it finished at the "
    "event's time, and if it ran (`attempt` 1 or more) it started then too. Its times are "
    "the event's own, so they are not repeated (v2 carried `created_at`, `started_at` and "
    "`finished_at`).",
)
class ToolCallCreatedV3(EventPayload):
    id: str
    step_index: int | None
    tool_name: str
    provider_call_id: str
    arguments: JsonValue
    status: ToolCallStatus
    attempt: int = 0
    result: JsonValue = None
    error: RunError | None = None


registry.upcaster("tool_call.created", 2)(_without("created_at", "started_at", "finished_at"))


@registry.contract(
    "tool_call.updated",
    1,
    "A tool call changed status, attempt, result or error (full new values).",
)
class ToolCallUpdatedV1(EventPayload):
    id: str
    status: ToolCallStatus
    attempt: int
    result: JsonValue = None
    error: RunError | None = None
    started_at: str | None = None
    finished_at: str | None = None


registry.check_complete()
