from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from oneclickdz.server.testing import Service
from tests.server.helpers import client

Api = Callable[..., httpx.Client]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api(service: Service) -> Iterator[Api]:
    """`api(key=None, source_ip=None, svc=service)`: HTTP clients closed after the test."""
    opened: list[httpx.Client] = []

    def make(
        key: str | None = None, source_ip: str | None = None, svc: Service = service
    ) -> httpx.Client:
        c = client(svc, key, source_ip)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()
