"""The command line's extras: a missing one is a one-line hint and exit 2, and shell completion.

The venv has every extra installed, so each run blocks the modules of one extra in a fresh
process (a `sys.meta_path` finder that refuses them, as if they were not installed) and then
runs the installed console script's own entry point.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from oneclickdz.cli._app import EXTRAS

SERVER_HINT = 'error: this command needs the server extra: pip install "oneclickdz[server]"\n'
TRACKER_HINT = 'error: this command needs the tracker extra: pip install "oneclickdz[tracker]"\n'
CLI_HINT = 'error: the oneclickdz command needs the cli extra: pip install "oneclickdz[cli]"\n'

# argv[1] is a comma-separated list of top-level modules to refuse; the rest is the command.
WITHOUT = """
import sys
from importlib.metadata import entry_points

blocked = frozenset(sys.argv.pop(1).split(","))


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
sys.argv[0] = "oneclickdz"
(script,) = entry_points(group="console_scripts", name="oneclickdz")
sys.exit(script.load()())
"""

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ONECLICKDZ_")}


def without(
    modules: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `oneclickdz ARGS` as if the comma-separated `modules` were not installed."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, modules, *args],
        capture_output=True,
        text=True,
        env={**CLEAN_ENV, **(env or {})},
        timeout=60,
        check=False,
    )


def test_without_the_cli_extra_the_command_says_what_to_install() -> None:
    for args in (["--help"], ["balance"], []):
        ran = without("typer,click,rich", *args)
        assert (ran.returncode, ran.stdout, ran.stderr) == (2, "", CLI_HINT)


def test_service_commands_without_the_server_extra_say_what_to_install(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    for args in (
        ["serve", "--port", "0", "--db", f"sqlite:///{db}"],
        ["admin", "--db", f"sqlite:///{db}", "deposit", "--sandbox", "5"],
        ["demo"],
        ["--json", "demo"],
    ):
        ran = without("starlette,uvicorn", *args)
        assert ran.returncode == 2, ran.stderr
        assert ran.stdout == ""
        if "--json" in args:
            assert '"message": "this command needs the server extra' in ran.stderr
        else:
            assert ran.stderr == SERVER_HINT
    assert not db.exists()  # refused before anything was opened
    # Help still shows, and the SDK's commands need no server.
    helped = without("starlette,uvicorn", "serve", "--help")
    assert helped.returncode == 0 and "--max-body-bytes" in helped.stdout
    assert without("starlette,uvicorn", "--version").returncode == 0


def test_each_module_of_the_server_extra_is_required(tmp_path: Path) -> None:
    for module in ("orjson", "cryptography", "prometheus_client"):
        ran = without(module, "admin", "--db", f"sqlite:///{tmp_path}/x.db", "create-key")
        assert (ran.returncode, ran.stderr) == (2, SERVER_HINT), module


def test_track_commands_without_the_tracker_extra_say_what_to_install(tmp_path: Path) -> None:
    store = str(tmp_path / "tracker.db")
    for modules in ("aiohttp", "cryptography"):
        ran = without(
            modules, "track", "list", env={"ONECLICKDZ_TRACKER_STORE": f"sqlite:///{store}"}
        )
        assert (ran.returncode, ran.stdout, ran.stderr) == (2, "", TRACKER_HINT), modules
    assert not Path(store).exists()


def test_bash_completion_script_and_completions() -> None:
    shown = without("", "--show-completion", "bash")
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _oneclickdz_completion oneclickdz" in shown.stdout
    assert "_ONECLICKDZ_COMPLETE=complete_bash" in shown.stdout
    # What bash runs on TAB, through the environment protocol of that script.
    env = {
        "_ONECLICKDZ_COMPLETE": "complete_bash",
        "COMP_WORDS": "oneclickdz ad",
        "COMP_CWORD": "1",
    }
    completed = without("", env=env)
    assert (completed.returncode, completed.stdout.split()) == (0, ["admin"])
    env.update(COMP_WORDS="oneclickdz admin dep", COMP_CWORD="2")
    assert without("", env=env).stdout.split() == ["deposit"]
    # Completion works without an extra too (the command is not run).
    env.update(COMP_WORDS="oneclickdz serve --max-b", COMP_CWORD="2")
    assert without("starlette", env=env).stdout.split() == ["--max-body-bytes"]


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_extra_check_imports_what_each_extra_installs() -> None:
    """Each requirement of the `server` and `tracker` extras has a module the check imports."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    provided_by = {
        module: {_dist(d) for d in dists} for module, dists in packages_distributions().items()
    }
    for extra, modules in EXTRAS.items():
        for requirement in pyproject["project"]["optional-dependencies"][extra]:
            dist = _dist(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
            if dist in {"typer", "uvloop"}:  # the command line itself; optional on Windows
                continue
            assert any(dist in provided_by.get(m, set()) for m in modules), (extra, dist)
