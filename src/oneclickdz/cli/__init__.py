"""The `oneclickdz` command: the SDK from a terminal, the local API service, and the demo.

    oneclickdz [--api-key K] [--base-url U] [--json] COMMAND ...

Each command group lives in its own module; importing them registers their commands on `app`.
The exit codes are `ExitCode` (and `oneclickdz --help`). This package imports nothing until
used, so that `main` can tell a user without the `cli` extra (typer) how to install it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ._app import app
    from ._core import ExitCode

__all__ = ["ExitCode", "app", "main"]

CLI_HINT = 'error: the oneclickdz command needs the cli extra: pip install "oneclickdz[cli]"'
_CLI_MODULES = frozenset({"typer", "click", "rich", "shellingham"})
_USAGE = 2  # ExitCode.USAGE, which cannot be imported without typer


def _load_app() -> Any:
    """The typer app with every command group registered (importing a group registers it)."""
    from . import _account, _catalog, _demo, _orders, _pay, _service, _topups, _track  # noqa: F401
    from ._app import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    if name == "ExitCode":
        from ._core import ExitCode

        return ExitCode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> NoReturn:
    """The console script `oneclickdz` (and `python -m oneclickdz`)."""
    try:
        from typer.main import get_command

        command = get_command(_load_app())
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLI_MODULES:
            raise
        print(CLI_HINT, file=sys.stderr)
        raise SystemExit(_USAGE) from None
    command.main(prog_name="oneclickdz")
    raise SystemExit(0)  # unreachable: main() exits with the command's code
