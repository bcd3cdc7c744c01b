"""Small formatting filters for the console's templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from agentmaestro.runs.models import AgentRun

register = template.Library()

EXCERPT_CHARS = 90


@register.filter
def prompt_excerpt(run: AgentRun) -> str:
    """The run's prompt on one line, clipped; the input as JSON text when it has none."""
    value: Any = run.input.get("prompt") if isinstance(run.input, dict) else None
    text = " ".join(str(value if value is not None else run.input).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "\u2026"


@register.filter
def seconds_between(start: datetime | None, end: datetime | None) -> str:
    """A duration like "850 ms", "4.2 s" or "3 m 05 s"; "" when it has not started."""
    if start is None:
        return ""
    return format_seconds(((end or timezone.now()) - start).total_seconds())


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@register.filter
def run_duration(run: AgentRun) -> str:
    return seconds_between(run.started_at, run.finished_at)


@register.filter
def short_id(value: object) -> str:
    return str(value)[:8]


@register.filter
def status_label(status: str) -> str:
    return str(status).replace("_", " ").lower()
