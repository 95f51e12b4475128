"""Assembling and running the service: database, vault, generator, fulfilment, HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.types import ASGIApp

from oneclickdz._redact import safe_url
from oneclickdz.server.app import create_app
from oneclickdz.server.auth import Authenticator, MovableClock
from oneclickdz.server.backend import Backend
from oneclickdz.server.catalog import DEFAULT_CATALOG, load_catalog
from oneclickdz.server.chance import Chance
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.dispatcher import Dispatcher
from oneclickdz.server.faults import FaultRules
from oneclickdz.server.fulfilment import Fulfilment
from oneclickdz.server.limits import open_limits
from oneclickdz.server.metrics import ServiceMetrics
from oneclickdz.server.protocol import Limits, protocol_class
from oneclickdz.server.store import Store, Tx, open_store
from oneclickdz.server.vault import Vault, load_or_create_key
from oneclickdz.server.workers import StopRequest, Supervisor, WorkerMain

log = logging.getLogger("oneclickdz.server")
T = TypeVar("T")


def vault_key_file(db_url: str) -> Path | None:
    """Where a generated vault key lives: beside a SQLite file (elsewhere, use the env var)."""
    if not db_url.startswith("sqlite:"):
        return None
    from oneclickdz.server.store.sqlite import sqlite_path

    path = sqlite_path(db_url)
    return path.with_name(path.name + ".key")


def open_database(db_url: str, busy_timeout: float = 5.0) -> tuple[Store, Vault]:
    """Open and migrate the database, check the vault key against it, seed the catalog once."""
    store = open_store(db_url, busy_timeout)
    try:
        vault = Vault(load_or_create_key(vault_key_file(db_url)))

        def initialise(tx: Tx) -> None:
            token = tx.settings.get("vault_check")
            if token is None:
                tx.settings.set("vault_check", vault.check_token())
            else:
                vault.verify(token)
            if tx.settings.get("catalog_seeded") is None:
                load_catalog(tx, DEFAULT_CATALOG)
                tx.settings.set("catalog_seeded", "default")

        store.write_sync(initialise)
    except BaseException:
        store.close()
        raise
    return store, vault


def build(config: ServerConfig, faults: FaultRules | None = None) -> tuple[ASGIApp, Backend]:
    """The service's ASGI app, whose lifespan starts and stops the writer and fulfilment.

    `faults` receives the configured fault rules; a caller keeping it can change them later.
    """
    if faults is None:
        faults = FaultRules()
    faults.set(config.faults)
    chance = Chance(config.seed)
    clock = MovableClock()  # one time for the lockout, the limiter and the key cache
    limits = open_limits(config, clock)  # an unreachable Redis: refused before the database
    store, vault = open_database(config.db_url, config.busy_timeout)
    authenticator = Authenticator(store, limits, clock=clock)
    fulfilment = Fulfilment(
        store, vault, chance.codes, lease=config.fulfil_lease,
        topup_scale=config.topup_delay_scale,
    )  # fmt: skip
    fulfilment.stall = partial(faults.fulfil_delay, chance.faults)
    dispatcher = Dispatcher(
        store, vault, chance.webhooks, allow_private=config.webhook_allow_private,
        concurrency=config.webhook_concurrency, timeout=config.webhook_timeout,
        schedule=config.webhook_retries, owner=fulfilment.owner,
    )  # fmt: skip
    dispatcher.fault = partial(faults.webhook_fault, chance.faults)
    fulfilment.webhook_hold = dispatcher.hold
    fulfilment.on_event = dispatcher.handoff
    backend = Backend(
        store, vault, authenticator, fulfilment, chance, config.fulfill_delay, dispatcher,
        payment_link_ttl=config.payment_link_ttl,
    )  # fmt: skip
    metrics = ServiceMetrics(store, lambda: fulfilment.pending) if config.metrics else None
    if metrics is not None:
        authenticator.observe = metrics.auth_event
        fulfilment.on_final = metrics.order_final
        dispatcher.on_attempt = metrics.webhook_attempt

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store.start()
        # Everything built so far lives as long as the process: keep the collector off it,
        # so full collections under load scan only what requests create (shorter pauses).
        gc.collect()
        gc.freeze()
        worker = asyncio.create_task(fulfilment.run(), name="fulfilment")
        sender = asyncio.create_task(dispatcher.run(), name="webhooks")
        log.info(
            "service started",
            extra={
                "seed": chance.seed,
                "db": safe_url(config.db_url),
                "fulfilmentOwner": fulfilment.owner,
                "fulfillDelay": list(config.fulfill_delay),
                "faults": [str(rule) for rule in faults.rules],
                "rateLimit": config.rate_limit,
                "limits": authenticator.limits.name,
                "webhookAllowPrivate": config.webhook_allow_private,
            },
        )
        try:
            yield
        finally:
            for task in (worker, sender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await authenticator.aclose()
            store.close()
            log.info("service stopped", extra={"pendingOrders": fulfilment.pending})

    return create_app(backend, faults, lifespan, metrics, Limits.of(config)), backend


class CannotListen(OSError):
    """The service cannot listen on its address: in use, or not an address of this machine."""


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on HOST:PORT (port 0: any free port), or `CannotListen`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CannotListen(f"cannot listen on {host}:{port}: {reason or exc}") from None
    sock.set_inheritable(True)
    return sock


def server_config(app: ASGIApp, config: ServerConfig, loop: str = "auto") -> Any:
    """uvicorn's settings for the service: the limits on every connection live here, in
    httptools' protocol bound to them (see `protocol`)."""
    import uvicorn

    return uvicorn.Config(
        app,
        loop=loop,
        http=protocol_class(Limits.of(config)),
        ws="none",  # the API has no WebSocket: an upgrade request is plain HTTP
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # the client address is the peer's; no header may change it
        timeout_keep_alive=int(max(1, round(config.keepalive_timeout))),
    )


class RunningService:
    """A service running in a background thread of this process (see `start_in_thread`)."""

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        port: int,
        backend: Backend,
        loop: asyncio.AbstractEventLoop,
        faults: FaultRules,
    ) -> None:
        self._server = server
        self._faults = faults
        self._thread = thread
        self._loop = loop
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v3"
        self.backend = backend

    def call(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the service's own loop (from any other thread); its result."""
        return asyncio.run_coroutine_threadsafe(work(), self._loop).result(timeout)

    def finish(self, *order_ids: str) -> None:
        """Make these orders final now (their outcome as if their time had come)."""
        self.call(lambda: self.backend.fulfilment.finish_now(list(order_ids)))

    def advance(self, seconds: float) -> int:
        """Move the service's time forward: orders due by then are final when this returns, and
        lockouts, rate-limit waits and cached keys age as much. Returns how many orders were due."""

        async def both() -> int:
            self.backend.auth.clock.advance(seconds)  # refuses a negative advance: nothing moved
            return await self.backend.fulfilment.advance(seconds)

        return self.call(both)

    def set_faults(self, rules: str) -> None:
        """Put these fault rules (`--faults` syntax) in force from the next request; "" clears."""
        self._faults.set(rules)

    def stop(self) -> None:
        """Stop accepting requests, finish in-flight writes, and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(config: ServerConfig, timeout: float = 20.0) -> RunningService:
    """Start the service on 127.0.0.1 in this process (port 0: any free port) and return once
    it accepts requests. Logging is left as the caller configured it."""
    import uvicorn

    sock = listen(config.host, config.port)
    faults = FaultRules()
    try:
        app, backend = build(config, faults)
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(server_config(app, config, loop="asyncio"))

    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve(sockets=[sock])

    def run() -> None:
        with sock:
            asyncio.run(main())

    thread = threading.Thread(target=run, name="oneclickdz-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the service did not start (see the logs)")
        time.sleep(0.01)
    return RunningService(server, thread, sock.getsockname()[1], backend, loops[0], faults)


def serve(config: ServerConfig) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM stop it cleanly): in this process, or
    with `config.workers` > 1 in that many worker processes on the one port (`serve_workers`).

    The address is taken before the database is opened, so a busy port fails at once with
    `CannotListen` and changes nothing.
    """
    import uvicorn

    from oneclickdz.server import logs
    from oneclickdz.server.config import MAX_WORKERS

    if not 1 <= config.workers <= MAX_WORKERS:
        raise ValueError(f"workers: {config.workers} is not within 1..{MAX_WORKERS}")
    logs.configure(config.log_level)
    sock = listen(config.host, config.port)
    with sock:
        if config.workers > 1:
            serve_workers(sock, config)
            return
        app, _ = build(config)
        uvicorn.Server(server_config(app, config, loop="uvloop")).run(sockets=[sock])


def serve_workers(sock: socket.socket, config: ServerConfig) -> None:
    """Serve `sock` with `config.workers` forked processes, supervised (see `workers`).

    This process checks the fault rules and the shared limits' store (Redis or PostgreSQL), and
    opens, migrates and closes the database once, in `build`'s order: a bad setting is refused
    here, once, as `build` would refuse it, and the workers find the schema and the vault key
    ready instead of racing to create them. Each worker then builds its own app: its own
    connections, key cache, fault-rule hit counts (`:xN` counts per worker), metrics and
    fulfilment loop (orders are claimed from the database, so any worker finishes any order);
    rate limits and lockout are shared through Redis or PostgreSQL, or else per worker. With
    `--seed S`, the worker started k-th (0, 1, ...; restarts included) draws from seed S + k,
    so no two workers hand out the same sandbox codes. Raises `WorkersFailing` when workers
    keep dying at start-up.
    """
    from oneclickdz.server.faults import parse_faults
    from oneclickdz.server.limits import check_limits

    parse_faults(config.faults)
    check_limits(config)
    store, _ = open_database(config.db_url, config.busy_timeout)
    store.close()
    Supervisor(config.workers, _worker_main(sock, config)).run()


def _worker_main(sock: socket.socket, config: ServerConfig) -> WorkerMain:
    """The body of one worker process: build the app, serve `sock` until asked to stop."""

    def main(number: int, stop: StopRequest) -> int:
        from dataclasses import replace

        import uvicorn

        seed = None if config.seed is None else config.seed + number
        app, _ = build(replace(config, seed=seed))
        server = uvicorn.Server(server_config(app, config, loop="uvloop"))

        def finish() -> None:
            server.should_exit = True  # uvicorn's own reaction to SIGTERM

        stop.then(finish)  # until uvicorn installs its handlers, and if the signal came early
        server.run(sockets=[sock])
        return 0

    return main
