"""Run the real `oneclickdz serve` on 127.0.0.1 from a test suite, and drive `oneclickdz admin`.

Our own tests and merchants' test suites use this: the service runs as a separate process on a
free loopback port with its own database, and the code under test talks to it over real HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m oneclickdz ARGS...` to completion, capturing its output."""
    return subprocess.run(
        [PYTHON, "-m", "oneclickdz", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m oneclickdz ARGS...`, fail unless it exits 0, and return its stdout."""
    proc = cli(*args, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"oneclickdz {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


@dataclass
class Service:
    """One `oneclickdz serve` process on a free loopback port, with its own database."""

    workdir: Path
    fulfill_delay: str = "0.2-0.5"
    seed: int | None = 1234
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'service.db'}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "service.db"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"service-{self.port}.log"

    def start(self, timeout: float = 20.0) -> Service:
        args = [
            PYTHON, "-m", "oneclickdz", "serve",
            "--db", self.db_url,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--fulfill-delay", self.fulfill_delay,
            *(["--seed", str(self.seed)] if self.seed is not None else []),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited {self.process.returncode}:\n{self.logs()}")
            # Ready once it accepts connections (uvicorn listens after start-up completes).
            # No HTTP probe: it would use up the faults a test asked for.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"service did not answer within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Crash it (SIGKILL): nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin(self, *args: str) -> str:
        """Run `oneclickdz admin --db <this db> ARGS...`; fail unless it succeeds; its stdout."""
        return run_cli("admin", "--db", self.db_url, *args, env=self.env)

    def create_key(
        self,
        *,
        sandbox: bool = True,
        account: str | None = None,
        balance: str | int | None = None,
        read_only: bool = False,
        allow_ips: Sequence[str] = (),
    ) -> str:
        """Create an API key through the admin command and return it."""
        args = ["create-key", "--sandbox" if sandbox else "--production"]
        if account is not None:
            args += ["--account", account]
        if balance is not None:
            args += ["--balance", str(balance)]
        if read_only:
            args.append("--read-only")
        for ip in allow_ips:
            args += ["--allow-ip", ip]
        out = self.admin(*args).strip().splitlines()
        assert len(out) == 1, out
        return out[0]
