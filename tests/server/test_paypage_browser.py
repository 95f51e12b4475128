"""The OCPay pay page in a real browser: Debian's headless Chromium, driven through Selenium and
Debian's matching chromedriver (`make install` installs both).

A payer opens the link's `paymentUrl`, chooses a method and pays: checkPayment turns CONFIRMED,
the balance grows by the net amount, and the page returns the payer to `redirectUrl` by itself.
Another link is cancelled: FAILED. A screenshot of the page is saved under tests/artifacts/.

Without Chromium this test skips with one line, unless ONECLICKDZ_REQUIRE_BROWSER or CI is set:
then it fails, so CI can never skip it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest

from oneclickdz.server.paypage import REDIRECT_SECONDS
from oneclickdz.server.testing import Service
from tests import pg
from tests.server.helpers import client, ok

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRED = bool(os.environ.get("ONECLICKDZ_REQUIRE_BROWSER") or os.environ.get("CI"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT = 10 + REDIRECT_SECONDS  # seconds, at most, for a page or the redirect to arrive


def _unavailable(reason: str) -> NoReturn:
    pg.unavailable(
        f"{reason} (`make install` installs Debian's chromium and chromium-driver)",
        required=REQUIRED,
        because="the browser test must run here (CI or ONECLICKDZ_REQUIRE_BROWSER is set)",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, through chromedriver (both Debian's, of the same version)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        _unavailable(f"no browser for the pay page test: {', '.join(missing)} not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        _unavailable("selenium is not installed (make install)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root, in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=900,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _balance(c: Any) -> Decimal:
    return Decimal(str(ok(c.get("/account/balance"))["balance"]))


def test_a_payer_pays_in_the_browser_and_returns_to_the_shop(
    browser: Any, service: Service, sandbox_key: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    shop = f"{service.base_url}/ping?shop=1"  # a page of the service the test can see
    with client(service, sandbox_key) as c:
        link = ok(
            c.post(
                "/ocpay/createLink",
                json={
                    "productInfo": {"title": "Abonnement <Premium>", "amount": 2500,
                                    "description": "Un mois d'accès"},
                    "feeMode": "SPLIT_FEE",
                    "successMessage": "Merci pour votre achat !",
                    "redirectUrl": shop,
                },
            )
        )  # fmt: skip
        ref = link["paymentRef"]
        before = _balance(c)

        browser.get(link["paymentUrl"])
        assert browser.title == "Pay: Abonnement <Premium> - OCPay"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Abonnement <Premium>"
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert "2,512.50 DZD" in browser.find_element(By.CLASS_NAME, "total").text
        cib = browser.find_element(By.ID, "method-cib")
        assert cib.is_selected()
        # The label chooses its radio; Tab leaves the group for the Pay button, focus visible.
        browser.find_element(By.CSS_SELECTOR, "label[for=method-edahabia]").click()
        edahabia = browser.find_element(By.ID, "method-edahabia")
        assert edahabia.is_selected() and not cib.is_selected()
        edahabia.send_keys(Keys.TAB)
        pay = browser.switch_to.active_element
        assert pay.get_attribute("value") == "pay"
        assert pay.text == "Pay 2,512.50 DZD"
        assert pay.value_of_css_property("outline-style") == "solid"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "paypage.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 1000

        pay.click()
        # The page as it came (it leaves for the shop after a few seconds).
        done = WebDriverWait(browser, WAIT).until(
            lambda b: b.page_source if "Payment confirmed" in b.page_source else False
        )
        assert '<p role="status">Merci pour votre achat !</p>' in done
        confirmed = ok(c.get(f"/ocpay/checkPayment/{ref}"))
        assert confirmed["status"] == "CONFIRMED"
        assert confirmed["transactionDetails"]["paymentMethod"] == "EDAHABIA"
        assert confirmed["transactionDetails"]["amount"] == 2512.5
        assert _balance(c) - before == Decimal("2487.50")  # 2500 less half of its 25 DZD fee
        # The page returns the payer to the shop by itself, saying how it went.
        WebDriverWait(browser, WAIT).until(lambda b: b.current_url.startswith(shop))
        back = parse_qs(urlsplit(browser.current_url).query)
        assert back == {"shop": ["1"], "paymentRef": [ref], "status": ["CONFIRMED"]}
        assert '"api":"ok"' in browser.page_source.replace(" ", "")

        # Another link: the payer cancels, and is returned to the shop too.
        other = ok(
            c.post(
                "/ocpay/createLink",
                json={"productInfo": {"title": "Gift", "amount": 900}, "redirectUrl": shop},
            )
        )
        browser.get(other["paymentUrl"])
        browser.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
        WebDriverWait(browser, WAIT).until(lambda b: b.current_url.startswith(shop))
        back = parse_qs(urlsplit(browser.current_url).query)
        assert back == {"shop": ["1"], "paymentRef": [other["paymentRef"]], "status": ["FAILED"]}
        assert ok(c.get(f"/ocpay/checkPayment/{other['paymentRef']}"))["status"] == "FAILED"
        assert _balance(c) - before == Decimal("2487.50")  # the cancelled link moved nothing

        # Opening a used link again says so.
        browser.get(link["paymentUrl"])
        assert browser.find_element(By.TAG_NAME, "h1").text == "This payment link was already paid"
