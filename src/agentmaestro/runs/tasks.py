"""Celery tasks of the engine: thin wrappers that take ids and call the engine."""

from __future__ import annotations

import logging
import uuid

from celery import Task, shared_task
from django.db.models import F

from agentmaestro.agents.providers.base import ProviderError
from agentmaestro.runs.engine import activities, executor
from agentmaestro.runs.engine.tick import drive
from agentmaestro.runs.models import AgentRun

logger = logging.getLogger(__name__)

MODEL_MAX_RETRIES = activities.MODEL_MAX_RETRIES


@shared_task(name="runs.tick", ignore_result=True)
def run_tick(run_id: str) -> None:
    key = uuid.UUID(run_id)
    try:
        drive(key)
    except Exception:
        # Counted, so the reconciler can fail a run that can never tick instead of
        # retrying it forever; then re-raised for Celery's log. A step that writes
        # resets the count (engine/store/).
        AgentRun.objects.filter(id=key).update(tick_failures=F("tick_failures") + 1)
        raise


@shared_task(name="runs.model_call", bind=True, ignore_result=True, max_retries=MODEL_MAX_RETRIES)
def model_call(self: Task, step_id: int) -> None:  # type: ignore[type-arg]
    local = executor.current()
    if local is not None and local.submit(step_id, self.request.retries, wait=True):
        # This worker runs model calls on its event loop (runs/engine/executor.py); it
        # waited for room there, so the broker keeps what the worker cannot take. The
        # message is acknowledged once handed over: if the process dies, the reconciler
        # finds the call unclaimed or its lease expired and sends it again. (Refused
        # only while the worker shuts down: then the call runs here, as without it.)
        return
    claim = activities.claim_model_call(step_id)
    if claim is None:
        return
    try:
        response = activities.run_model_call(step_id, claim)
    except ProviderError as error:
        countdown = activities.retry_delay(error, self.request.retries)
        if countdown is not None:
            activities.release_model_call(step_id, claim)
            logger.info("model call %s: %s, retrying in %.1fs", step_id, error.code, countdown)
            raise self.retry(countdown=countdown) from error
        drive(claim.run_id, (activities.model_failure(step_id, claim, error),))
        return
    drive(claim.run_id, (activities.model_result(step_id, claim, response),))


@shared_task(name="runs.tool_call", ignore_result=True)
def tool_call(call_id: str) -> None:
    key = uuid.UUID(call_id)
    claim = activities.claim_tool_call(key)
    if claim is None:
        return
    status, result, error = activities.run_tool_call(key, claim)
    drive(claim.run_id, (activities.tool_result(key, claim, status, result, error),))


@shared_task(name="runs.reconcile", ignore_result=True)
def reconcile() -> None:
    from agentmaestro.runs.services.reconciler import reconcile as reconcile_runs

    reconcile_runs()
