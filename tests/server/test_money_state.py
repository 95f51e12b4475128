"""A Hypothesis state machine over the money (issue 9).

In any order it places sandbox and production orders over HTTP (several accounts and keys,
duplicate refs, empty stock, amounts beyond the balance), deposits, imports codes (sometimes a
duplicate, which must refuse the whole file), finishes orders, moves the fulfilment clock and
creates, disables and re-enables keys. After every step it reads everything back over HTTP and
checks the ledger, the stock and every order against a model of what should have happened.

Each example runs on its own service and database (starting one takes ~0.2 s), so no state
leaks between examples. Fulfilment delays are hours long: orders leave HANDLING only when a
step finishes them or advances the clock, never by the wall clock during an example.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from oneclickdz.server import admin
from oneclickdz.server.catalog import DEFAULT_CATALOG
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.formats import to_cents
from oneclickdz.server.runtime import RunningService, start_in_thread
from oneclickdz.server.store import Env
from tests import pg
from tests.server.helpers import error, ok

# How much of the state space one CI run covers: examples x steps (see the test's docstring).
MAX_EXAMPLES = 30
PG_EXAMPLES = 12
STEPS = 20

PSN = "507f1f77bcf86cd799439011"
PUBG = "507f1f77bcf86cd799439013"
UNKNOWN_PRODUCT = "507f1f77bcf86cd7994390ff"
HANDLING = "HANDLING"
FULL, PARTIAL, REFUNDED = "FULFILLED", "PARTIALLY_FILLED", "REFUNDED"
ACCOUNTS = ("alice", "bob")
ENVS: tuple[Env, Env] = ("SANDBOX", "PRODUCTION")
KEY_CACHE_TTL = 1.0  # seconds the service's Authenticator may answer from a cached key record
FULFIL_DELAY = (3600.0, 86400.0)  # hours: nothing is due unless a step advances the clock
ADVANCE_MARGIN = 300.0  # clock seconds kept between an advance's target and the next order due
MAX_KEYS = 8  # READ-WRITE and extra read-only keys, all accounts together
# Opening balances and some deposits, in cents: from 50,000 DZD down to nothing.
BALANCES = [5_000_000, 2_000_000, 1_000_000, 200_000, 0, 12_345]


def _catalog() -> tuple[dict[tuple[str, str], tuple[int, int]], dict[str, int]]:
    """(product, type) -> (price in cents, sandbox stock), and the price of each product's test
    types (its first type's), as the service's default catalog publishes them."""
    types: dict[tuple[str, str], tuple[int, int]] = {}
    test_price: dict[str, int] = {}
    for category in DEFAULT_CATALOG["categories"]:
        for product in category["products"]:
            for t in product["types"]:
                types[product["id"], t["id"]] = (to_cents(str(t["price"])), t["quantity"])
            test_price[product["id"]] = to_cents(str(product["types"][0]["price"]))
    return types, test_price


TYPES, TEST_PRICE = _catalog()
IMPORTABLE = [(PSN, "type_001"), (PSN, "type_002"), (PUBG, "pubg_60")]
ORDERABLE = [
    *TYPES,  # includes type_003 (sandbox stock 0, never imported) and a 3,990 DZD type
    (PSN, "TEST_REFUND"),
    (PSN, "TEST_PARTIAL"),
    (PUBG, "TEST_PARTIAL"),
    (UNKNOWN_PRODUCT, "type_001"),
]
SANDBOX_BUYS = [
    (PSN, "type_001"),
    (PUBG, "pubg_60"),
    (PSN, "TEST_REFUND"),
    (PSN, "TEST_PARTIAL"),
    (PUBG, "TEST_PARTIAL"),
]


def cents(amount: Any) -> int:
    """Exact cents of a JSON amount (490 or 1326.13)."""
    assert isinstance(amount, int | float) and not isinstance(amount, bool), amount
    value = Decimal(str(amount)) * 100
    assert value == value.to_integral_value(), f"{amount} has more than 2 decimals"
    return int(value)


@dataclass
class Key:
    """A key of the model; `seen_*` is what the service's key cache may still hold."""

    label: str
    secret: str = field(repr=False)
    account: str
    env: Env
    read_only: bool
    enabled: bool = True
    seen_enabled: bool = True
    seen_at: float | None = None  # monotonic time of the last response to this key

    def state_known(self) -> bool:
        """Whether the service must answer with the key's current state (no stale cache)."""
        if self.seen_enabled == self.enabled or self.seen_at is None:
            return True
        return time.monotonic() - self.seen_at > KEY_CACHE_TTL + 0.1


@dataclass
class Order:
    id: str
    account: str
    env: Env
    product: str
    type: str
    quantity: int
    price: int
    ref: str | None
    due_at: float
    status: str = HANDLING
    delivered: int = 0
    codes: tuple[str, ...] = field(default=(), repr=False)

    @property
    def refund(self) -> int:
        return 0 if self.status == HANDLING else (self.quantity - self.delivered) * self.price


@dataclass
class Pair:
    """One account's money in one environment."""

    reader: Key  # READ-ONLY, never disabled: every read of this pair goes through it
    balance: int = 0
    deposits: tuple[int, ...] = ()


class MoneyMachine(RuleBasedStateMachine):
    """Placements, deposits, imports, fulfilment and key changes; the money checked after each."""

    def __init__(self, workdir: Path, db_url: str | None = None) -> None:
        super().__init__()
        self.dir = workdir
        self.dir.mkdir()
        self.running: RunningService = start_in_thread(
            ServerConfig(
                db_url=db_url or f"sqlite:///{self.dir}/s.db",
                port=0,
                fulfill_delay=FULFIL_DELAY,
                seed=9,
                rate_limit=0,
            )
        )
        self.store = self.running.backend.store
        self.http = httpx.Client(base_url=self.running.base_url, timeout=30.0)
        self.pairs: dict[tuple[str, Env], Pair] = {}
        self.keys: dict[str, Key] = {}  # the keys placements may use (READ-WRITE or not)
        # (account, env) -> ref -> order id: a ref is unique per account and environment
        self.refs: dict[tuple[str, Env], dict[str, str]] = {}
        self.orders: dict[str, Order] = {}
        self.imported: list[str] = []  # codes accepted into the production inventory
        self.unsold = dict.fromkeys(IMPORTABLE, 0)
        self.numbers = itertools.count(1)

    def teardown(self) -> None:
        self.http.close()
        self.running.stop()

    # -- talking to the service ------------------------------------------------------------

    def call(self, key: Key, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, headers={"X-Access-Token": key.secret}, **kwargs)
        key.seen_at = time.monotonic()
        return response

    def pages(self, key: Key, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, page by page."""
        for page in itertools.count(1):
            data = ok(self.call(key, "GET", path, params={"page": page, "pageSize": 100}))
            yield from data["items"]
            if page >= data["pagination"]["totalPages"]:
                return

    def add_key(self, account: str, env: Env, read_only: bool, balance: int = 0) -> Key:
        amount = Decimal(balance) / 100 if balance else None
        secret = admin.create_key(self.store, env, account, amount, read_only=read_only)
        key = Key(f"{account}/{env}/k{next(self.numbers)}", secret, account, env, read_only)
        pair = self.pairs.setdefault((account, env), Pair(reader=key))
        if balance:
            pair.balance += balance
            pair.deposits += (balance,)
        return key

    # -- rules -----------------------------------------------------------------------------

    @initialize(
        balances=st.lists(st.sampled_from(BALANCES), min_size=4, max_size=4),
        stock=st.lists(
            st.sampled_from([6, 20, 1, 0]), min_size=len(IMPORTABLE), max_size=len(IMPORTABLE)
        ),
    )
    def open_accounts(self, balances: list[int], stock: list[int]) -> None:
        """Each account gets a read-only key (with a first deposit) and a READ-WRITE key per
        environment; the production inventory gets its first codes."""
        pairs = [(a, e) for a in ACCOUNTS for e in ENVS]
        for (account, env), balance in zip(pairs, balances, strict=True):
            self.add_key(account, env, read_only=True, balance=balance)
            key = self.add_key(account, env, read_only=False)
            self.keys[key.label] = key
        for item, count in zip(IMPORTABLE, stock, strict=True):
            if count:
                self.import_file(item, self.new_codes(count), header=True)

    @rule(
        data=st.data(),
        item=st.sampled_from(ORDERABLE),
        quantity=st.sampled_from([1, 2, 3, 4, 5, 6, 2, 3, 40, 100, 0, 101]),
        ref=st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3"])),
    )
    def place(
        self, data: st.DataObject, item: tuple[str, str], quantity: int, ref: str | None
    ) -> None:
        """Any key (disabled, read-only), any type (test types, empty stock, unknown product),
        any quantity (beyond stock or balance, out of range), refs that repeat."""
        key = self.keys[data.draw(st.sampled_from(sorted(self.keys)), label="key")]
        self.place_order(key, *item, quantity, ref)

    @rule(data=st.data(), quantity=st.integers(1, 5), ref=st.sampled_from([None, None, "r1"]))
    def buy_sandbox(self, data: st.DataObject, quantity: int, ref: str | None) -> None:
        """What a merchant mostly does: an enabled READ-WRITE key orders a type it sells
        (in the sandbox, the test types too)."""
        key = self.usable_key(data, "SANDBOX")
        product, type_id = data.draw(st.sampled_from(SANDBOX_BUYS), label="item")
        quantity += type_id == "TEST_PARTIAL"  # 2 to 6: half of an odd quantity rounds down
        self.place_order(key, product, type_id, quantity, ref)

    @rule(data=st.data(), quantity=st.integers(1, 5), ref=st.sampled_from([None, None, "r1"]))
    def buy_production(self, data: st.DataObject, quantity: int, ref: str | None) -> None:
        """The same in production, sometimes for most of the codes left: orders do not reserve
        codes, so two such orders before fulfilment oversell, and one ends short."""
        key = self.usable_key(data, "PRODUCTION")
        stocked = [item for item in IMPORTABLE if self.unsold[item]] or IMPORTABLE
        item = data.draw(st.sampled_from(stocked), label="item")
        share = data.draw(st.sampled_from(["some", "over half", "all"]), label="of the stock")
        if share != "some":
            left = self.unsold[item]
            quantity = max(1, left if share == "all" else left // 2 + 1)
        self.place_order(key, *item, quantity, ref)

    def usable_key(self, data: st.DataObject, env: Env) -> Key:
        """A key of `env`: mostly an enabled READ-WRITE one (a new one if there is none),
        sometimes one that may not buy (disabled, or read-only), as a misconfigured shop's."""
        mine = [k for k in self.keys.values() if k.env == env]
        usable = sorted(k.label for k in mine if k.enabled and not k.read_only)
        unusable = sorted(k.label for k in mine if not k.enabled or k.read_only)
        if unusable and data.draw(st.sampled_from([False, False, True]), label="unusable key"):
            usable = unusable
        if not usable:
            account = data.draw(st.sampled_from(ACCOUNTS), label="account")
            key = self.add_key(account, env, read_only=False)
            self.keys[key.label] = key
            return key
        return self.keys[data.draw(st.sampled_from(usable), label="key")]

    def place_order(
        self, key: Key, product: str, type_id: str, quantity: int, ref: str | None
    ) -> None:
        """Place over HTTP; the answer must be the model's, and a placed order is charged."""
        body: dict[str, Any] = {"productId": product, "typeId": type_id, "quantity": quantity}
        if ref is not None:
            body["ref"] = ref
        expected = self.expect_place(key, product, type_id, quantity, ref)
        known = key.state_known()
        response = self.call(key, "POST", "/gift-cards/placeOrder", json=body)
        outcome = response.json().get("error", {}).get("code", "placed")
        event(f"place {key.env}: {outcome}{'' if known else ' (key state cached)'}")
        if not known and response.status_code == 403 and "KEY_DISABLED" in response.text:
            key.seen_enabled = False
            return
        if not key.enabled and known:
            error(response, 403, "KEY_DISABLED")
            key.seen_enabled = False
            return
        key.seen_enabled = True
        if isinstance(expected, tuple):
            status, code, details = expected
            err = error(response, status, code)
            if details is not None:
                assert err.get("details") == details
            return
        placed = ok(response)
        order_id = placed["orderId"]
        assert order_id not in self.orders
        assert placed.get("orderRef") == ref
        record = asyncio.run(self.store.reader().orders.get(order_id))
        assert record is not None
        self.orders[order_id] = Order(
            order_id, key.account, key.env, product, type_id, quantity, expected,
            ref, record.due_at,
        )  # fmt: skip
        self.pairs[key.account, key.env].balance -= quantity * expected
        if ref is not None:
            self.refs.setdefault((key.account, key.env), {})[ref] = order_id

    def expect_place(
        self, key: Key, product: str, type_id: str, quantity: int, ref: str | None
    ) -> int | tuple[int, str, dict[str, Any] | None]:
        """The price per card a placement must be charged, or the refusal it must get
        (status, code, details when they are known) — for an enabled key."""
        if key.read_only:
            return 403, "INSUFFICIENT_SCOPE", None
        if not 1 <= quantity <= 100:
            return 400, "ERR_VALIDATION", None
        if ref is not None and ref in (used := self.refs.get((key.account, key.env), {})):
            return 403, "DUPLICATED_REF", {"orderId": used[ref]}
        if product not in TEST_PRICE:
            return 404, "NOT_FOUND", None
        stock: int | None
        if type_id.startswith("TEST_"):
            if key.env != "SANDBOX":
                return 404, "NOT_FOUND", None
            if type_id == "TEST_PARTIAL" and quantity < 2:
                return 400, "ERR_VALIDATION", None
            price, stock = TEST_PRICE[product], None
        else:
            price, stock = TYPES[product, type_id]
            if key.env == "PRODUCTION":
                stock = self.unsold.get((product, type_id), 0)
        if stock is not None and quantity > stock:
            return 403, "OUT_OF_STOCK", {"requested": quantity, "available": stock}
        balance = self.pairs[key.account, key.env].balance
        if quantity * price > balance:
            shortfall = {"required": quantity * price / 100, "available": balance / 100}
            return 403, "INSUFFICIENT_BALANCE", shortfall
        return price

    @rule(
        account=st.sampled_from(ACCOUNTS),
        env=st.sampled_from(ENVS),
        amount=st.one_of(st.sampled_from(BALANCES[:3]), st.integers(1, 5_000_000)),
    )
    def deposit(self, account: str, env: Env, amount: int) -> None:
        new_balance = admin.deposit(self.store, account, env, str(Decimal(amount) / 100))
        pair = self.pairs[account, env]
        pair.balance += amount
        pair.deposits += (amount,)
        assert to_cents(new_balance) == pair.balance

    @rule(
        item=st.sampled_from(IMPORTABLE),
        count=st.integers(1, 8),
        duplicate=st.sampled_from(["none", "none", "none", "in-file", "imported", "sold"]),
        header=st.booleans(),
    )
    def import_codes(self, item: tuple[str, str], count: int, duplicate: str, header: bool) -> None:
        """Import fresh codes; a code already in the file or in the inventory (imported, or
        delivered by the sandbox) must refuse the whole file."""
        codes = self.new_codes(count)
        sold = [c for o in self.orders.values() for c in o.codes if o.env == "SANDBOX"]
        if duplicate == "in-file":
            codes.append(codes[0])
        elif duplicate == "imported" and self.imported:
            codes.append(self.imported[count % len(self.imported)])
        elif duplicate == "sold" and sold:
            codes.append(sold[count % len(sold)])
        if len(set(codes)) < len(codes) or set(codes) & {*self.imported, *sold}:
            with pytest.raises(admin.AdminError, match="already in the inventory"):
                self.import_file(item, codes, header)
            event(f"import refused: {duplicate}")
            return
        self.import_file(item, codes, header)

    def new_codes(self, count: int) -> list[str]:
        return [f"CODE-{next(self.numbers):06d}-{secrets.token_hex(4)}" for _ in range(count)]

    def import_file(self, item: tuple[str, str], codes: list[str], header: bool) -> None:
        """Import `codes` of one type through a CSV file, as `oneclickdz admin import` does."""
        path = self.dir / f"import{next(self.numbers)}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(["productId", "typeId", "value", "serial"])
            writer.writerows([*item, code, f"SER{n}"] for n, code in enumerate(codes))
        assert admin.import_cards(self.store, self.running.backend.vault, path) == len(codes)
        self.imported.extend(codes)
        self.unsold[item] += len(codes)

    @rule(
        data=st.data(),
        account=st.sampled_from(ACCOUNTS),
        env=st.sampled_from(ENVS),
        read_only=st.sampled_from([False, False, False, True]),
        balance=st.sampled_from([0, 0, 100_000]),
    )
    def change_keys(
        self, data: st.DataObject, account: str, env: Env, read_only: bool, balance: int
    ) -> None:
        """Create another key for an account (with a deposit sometimes; a read-only one may not
        buy), or disable an enabled key or enable a disabled one, and maybe buy with it at once
        (the service may still answer from its 1 s key cache; the model allows for that)."""
        if len(self.keys) < MAX_KEYS and data.draw(st.booleans(), label="create a key"):
            key = self.add_key(account, env, read_only, balance)
            self.keys[key.label] = key
            return
        key = self.keys[data.draw(st.sampled_from(sorted(self.keys)), label="toggle key")]
        admin.set_key_enabled(self.store, key.secret, not key.enabled)
        key.enabled = not key.enabled
        if data.draw(st.booleans(), label="buy with it at once"):
            self.place_order(key, *IMPORTABLE[0], 1, None)

    def handling(self) -> list[str]:
        return sorted(o.id for o in self.orders.values() if o.status == HANDLING)

    @precondition(lambda self: bool(self.handling()))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """Finish some HANDLING orders now (and maybe a final one, which must not change)."""
        pool = self.handling()
        chosen = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
        if data.draw(st.booleans(), label="and a final order"):
            chosen.append(data.draw(st.sampled_from(sorted(self.orders))))
        self.running.finish(*chosen)
        self.settle(chosen)

    @precondition(lambda self: bool(self.handling()))
    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Move the fulfilment clock past the first k orders due (a gap before the next)."""
        now = self.running.backend.fulfilment.now()
        due = sorted(self.orders[order_id].due_at for order_id in self.handling())
        targets = [now + 1.0]  # nothing due yet: an advance that finishes nothing
        for i, at in enumerate(due):
            following = due[i + 1] if i + 1 < len(due) else None
            if following is None or following - at > 2 * ADVANCE_MARGIN:
                targets.append(at + 1.0)
        if due[0] - now <= ADVANCE_MARGIN:
            targets.pop(0)  # cannot happen with hour-long delays, but keep the gap honest
        self.advance_to(data.draw(st.sampled_from(targets[::-1]), label="target"))

    @precondition(lambda self: len(self.handling()) >= 2)
    @rule()
    def time_passes(self) -> None:
        """The clock moves past every order due: all of them end, codes shared as they can."""
        self.advance_to(max(self.orders[order_id].due_at for order_id in self.handling()) + 1.0)

    def advance_to(self, target: float) -> None:
        """Advance the fulfilment clock to `target`; exactly the orders due by then end."""
        due = [order_id for order_id in self.handling() if self.orders[order_id].due_at <= target]
        self.running.advance(max(0.0, target - self.running.backend.fulfilment.now()))
        self.settle(due)

    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS), env=st.sampled_from(ENVS))
    def look(self, data: st.DataObject, account: str, env: Env) -> None:
        """checkProduct shows a production key the unsold codes and a sandbox key the catalog's
        stock; checkOrder shows what the list shows, to the order's own account and env only."""
        key = self.pairs[account, env].reader
        for product in (PSN, PUBG):
            shown = ok(self.call(key, "GET", f"/gift-cards/checkProduct/{product}"))
            for t in shown["types"]:
                price, sandbox_stock = TYPES[product, t["id"]]
                assert cents(t["price"]) == price
                unsold = self.unsold.get((product, t["id"]), 0)
                assert t["quantity"] == (sandbox_stock if env == "SANDBOX" else unsold)
        if not self.orders:
            return
        order = self.orders[data.draw(st.sampled_from(sorted(self.orders)), label="order")]
        path = f"/gift-cards/checkOrder/{order.id}"
        if (account, env) == (order.account, order.env):
            self.check_view(order, ok(self.call(key, "GET", path)))
        else:
            response = self.call(key, "GET", path)
            assert response.status_code == 404, f"order {order.id} shown to {account}/{env}"
            error(response, 404, "NOT_FOUND")

    def reader(self, order: Order) -> Key:
        return self.pairs[order.account, order.env].reader

    def settle(self, order_ids: list[str]) -> None:
        """Record the outcome of orders just made final, checking it: a sandbox order delivers
        what its type says; production orders of one type share the unsold codes between them."""
        wanted: Counter[tuple[str, str]] = Counter()
        got: Counter[tuple[str, str]] = Counter()
        for order_id in order_ids:
            order = self.orders[order_id]
            if order.status != HANDLING:
                continue  # already final: the invariant checks it did not change
            view = ok(self.call(self.reader(order), "GET", f"/gift-cards/checkOrder/{order_id}"))
            assert view["status"] != HANDLING, f"order {order_id} is still HANDLING"
            order.status = view["status"]
            order.delivered = view["fulfilled_quantity"]
            order.codes = tuple(card["value"] for card in view["cards"])
            if order.env == "SANDBOX":
                expected = {"TEST_REFUND": 0, "TEST_PARTIAL": order.quantity // 2}
                assert order.delivered == expected.get(order.type, order.quantity)
            else:
                wanted[order.product, order.type] += order.quantity
                got[order.product, order.type] += order.delivered
            self.pairs[order.account, order.env].balance += order.refund
            event(f"final {order.env}: {order.status}")
            self.check_view(order, view)
        for item, quantity in wanted.items():
            assert got[item] == min(quantity, self.unsold[item]), f"{item}: wrong cards sold"
            self.unsold[item] -= got[item]

    # -- the invariants --------------------------------------------------------------------

    def check_view(self, order: Order, view: dict[str, Any]) -> None:
        """An order as the API shows it agrees with the model and with its own status."""
        oid = order.id
        assert view["_id"] == oid
        assert view["status"] == order.status, oid
        assert (view["quantity"], view["product"], view["type"]) == (
            order.quantity, order.product, order.type,
        )  # fmt: skip
        assert view.get("ref") == order.ref, oid
        outcome = {"fulfilled_quantity", "fulfilled_amount", "price_per_card", "cards"}
        if order.status == HANDLING:
            assert not outcome & view.keys(), f"HANDLING order {oid} shows an outcome"
            return
        assert outcome <= view.keys(), oid
        delivered = view["fulfilled_quantity"]
        same_cards = tuple(card["value"] for card in view["cards"]) == order.codes
        assert same_cards, f"order {oid}: the cards shown are not the cards delivered"
        assert len(order.codes) == delivered == order.delivered, oid
        assert cents(view["price_per_card"]) == order.price, oid
        assert cents(view["fulfilled_amount"]) == delivered * order.price, oid
        if order.status == FULL:
            assert delivered == order.quantity, oid
        elif order.status == PARTIAL:
            assert 0 < delivered < order.quantity, oid
        else:
            assert order.status == REFUNDED, oid
            assert delivered == 0, oid
        assert all(card["serial"] for card in view["cards"]), oid

    @invariant()
    def money_adds_up(self) -> None:
        """Per account and env: balance = model = deposits - charges + refunds in the ledger,
        never negative, each order charged once and refunded as its status says."""
        for (account, env), pair in self.pairs.items():
            balance = cents(ok(self.call(pair.reader, "GET", "/account/balance"))["balance"])
            assert balance >= 0, (account, env)
            assert balance == pair.balance, (account, env)
            history = list(self.pages(pair.reader, "/account/transactions"))
            charges: dict[str, int] = {}
            refunds: dict[str, int] = {}
            deposits: list[int] = []
            running = 0
            for tx in reversed(history):  # oldest first: each starts where the last ended
                amount = cents(tx["amount"])
                credit = tx["type"] in {"DEPOSIT", "REFUND-ORDER"}
                assert tx["type"] in {"DEPOSIT", "ORDER", "REFUND-ORDER"}, tx["type"]
                assert tx["operation"] == ("CREDIT" if credit else "DEBIT")
                assert amount > 0
                assert cents(tx["oldBalance"]) == running, (account, env, tx["_id"])
                running += amount if credit else -amount
                assert cents(tx["newBalance"]) == running >= 0, (account, env, tx["_id"])
                if tx["type"] == "DEPOSIT":
                    deposits.append(amount)
                else:
                    book = charges if tx["type"] == "ORDER" else refunds
                    assert tx["objid"] not in book, f"order {tx['objid']} moved money twice"
                    book[tx["objid"]] = amount
            assert running == balance
            assert sum(deposits) - sum(charges.values()) + sum(refunds.values()) == balance
            assert sorted(deposits) == sorted(pair.deposits)
            mine = {o.id: o for o in self.orders.values() if (o.account, o.env) == (account, env)}
            assert charges == {oid: o.quantity * o.price for oid, o in mine.items()}
            assert refunds == {oid: o.refund for oid, o in mine.items() if o.refund}

    @invariant()
    def orders_match(self) -> None:
        """Every order, as listed, matches the model; no code is delivered twice; production
        codes all come from imports, and the unsold ones are exactly those not delivered."""
        listed: dict[str, dict[str, Any]] = {}
        for pair in self.pairs.values():
            for item in self.pages(pair.reader, "/gift-cards/list"):
                assert item["_id"] not in listed
                listed[item["_id"]] = item
        assert listed.keys() == self.orders.keys()
        for order_id, order in self.orders.items():
            self.check_view(order, listed[order_id])
        delivered = [c["value"] for item in listed.values() for c in item.get("cards", [])]
        twice = len(delivered) - len(set(delivered))
        assert twice == 0, f"{twice} code(s) delivered twice"
        production = {c for o in self.orders.values() if o.env == "PRODUCTION" for c in o.codes}
        stray = len(production - set(self.imported))
        assert stray == 0, f"{stray} production code(s) that were never imported"
        sandbox = [c for o in self.orders.values() if o.env == "SANDBOX" for c in o.codes]
        assert all(c.startswith("SANDBOX-") for c in sandbox)
        reader = self.store.reader()
        for product in {p for p, _ in IMPORTABLE}:
            counts = asyncio.run(reader.inventory.unsold_counts(product))
            for pid, type_id in IMPORTABLE:
                if pid == product:
                    assert counts.get(type_id, 0) == self.unsold[pid, type_id], type_id
        sold = sum(len(o.codes) for o in self.orders.values() if o.env == "PRODUCTION")
        assert len(self.imported) == sold + sum(self.unsold.values())


@pytest.mark.timeout(280)
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_money_state_machine(tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_EXAMPLES (30) runs of STEPS (20) steps, each run on a fresh service and database:
    about 600 steps, each followed by the invariants, and about 120 orders placed. Derandomized,
    so CI replays the same runs every time. On PostgreSQL, where writers of the service run
    concurrently and the database enforces the money rules, PG_EXAMPLES (12) runs."""
    runs = itertools.count()
    if engine == "postgresql":
        pg.require()
        monkeypatch.setenv("ONECLICKDZ_VAULT_KEY", os.urandom(32).hex())

    class Run(MoneyMachine):
        def __init__(self) -> None:
            db_url = pg.fresh_url() if engine == "postgresql" else None
            super().__init__(tmp_path / f"run{next(runs)}", db_url)

    run_state_machine_as_test(
        Run,
        settings=settings(
            max_examples=MAX_EXAMPLES if engine == "sqlite" else PG_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
