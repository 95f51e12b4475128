"""The `oneclickdz` command: the SDK from a terminal, the local API service, and the demo.

    oneclickdz [--api-key K] [--base-url U] [--json] COMMAND ...

Each command group lives in its own module; importing them registers their commands on `app`.
The exit codes are `ExitCode` (and `oneclickdz --help`).
"""

from __future__ import annotations

from typing import NoReturn

from . import _account, _catalog, _demo, _orders, _service, _track
from ._app import app
from ._core import ExitCode

__all__ = ["ExitCode", "app", "main"]

del _account, _catalog, _demo, _orders, _service, _track


def main() -> NoReturn:
    """The console script `oneclickdz` (and `python -m oneclickdz`)."""
    from typer.main import get_command

    get_command(app).main(prog_name="oneclickdz")
    raise SystemExit(0)  # unreachable: main() exits with the command's code
