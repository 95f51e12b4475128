"""Redis for the tests: the server at `$ONECLICKDZ_TEST_REDIS` (default
`redis://127.0.0.1:6379/0`), one key prefix per test (`fresh_prefix()`), and a private
`redis-server` a test may stop (`RedisProcess`). Where no Redis answers, the tests that need one
skip with one line, or fail when `ONECLICKDZ_REQUIRE_POSTGRES=1` (CI: every backing server is
required there), as `tests/pg.py` does for PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from oneclickdz.server.testing import free_port
from tests.pg import unavailable

__all__ = ["URL", "RedisProcess", "forget", "fresh_prefix", "require"]

URL = os.environ.get("ONECLICKDZ_TEST_REDIS", "redis://127.0.0.1:6379/0")

_state: dict[str, str] = {}  # "error": why there is no Redis, once known


def require() -> None:
    """Skip the calling test when no Redis answers at URL (fail instead when required)."""
    if "ok" in _state:
        return
    if "error" not in _state:
        import redis

        try:
            with redis.Redis.from_url(URL, socket_connect_timeout=3, socket_timeout=3) as r:
                r.ping()
            _state["ok"] = URL
            return
        except (redis.RedisError, OSError) as exc:
            _state["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    unavailable(f"no Redis at {URL} ({_state['error']})")


def fresh_prefix() -> str:
    """A key prefix no other test uses (calls `require()` first)."""
    require()
    return f"oneclickdz-test:{os.getpid()}:{secrets.token_hex(4)}"


def forget(prefix: str, url: str = URL) -> None:
    """Delete every key under `prefix:` (they would expire by themselves; this is tidiness)."""
    import redis

    with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as r:
        for key in r.scan_iter(match=f"{prefix}:*", count=500):
            r.delete(key)


class RedisProcess:
    """A `redis-server` of our own on a free loopback port, without persistence: one a test can
    stop and start again (the shared one stays untouched)."""

    def __init__(self, workdir: Path) -> None:
        program = shutil.which("redis-server")
        if program is None:
            unavailable("no redis-server program to run a private Redis")
        self.program = str(program)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> RedisProcess:
        import redis

        args = [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_connect_timeout=1) as r:
                    r.ping()
                return self
            except (redis.RedisError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
