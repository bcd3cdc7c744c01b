"""Model calls as coroutines: one event loop per worker process, a few engine threads.

A model call is a second of waiting and a few milliseconds of work. On Celery's thread
pool each call in flight was a thread, a broker message and a task, and a worker with
1,000 threads spent its core switching among them (docs/engine.md, "Model calls in a
worker"). Here, in a worker that consumes the activities queue:

* every call is a coroutine on one event loop thread, using the provider's async client
  (``acomplete``; a provider without one runs ``complete`` on a helper thread);
* the database work around it — the claim and the conversation before, the engine step
  (``tick.drive``) after — runs on a small pool of *engine threads*, each with its own
  connection, never on the loop;
* the step that finishes a call starts the run's next one (``dispatch.start_activities``)
  and it comes straight back here: no broker message, no Celery task.

Nothing about crash safety changes. A call is claimed with the same conditional
``claim_model_call`` (``attempt`` is the fencing token) and its result recorded by the
same fenced step. If the process dies, each of its calls is either unclaimed (the
reconciler re-sends a STARTED model step nobody leased) or leased to the dead process
(re-sent once the lease expires); a late result of a superseded attempt is discarded.
On a graceful stop the calls still in flight give their leases back, so the reconciler
hands them on at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers._common import close_async_clients
from agentmaestro.agents.providers.base import (
    AsyncModelProvider,
    ModelRequest,
    ModelResponse,
    ProviderError,
)
from agentmaestro.runs.engine import activities
from agentmaestro.runs.engine.activities import Claim
from agentmaestro.runs.engine.plan import ActivityResult
from agentmaestro.runs.events.broadcast import broadcaster

logger = logging.getLogger(__name__)

# Past the provider's own timeout, how long a call may still take before it is cut off
# (the SDK's timeout bounds each read; this bounds the whole call, as the Celery time
# limit does on the thread path).
TIMEOUT_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ExecutorSettings:
    # Model calls in flight at once (each an open HTTP request); past it, a worker's
    # Celery threads wait and follow-up calls go to the broker.
    max_calls: int = 1000
    # Threads doing the database work of the calls; each holds a connection while busy.
    engine_threads: int = 4


class ModelCallExecutor:
    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._lock = threading.Condition()
        self._calls = 0  # accepted and not finished
        self._accepting = True
        self._claims: dict[int, Claim] = {}  # step id -> its live claim (for a stop)
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._engine = ThreadPoolExecutor(
            settings.engine_threads, thread_name_prefix="agentmaestro-engine"
        )
        # For providers without ``acomplete``; threads are only made when used.
        self._blocking = ThreadPoolExecutor(
            settings.max_calls, thread_name_prefix="agentmaestro-model-sync"
        )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentmaestro-model-calls", daemon=True
        )
        self._thread.start()

    # --- accepting work (any thread) ------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._calls

    @property
    def accepting(self) -> bool:
        return self._accepting

    def submit(self, step_id: int, retries: int = 0, *, wait: bool = False) -> bool:
        """Take the model call of step ``step_id``; False if full (or stopping).

        ``wait``: block while full (a Celery thread: the broker keeps the rest). Never
        from an engine thread — only finished calls make room, and they need those.
        """
        with self._lock:
            while self._accepting and self._calls >= self.settings.max_calls:
                if not wait:
                    return False
                self._lock.wait()
            if not self._accepting:
                return False
            self._calls += 1
        try:
            self._loop.call_soon_threadsafe(self._start, step_id, retries)
        except RuntimeError:  # the loop is closed: shutting down
            self._finished()
            return False
        return True

    def _finished(self) -> None:
        with self._lock:
            self._calls -= 1
            self._lock.notify()

    # --- on the loop ------------------------------------------------------------------

    def _start(self, step_id: int, retries: int) -> None:
        task = self._loop.create_task(self._call(step_id, retries))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # A database error, say. Its claim's lease runs out and the reconciler sends
            # the call again, as when a Celery task raises.
            logger.error("model call failed", exc_info=error)

    async def _call(self, step_id: int, retries: int) -> None:
        slot = True
        try:
            while True:
                prepared = await self._in_engine(_prepare, step_id)
                if prepared is None:
                    return  # done, cancelled, or another worker holds a live lease: fine
                claim, provider_name, request = prepared
                self._claims[step_id] = claim
                try:
                    response = await self._complete(step_id, claim, provider_name, request)
                except ProviderError as error:
                    countdown = activities.retry_delay(error, retries)
                    if countdown is None:
                        outcome = activities.model_failure(step_id, claim, error)
                    else:
                        await self._in_engine(activities.release_model_call, step_id, claim)
                        self._claims.pop(step_id, None)
                        logger.info(
                            "model call %s: %s, retrying in %.1fs", step_id, error.code, countdown
                        )
                        await asyncio.sleep(countdown)
                        retries += 1
                        continue
                else:
                    outcome = activities.model_result(step_id, claim, response)
                # The call's I/O is over: its room goes to the next call before the step,
                # so the run's follow-up call, started by this very step, finds room here.
                slot = False
                self._finished()
                await self._in_engine(_record, claim, outcome)
                self._claims.pop(step_id, None)
                return
        finally:
            # However the call ended (an unexpected error too: its lease then runs out and
            # the reconciler sends it again), it is no longer ours to release on a stop,
            # which copies the claims before it cancels anything.
            self._claims.pop(step_id, None)
            if slot:
                self._finished()

    async def _complete(
        self, step_id: int, claim: Claim, provider_name: str, request: ModelRequest
    ) -> ModelResponse:
        def on_delta(text: str) -> None:
            # Only queued here: the broadcaster's publishing thread sends it, in order,
            # so the loop never waits on Redis (events/broadcast.py).
            try:
                broadcaster.publish(
                    [activities.delta_message(claim.run_id, step_id, claim.step_index, text)]
                )
            except Exception:  # deltas are ephemeral: never fail a call
                logger.warning("publishing a delta failed", exc_info=True)

        provider = get_provider(provider_name)
        try:
            async with asyncio.timeout(request.timeout_seconds + TIMEOUT_GRACE_SECONDS):
                if isinstance(provider, AsyncModelProvider):
                    return await provider.acomplete(request, on_delta)
                return await self._loop.run_in_executor(
                    self._blocking, provider.complete, request, on_delta
                )
        except TimeoutError:
            raise ProviderError(
                "provider_timeout",
                f"The model did not finish within {request.timeout_seconds:g} s.",
                transient=True,
            ) from None

    async def _in_engine[T](self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._engine, _with_connection, fn, *args)

    # --- stopping -----------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop taking calls, let those in flight finish for up to ``timeout`` seconds,
        then give back the leases of the rest so the reconciler hands them on at once.

        Once only: a second call (Celery may signal both a worker's and its process's
        shutdown) returns at once instead of waiting on the loop the first one stopped.
        """
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._lock.notify_all()
        deadline = time.monotonic() + timeout
        while self._calls and time.monotonic() < deadline:
            time.sleep(0.05)
        left = dict(self._claims)

        def cancel_all() -> None:
            for task in list(self._tasks):
                task.cancel()

        self._loop.call_soon_threadsafe(cancel_all)
        for step_id, claim in left.items():
            try:
                _with_connection(activities.release_model_call, step_id, claim)
            except Exception:  # the lease then simply runs out
                logger.warning("could not release model call %s", step_id, exc_info=True)
        self._engine.shutdown(wait=True, cancel_futures=True)
        try:
            asyncio.run_coroutine_threadsafe(close_async_clients(), self._loop).result(5)
        except Exception:  # closing is hygiene; the process is going away anyway
            logger.debug("closing the SDK clients failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._blocking.shutdown(wait=False, cancel_futures=True)
        if left:
            logger.warning("stopped with %d model calls in flight; released them", len(left))


def _with_connection[T](fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on an engine thread as Celery runs a task: a broken or outlived
    connection is dropped before and after (with a pool, it goes back to the pool)."""
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


def _prepare(step_id: int) -> tuple[Claim, str, ModelRequest] | None:
    claim = activities.claim_model_call(step_id)
    if claim is None:
        return None
    provider_name, request = activities.build_model_request(claim.run_id, claim.step_index)
    return claim, provider_name, request


def _record(claim: Claim, outcome: ActivityResult) -> None:
    from agentmaestro.runs.engine.tick import drive

    drive(claim.run_id, (outcome,))


# --- the process's executor --------------------------------------------------------------

_settings: ExecutorSettings | None = None
_current: ModelCallExecutor | None = None
_current_lock = threading.Lock()


def enable(settings: ExecutorSettings) -> None:
    """Run model calls on an executor in this process (the worker command calls this
    when it consumes the activities queue). Started on first use, in the process that
    uses it: a prefork pool's children each get their own."""
    global _settings, _current
    with _current_lock:
        _settings = settings
        if _current is not None and not _current.accepting:
            _current = None


def current() -> ModelCallExecutor | None:
    """This process's executor, or None where model calls go through the broker."""
    global _current
    if _settings is None:
        return None
    executor = _current
    if executor is not None and executor.pid == os.getpid():
        return executor
    with _current_lock:
        if _current is None or _current.pid != os.getpid():
            _current = ModelCallExecutor(_settings)
        return _current


def shutdown(timeout: float = 10.0) -> None:
    """Stop this process's executor, if it started (worker shutdown). It stays the
    process's executor, refusing every call: they go to the broker, or run on the
    Celery thread that brought them."""
    executor = _current
    if executor is not None and executor.pid == os.getpid():
        executor.shutdown(timeout)


def disable(timeout: float = 10.0) -> None:
    """Stop the executor and send model calls through the broker again (tests)."""
    global _settings, _current
    shutdown(timeout)
    with _current_lock:
        _settings = None
        _current = None
