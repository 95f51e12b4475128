"""Run the real service on 127.0.0.1 from a test suite: the code under test talks HTTP to it.

`Service` runs `oneclickdz serve` as a separate process and drives `oneclickdz admin` (our own
tests). `MerchantService` runs it inside the test's process, with ready clients and helpers: it
is what the pytest fixture `oneclickdz_service` (`oneclickdz.pytest_plugin`) yields.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from oneclickdz._transport import AsyncHTTPXTransport, HTTPXTransport
from oneclickdz.client import (
    AsyncClient,
    Client,
)
from oneclickdz.polling import PollPolicy

if TYPE_CHECKING:
    from oneclickdz.server.runtime import RunningService

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


def _serving(port: int) -> bool:
    """Whether the service on `port` has started: it takes a connection and closes it after we
    close our side. The socket is bound before start-up, so a connect alone proves nothing (the
    kernel queues it). No HTTP request: it would use up the faults a test asked for."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as probe:
            probe.shutdown(socket.SHUT_WR)
            probe.settimeout(0.2)
            probe.recv(1)  # EOF (or any answer) once the server handles the connection
            return True
    except OSError:  # refused, or no answer yet (a timeout is an OSError too)
        return False


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
    # Another database than `service.db` in the workdir: a PostgreSQL URL (then set
    # ONECLICKDZ_VAULT_KEY in `env`), or the SQLite file of another service, to share it.
    db: str | None = None

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.workdir / 'service.db'}"

    @property
    def db_path(self) -> Path:
        """The SQLite file (a ValueError for a PostgreSQL database)."""
        from oneclickdz.server.store.sqlite import sqlite_path

        return sqlite_path(self.db_url)

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
            if _serving(self.port):
                return self
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


# -- the merchant's kit: the service in this process ------------------------------------------

MERCHANT_ACCOUNT = "merchant"
MERCHANT_BALANCE = Decimal(1_000_000)  # DZD: enough for any test's orders
FAST_FULFILMENT = (0.05, 0.2)  # seconds from placement to a final status
# Top-ups 100 times faster than documented: a mobile top-up is final within 0.23 s, an internet
# recharge within 0.45 s (a QUEUED one moves on after 7-29 minutes: `advance` the clock).
FAST_TOPUPS = 0.01
# Checks at the pace of the fast fulfilment; a wait that cannot end fails in seconds, not minutes.
FAST_POLL = PollPolicy(interval=0.05, max_attempts=None, timeout=10.0)
Card = tuple[str, str, str, str]  # productId, typeId, code, serial


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the kit: building one per client costs ~30 ms."""
    return ssl.create_default_context()


class MerchantService:
    """The real service running in this process with a fresh database, for one test.

    `client` and `async_client` use a sandbox key (`api_key`) of the account `merchant`, holding
    1,000,000 DZD, and wait for orders at the pace of the fast fulfilment (`poll_policy`).
    The helpers change the service from outside, as its operator would: keys, deposits, card
    imports, fault rules, and time (`finish`, `advance`).
    """

    def __init__(self, running: RunningService, workdir: Path, poll_policy: PollPolicy) -> None:
        self.running = running
        self.base_url = running.base_url
        self.poll_policy = poll_policy
        self._workdir = workdir
        self._clients: list[Client] = []
        self._async_clients: list[AsyncClient] = []
        self.api_key = self.create_key(balance=MERCHANT_BALANCE)
        self.client = self.client_for(self.api_key)
        self.async_client = self.async_client_for(self.api_key)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        fulfill_delay: tuple[float, float] = FAST_FULFILMENT,
        faults: str = "",
        seed: int | None = None,
        rate_limit: int = 0,
        poll_policy: PollPolicy = FAST_POLL,
        topup_delay_scale: float = FAST_TOPUPS,
    ) -> MerchantService:
        """Start the service on a free loopback port with a new database in `workdir`."""
        from oneclickdz.server.config import ServerConfig
        from oneclickdz.server.runtime import start_in_thread

        workdir.mkdir(parents=True, exist_ok=True)
        db = workdir / "oneclickdz.db"
        _write_vault_key(db.with_name(db.name + ".key"))
        config = ServerConfig(
            db_url=f"sqlite:///{db}",
            host="127.0.0.1",
            port=0,
            fulfill_delay=fulfill_delay,
            faults=faults,
            seed=seed,
            rate_limit=rate_limit,
            metrics=False,
            topup_delay_scale=topup_delay_scale,
        )
        running = start_in_thread(config)
        try:
            return cls(running, workdir, poll_policy)
        except BaseException:
            running.stop()
            raise

    @property
    def env(self) -> dict[str, str]:
        """`ONECLICKDZ_API_KEY` and `ONECLICKDZ_BASE_URL` for code that reads its settings."""
        return {"ONECLICKDZ_API_KEY": self.api_key, "ONECLICKDZ_BASE_URL": self.base_url}

    # -- clients ---------------------------------------------------------------------------

    def client_for(self, api_key: str) -> Client:
        """A `Client` of this service for another key (closed with the service)."""
        client = Client(
            api_key,
            base_url=self.base_url,
            transport=HTTPXTransport(verify=_tls_context()),
            poll_policy=self.poll_policy,
        )
        self._clients.append(client)
        return client

    def async_client_for(self, api_key: str) -> AsyncClient:
        """An `AsyncClient` of this service for another key (closed with the service).

        It keeps no idle connection, so it works from any event loop a test runs it in.
        """
        transport = AsyncHTTPXTransport(
            verify=_tls_context(), limits=httpx.Limits(max_keepalive_connections=0)
        )
        client = AsyncClient(
            api_key, base_url=self.base_url, transport=transport, poll_policy=self.poll_policy
        )
        self._async_clients.append(client)
        return client

    # -- the operator's side ---------------------------------------------------------------

    def create_key(
        self,
        *,
        sandbox: bool = True,
        account: str = MERCHANT_ACCOUNT,
        balance: Decimal | int | str | None = None,
        read_only: bool = False,
        allow_ips: Sequence[str] = (),
    ) -> str:
        """A new API key (its account is created if new), with `balance` DZD deposited."""
        from oneclickdz.server import admin

        return admin.create_key(
            self.running.backend.store,
            "SANDBOX" if sandbox else "PRODUCTION",
            account,
            None if balance is None else Decimal(balance),
            read_only,
            allow_ips,
        )

    def production_key(
        self, balance: Decimal | int | str = MERCHANT_BALANCE, account: str = MERCHANT_ACCOUNT
    ) -> str:
        """A production key: its orders deliver the codes imported with `import_cards`."""
        return self.create_key(sandbox=False, account=account, balance=balance)

    def deposit(
        self,
        amount: Decimal | int | str,
        *,
        account: str = MERCHANT_ACCOUNT,
        sandbox: bool = True,
    ) -> Decimal:
        """Credit an account's sandbox (or production) balance; returns the new balance."""
        from oneclickdz.server import admin

        store = self.running.backend.store
        return admin.deposit(
            store, account, "SANDBOX" if sandbox else "PRODUCTION", Decimal(amount)
        )

    def import_cards(self, cards: Iterable[Card]) -> int:
        """Add production codes, `(product_id, type_id, code, serial)` each, to the inventory.

        All or nothing, as `oneclickdz admin import-cards`; returns how many were added.
        """
        from oneclickdz.server import admin

        path = self._workdir / f"cards-{os.urandom(4).hex()}.csv"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(cards)
            backend = self.running.backend
            return admin.import_cards(backend.store, backend.vault, path)
        finally:
            path.unlink()  # the codes are secrets: no copy stays on disk in the clear

    def set_faults(self, rules: str) -> None:
        """Put fault rules in force from the next request, e.g. "checkOrder:0.5:503"; "" clears.

        The syntax is `oneclickdz serve --faults`: route:rate:fault[:xN], comma-separated.
        """
        self.running.set_faults(rules)

    def finish(self, *order_ids: str) -> None:
        """Make these orders final now, with the outcome their time would have brought."""
        self.running.finish(*order_ids)

    def advance(self, seconds: float) -> int:
        """Move the service's time forward: orders due by then are final when this returns
        (lockouts and rate limits age too). Returns how many orders came due."""
        return self.running.advance(seconds)

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every client made here and stop the service."""
        try:
            for client in self._clients:
                client.close()
            if self._async_clients:
                asyncio.run(_close_all(self._async_clients))
        finally:
            self.running.stop()


async def _close_all(clients: Sequence[AsyncClient]) -> None:
    for client in clients:
        await client.close()


def _write_vault_key(path: Path) -> None:
    """A fresh vault key beside the database (mode 0600), so the service creates none itself."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
