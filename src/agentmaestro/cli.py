"""The ``agentmaestro`` command: Django's management commands with our settings preset.

``agentmaestro standalone``, ``agentmaestro createtoken USERNAME``, ``agentmaestro
migrate`` … all read the same environment (see docs/configuration.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def export_data_dir(args: list[str]) -> None:
    """Make ``standalone --data-dir DIR`` the ``AGENTMAESTRO_DATA_DIR`` of this process.

    Settings are read once, when Django loads them, before any command parses its
    options; the data directory decides where the database and the secret key are, so
    it has to be in the environment first.
    """
    if not args or args[0] != "standalone":
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir")
    known, _ = parser.parse_known_args(args[1:])
    if known.data_dir:
        os.environ["AGENTMAESTRO_DATA_DIR"] = str(Path(known.data_dir).expanduser().resolve())


# Our commands, for the overview; tests/test_cli.py checks it names every one of them.
COMMANDS = {
    "standalone": "everything in one process on SQLite: console, API, engine (quickstart)",
    "web": "the ASGI server (uvicorn) of the distributed setup: PostgreSQL + Redis",
    "worker": "a Celery worker for the engine's ticks and activities queues",
    "beat": "the periodic reconciler that restarts stalled work (run exactly one)",
    "run": "start a run through the REST API; --follow streams it live",
    "createtoken": "print a new API token for a user (only its digest is stored)",
    "seeddemo": "create the demo user, workspace, agents and run when missing",
    "eventdocs": "regenerate (or --check) docs/events.md from the event contracts",
}


def overview() -> str:
    from agentmaestro.config import Config

    lines = [
        "usage: agentmaestro COMMAND [options]   (agentmaestro COMMAND --help: its options)",
        "",
        "AgentMaestro: durable, deterministic orchestration for tool-using LLM agents.",
        "",
        "commands:",
        *(f"  {name:<13}{text}" for name, text in COMMANDS.items()),
        "  help --all   Django's management commands too (migrate, createsuperuser, …)",
        "",
        "environment (every command reads the same; docs/configuration.md):",
    ]
    for field in Config.model_fields.values():
        default = field.default
        if isinstance(default, list):
            default = ",".join(default)
        shown = "" if default in (None, "") else f" [{default}]"
        lines.append(f"  {field.alias:<34}{field.description}{shown}")
    lines.append(f"  {'AGENTMAESTRO_URL, …_TOKEN':<34}server and API token of `agentmaestro run`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = list(argv if argv is not None else sys.argv[1:])
    if args in ([], ["-h"], ["--help"], ["help"]):
        print(overview())
        return
    if args == ["help", "--all"]:
        args = ["help"]
    if args and args[0] == "run":
        # A client of a running server: no settings, database or Django to load.
        from agentmaestro.client import main as run_main

        raise SystemExit(run_main(args[1:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmaestro.settings")
    export_data_dir(args)
    if args and args[0] == "web":
        from agentmaestro.console.management.commands.web import web_environment_defaults

        web_environment_defaults(os.environ)
    from django.core.management import execute_from_command_line

    from agentmaestro.config import InsecureConfiguration

    try:
        execute_from_command_line(["agentmaestro", *args])
    except InsecureConfiguration as exc:
        sys.stderr.write(f"agentmaestro: refusing to start: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
