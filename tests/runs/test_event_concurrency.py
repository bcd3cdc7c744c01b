"""Gapless sequencing under real concurrency: threads, each with its own connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from agentmaestro.runs.events.store import append_event
from agentmaestro.runs.models import AgentRun, RunEvent
from tests.factories import Personas

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16
PER_THREAD = 100


def race(workers: list[Callable[[], None]]) -> None:
    """Start all workers at once; re-raise the first error any of them hit."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def wrap(work: Callable[[], None]) -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]


def appender(run: AgentRun, name: str, seen: list[int]) -> Callable[[], None]:
    def work() -> None:
        for i in range(PER_THREAD):
            seen.append(append_event(run.id, "run.note", {"message": f"{name}-{i}"}).seq)

    return work


def log_of(run: AgentRun) -> list[tuple[int, str]]:
    return [
        (seq, payload["message"] if type_ == "run.note" else type_)
        for seq, type_, payload in RunEvent.objects.filter(run=run)
        .order_by("seq")
        .values_list("seq", "type", "payload")
    ]


def test_sixteen_threads_on_one_run_get_exactly_the_seqs_after_run_created(
    personas: Personas,
) -> None:
    run = personas.run()
    seen: list[int] = []
    race([appender(run, f"t{n}", seen) for n in range(THREADS)])
    total = THREADS * PER_THREAD
    # seq 1 is run.created; the 1,600 appends got exactly 2..1601, each once.
    assert sorted(seen) == list(range(2, total + 2))
    log = log_of(run)
    assert [seq for seq, _ in log] == list(range(1, total + 2))
    # Each thread's own events are in the order it appended them.
    for n in range(THREADS):
        mine = [msg for _, msg in log if msg.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{i}" for i in range(PER_THREAD)]
    run.refresh_from_db()
    assert run.last_seq == total + 1


def test_sixteen_runs_in_parallel_each_stay_gapless(personas: Personas) -> None:
    runs = [personas.run() for _ in range(THREADS)]
    seen: dict[int, list[int]] = {n: [] for n in range(THREADS)}
    race([appender(run, f"r{n}", seen[n]) for n, run in enumerate(runs)])
    for n, run in enumerate(runs):
        assert seen[n] == list(range(2, PER_THREAD + 2))
        assert [seq for seq, _ in log_of(run)] == list(range(1, PER_THREAD + 2))


def test_a_rolled_back_append_racing_others_leaves_no_gap(personas: Personas) -> None:
    from django.db import transaction

    run = personas.run()
    seen: list[int] = []

    def rollbacks() -> None:
        for i in range(PER_THREAD):
            try:
                with transaction.atomic():
                    append_event(run.id, "run.note", {"message": f"doomed-{i}"})
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

    race([rollbacks, appender(run, "a", seen), rollbacks, appender(run, "b", seen)])
    log = log_of(run)
    assert [seq for seq, _ in log] == list(range(1, 2 * PER_THREAD + 2))
    assert not [msg for _, msg in log if msg.startswith("doomed")]
