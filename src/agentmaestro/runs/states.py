"""Run, step and tool-call states, and the one table of legal run transitions.

Pure data: no Django imports, so the engine's decision function and the replay fold
can use it too.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    WAITING_FOR_TOOLS = "WAITING_FOR_TOOLS"
    WAITING_FOR_SUBRUN = "WAITING_FOR_SUBRUN"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
WAITING_STATUSES = frozenset(
    {RunStatus.WAITING_FOR_APPROVAL, RunStatus.WAITING_FOR_TOOLS, RunStatus.WAITING_FOR_SUBRUN}
)

# Every legal move of a run; anything not listed raises IllegalTransition.
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: WAITING_STATUSES | TERMINAL_STATUSES,
    RunStatus.WAITING_FOR_APPROVAL: frozenset(
        {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.WAITING_FOR_TOOLS: frozenset(
        {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.WAITING_FOR_SUBRUN: frozenset(
        {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def is_legal(from_status: RunStatus, to_status: RunStatus) -> bool:
    return to_status in RUN_TRANSITIONS[from_status]


class StepKind(StrEnum):
    MODEL_CALL = "MODEL_CALL"
    TOOL_CALL = "TOOL_CALL"
    OBSERVATION = "OBSERVATION"
    SUBRUN = "SUBRUN"
    MESSAGE = "MESSAGE"
    ERROR = "ERROR"


class StepStatus(StrEnum):
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ToolCallStatus(StrEnum):
    PENDING = "PENDING"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


TOOL_CALL_FINAL = frozenset(
    {
        ToolCallStatus.SUCCEEDED,
        ToolCallStatus.FAILED,
        ToolCallStatus.REJECTED,
        ToolCallStatus.CANCELLED,
    }
)
