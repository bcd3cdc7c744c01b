"""The engine inside another program: a Celery worker and Celery beat in its threads.

``agentmaestro standalone`` runs the whole product in one process. Its broker is
kombu's ``memory://`` transport (when ``REDIS_URL`` is unset), which only this process
can see, so the worker that consumes it and the beat that schedules the reconciler
must live here too. They are the real Celery worker and beat, on the same tasks,
queues and settings as the distributed deployment; only where they run differs.

Celery in a thread has rules of its own (see STACK-FACTS "Celery inside one process"):

* the app must be the default app, or tasks sent from other threads lose their app;
* signal handlers are only installed on the main thread, so the host stops the
  worker itself (:meth:`InProcessEngine.stop`, after its own Ctrl-C handling);
* one worker per process, and no ``result.get()`` anywhere in it (the worker sets a
  process-wide flag that makes it raise; the engine's tasks keep no results);
* the worker's ``beat=True`` would start beat in a *separate process*, which cannot
  see a ``memory://`` broker, so beat runs as :func:`celery.beat.EmbeddedService` in a
  thread, with an in-memory schedule (no ``celerybeat-schedule`` file).

Everything in ``memory://`` is gone when the process ends. The database is the truth:
:func:`recover_on_start` re-enqueues all unfinished work when the process starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.beat import EmbeddedService, Scheduler
from django.utils import timezone

from agentmaestro.runs.dispatch import ACTIVITIES_QUEUE, TICKS_QUEUE

if TYPE_CHECKING:
    from agentmaestro.runs.services.reconciler import ReconcileReport

logger = logging.getLogger(__name__)

# Threads that run tasks: ticks are short and model or tool calls mostly wait, so a
# few threads keep a demo, or a small team's runs, moving.
DEFAULT_CONCURRENCY = 8
# How long stop() waits for the worker's running tasks to finish.
STOP_TIMEOUT_SECONDS = 15.0
# Celery's per-task INFO lines, shown only when LOG_LEVEL is DEBUG.
QUIET_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


@dataclass
class InProcessEngine:
    """A Celery worker (both queues, thread pool) and beat, in threads of this process."""

    app: Celery | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    beat: bool = True
    _worker: Any = field(default=None, init=False, repr=False)
    _worker_thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _beat: Any = field(default=None, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("this engine was started already (one worker per process)")
        app = self.app or _default_app()
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            # A line per task received and per task done would drown the server's log.
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        # Tasks sent from any thread (request handlers, the beat thread) find this app.
        app.set_default()
        self._worker = app.WorkController(
            hostname=f"standalone-{os.getpid()}@{socket.gethostname()}",
            queues=[TICKS_QUEUE, ACTIVITIES_QUEUE],
            pool_cls="threads",
            concurrency=self.concurrency,
            loglevel="WARNING",
            # Nothing to synchronise with or to tell: this is the only worker.
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
        )
        self._worker_thread = threading.Thread(
            target=self._worker.start, name="celery-worker", daemon=True
        )
        self._worker_thread.start()
        if self.beat:
            self._beat = EmbeddedService(app, thread=True, scheduler_cls=Scheduler)
            self._beat.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop beat, then the worker (warm: running tasks finish). Idempotent."""
        if self._stopped or self._worker is None:
            return
        self._stopped = True
        if self._beat is not None:
            self._beat.stop()
        # A warm shutdown lets running tasks end; an unacknowledged message is lost with
        # the memory broker anyway, and the next start's recovery re-enqueues its work.
        stopper = threading.Thread(target=self._worker.stop, name="celery-worker-stop")
        stopper.start()
        stopper.join(timeout)
        if self._worker_thread is not None:
            self._worker_thread.join(max(0.0, timeout))
            if self._worker_thread.is_alive():
                logger.warning("the in-process worker did not stop within %.0fs", timeout)


def _default_app() -> Celery:
    from agentmaestro.celery import app

    return app


def recover_on_start(*, leases_are_dead: bool) -> ReconcileReport:
    """Re-enqueue every unfinished run's work, at once: the broker lost it all.

    With ``leases_are_dead`` (this process is the only engine on this database, as in
    standalone on SQLite, guarded by the data directory's lock), claims left in the
    database were held by a process that is gone; they are released first, so a model
    or tool call that was cut off runs again now instead of after its lease expires.
    Releasing is safe even if that were wrong: a claim bumps the attempt number, and a
    stale attempt's result is discarded.

    Returns the reconciler's report.
    """
    from agentmaestro.runs.models import AgentStep, ToolCall
    from agentmaestro.runs.services.reconciler import reconcile
    from agentmaestro.runs.states import StepKind, StepStatus, ToolCallStatus

    now = timezone.now()
    if leases_are_dead:
        AgentStep.objects.filter(
            kind=StepKind.MODEL_CALL, status=StepStatus.STARTED, lease_expires_at__gte=now
        ).update(lease_expires_at=None)
        # Expired, so the reconciler puts each back to QUEUED, with its event.
        ToolCall.objects.filter(status=ToolCallStatus.RUNNING, lease_expires_at__gte=now).update(
            lease_expires_at=now - timedelta(seconds=1)
        )
    return reconcile(everything=True)
