"""The ``paygate`` console script: the command line, or one line saying the gateway is not
installed.

The project is one distribution, so ``pip install .`` — the SDK alone (README, docs/sdk.md)
— installs the ``paygate`` script too (a script cannot depend on an extra). Importing the
command line there fails on the first server dependency (orjson, SQLAlchemy, …) in a
traceback naming a module the reader never asked for; this says what to install instead.
Nothing server-side is imported at module level, so this module loads with the SDK alone.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main", "NOT_INSTALLED"]

NOT_INSTALLED = ("paygate: the gateway's dependencies are not installed (no module named {module!r}; "
                 "`pip install .` installs the SDK alone): install the gateway from your checkout "
                 "with pip install \".[server]\" (\".[server,postgres]\" for PostgreSQL)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from paygate_server.cli import main as run_command_line
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in ("paygate_server", "paygate_checkout", "paygate"):
            raise  # our own module missing is a broken install, not a missing extra
        print(NOT_INSTALLED.format(module=exc.name), file=sys.stderr)
        return 2
    return run_command_line(argv)
