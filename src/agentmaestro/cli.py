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


def main(argv: list[str] | None = None) -> None:
    args = list(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmaestro.settings")
    export_data_dir(args)
    from django.core.management import execute_from_command_line

    from agentmaestro.config import InsecureConfiguration

    try:
        execute_from_command_line(["agentmaestro", *args])
    except InsecureConfiguration as exc:
        sys.stderr.write(f"agentmaestro: refusing to start: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
