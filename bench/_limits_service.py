"""One service process for bench/bench_limits.py, started as `oneclickdz serve` starts it.

    python -m bench._limits_service DB_URL PORT {memory,redis,postgresql} [STATE_URL] [PREFIX]

The limit state is the benchmark's choice: memory, Redis (`--redis`), or PostgreSQL beside the
SQLite store (no `serve` option gives that mix: it is set on the built service before it
starts, through `Authenticator.limits`). Rate limit on but never reached; logs at warning.
"""

from __future__ import annotations

import sys

import uvicorn

from oneclickdz.server import logs
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.limits import (
    FailOpen,
    LimitPolicy,
    MemoryLimits,
    PostgresLimits,
    shared_time,
)
from oneclickdz.server.runtime import build, listen, server_config

RATE_LIMIT = 10**9  # a token taken on every request, never a refusal


def main(argv: list[str]) -> None:
    db_url, port, kind, *rest = argv
    state_url, prefix = [*rest, "", ""][:2]
    config = ServerConfig(
        db_url=db_url,
        host="127.0.0.1",
        port=int(port),
        fulfill_delay=(0.0, 0.0),
        seed=1,
        rate_limit=RATE_LIMIT,
        log_level="warning",
        redis_url=state_url if kind == "redis" else None,
        redis_prefix=prefix or "oneclickdz",
    )
    logs.configure(config.log_level)
    sock = listen(config.host, config.port)
    with sock:
        app, backend = build(config)
        auth = backend.auth
        if kind == "postgresql":
            policy = LimitPolicy.of(config)
            shared = PostgresLimits(state_url, policy, shared_time(auth.clock))
            shared.setup()
            auth.limits = FailOpen(shared, MemoryLimits(policy, auth.clock))
        if auth.limits.name != kind:
            raise SystemExit(f"asked for {kind} limits, built {auth.limits.name}")
        uvicorn.Server(server_config(app, config, loop="uvloop")).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
