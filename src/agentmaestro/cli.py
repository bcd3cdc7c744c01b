"""The ``agentmaestro`` command: Django's management commands with our settings preset.

``agentmaestro standalone``, ``agentmaestro createtoken USERNAME``, ``agentmaestro
migrate`` … all read the same environment (see docs/configuration.md).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmaestro.settings")
    from django.core.management import execute_from_command_line

    from agentmaestro.config import InsecureConfiguration

    try:
        execute_from_command_line(["agentmaestro", *(argv if argv is not None else sys.argv[1:])])
    except InsecureConfiguration as exc:
        sys.stderr.write(f"agentmaestro: refusing to start: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
