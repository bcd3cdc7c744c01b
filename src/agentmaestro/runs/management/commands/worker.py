from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run a Celery worker for the engine. Ticks (short, CPU-light) and activities "
        "(model and tool calls, slow I/O) are separate queues. On a small machine run one "
        "worker per core on both (the default queues), e.g. '--pool threads --concurrency "
        "16': a process's Python uses one core at a time (docs/engine.md, 'Running it'); "
        "a larger deployment can scale them apart, e.g. '--queues ticks --pool prefork' "
        "and '--queues activities --pool threads --concurrency 16'. On the activities queue, "
        "model calls run as coroutines on one event loop per process (--model-calls "
        "async, the default: up to --max-model-calls in flight, whatever --concurrency "
        "is) or one per Celery thread (--model-calls threads)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        config = settings.CONFIG
        parser.add_argument("--queues", default="ticks,activities", help="Comma-separated.")
        parser.add_argument(
            "--pool", default="threads", choices=["threads", "prefork", "solo", "gevent"]
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=8,
            help="Celery's pool size: tasks at once (ticks, tool calls; with --model-calls "
            "threads, also model calls).",
        )
        parser.add_argument(
            "--model-calls",
            choices=["async", "threads"],
            default=config.model_calls,
            help="async: model calls are coroutines on this process's event loop, their "
            "database work on --engine-threads, a run's next call handed over in-process; "
            "threads: one Celery task and thread per call. [AGENTMAESTRO_MODEL_CALLS, "
            "%(default)s]",
        )
        parser.add_argument(
            "--max-model-calls",
            type=int,
            default=config.max_model_calls,
            help="async: model calls in flight per process; past it the broker keeps the "
            "rest. [AGENTMAESTRO_MAX_MODEL_CALLS, %(default)s]",
        )
        parser.add_argument(
            "--engine-threads",
            type=int,
            default=config.engine_threads,
            help="async: threads doing the calls' database work (claims, engine steps), "
            "one connection each. [AGENTMAESTRO_ENGINE_THREADS, %(default)s]",
        )
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--hostname", default=None, help="Celery node name.")

    def handle(self, *args: Any, **options: Any) -> None:
        from celery.signals import worker_process_shutdown, worker_shutdown

        from agentmaestro.celery import app
        from agentmaestro.runs.dispatch import ACTIVITIES_QUEUE
        from agentmaestro.runs.engine import executor

        queues = [q.strip() for q in options["queues"].split(",")]
        if options["model_calls"] == "async" and ACTIVITIES_QUEUE in queues:
            if options["max_model_calls"] < 1 or options["engine_threads"] < 1:
                raise SystemExit("--max-model-calls and --engine-threads must be at least 1")
            if options["pool"] == "prefork" and settings.CONFIG.db_pool_size:
                # Celery's Django fixup closes a prefork child's connection pool after
                # every task: under the executor's engine threads, mid-step.
                raise SystemExit(
                    "--pool prefork with --model-calls async needs AGENTMAESTRO_DB_POOL_SIZE=0 "
                    "(Celery closes a prefork child's connection pool after each task); "
                    "or use --pool threads"
                )
            executor.enable(
                executor.ExecutorSettings(
                    max_calls=options["max_model_calls"],
                    engine_threads=options["engine_threads"],
                )
            )
            # Whenever the worker stops (a signal, or Celery's "Unrecoverable error" when
            # the broker goes away), after its pool: calls in flight may finish for a
            # while, the rest give their leases back so the reconciler hands them on at
            # once instead of when the leases run out.
            worker_shutdown.connect(
                lambda **_: executor.shutdown(), weak=False, dispatch_uid="am-executor"
            )
            # A prefork pool's children each run their own executor.
            worker_process_shutdown.connect(
                lambda **_: executor.shutdown(), weak=False, dispatch_uid="am-executor-child"
            )
        argv = [
            "worker",
            f"--queues={options['queues']}",
            f"--pool={options['pool']}",
            f"--concurrency={options['concurrency']}",
            f"--loglevel={options['loglevel']}",
            "--without-gossip",
            "--without-mingle",
        ]
        if options["hostname"]:
            argv.append(f"--hostname={options['hostname']}")
        app.worker_main(argv)
