"""The merchant's testing kit: a pytest plugin with the fixture `oneclickdz_service`.

Registered through the `pytest11` entry point; it imports the service only when the fixture is
used, so installing the SDK without the `server` extra leaves pytest untouched.

    def test_my_shop_handles_a_partial_order(oneclickdz_service):
        outcome = oneclickdz_service.client.gift_cards.process_order(PRODUCT, "TEST_PARTIAL", 4)
        assert 0 < outcome.delivered < 4

Options for one test (or a module, with `pytestmark`) go in the marker
`@pytest.mark.oneclickdz(fulfill_delay=(low, high), faults="...", seed=N, rate_limit=N)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from oneclickdz.server.testing import MerchantService

SERVER_HINT = 'the oneclickdz_service fixture needs the service: pip install "oneclickdz[server]"'
MARKER = (
    "oneclickdz(fulfill_delay=(low, high), faults='route:rate:fault', seed=None, rate_limit=0): "
    "options of the oneclickdz_service fixture"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def oneclickdz_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MerchantService]:
    """The real OneClickDZ service in this process, on a free port, with a fresh database.

    Yields a `MerchantService`: `.client` and `.async_client` (a sandbox key holding
    1,000,000 DZD, waits paced for its fast fulfilment), `.base_url`, `.api_key`, and the
    helpers `finish`, `advance`, `set_faults`, `import_cards`, `create_key`, `production_key`
    and `deposit`. Everything is closed and stopped after the test.
    """
    kit = _load_kit()
    marker = request.node.get_closest_marker("oneclickdz")
    options = dict(marker.kwargs) if marker is not None else {}
    service = kit.start(tmp_path / "oneclickdz", **options)
    try:
        yield service
    finally:
        service.close()


def _load_kit() -> type[MerchantService]:
    """The kit's class, importing the service now; a missing `server` extra fails the test with
    the one-line hint."""
    try:
        import uvicorn  # noqa: F401  (the runtime imports it only when it starts a server)

        import oneclickdz.server.runtime  # noqa: F401  (Starlette, the vault's cryptography)
        from oneclickdz.server.testing import MerchantService
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "oneclickdz":
            raise  # one of our own modules is missing: a broken install, not a missing extra
        pytest.fail(SERVER_HINT, pytrace=False)
    return MerchantService
