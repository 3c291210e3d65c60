"""Property: whatever a client sends to the order endpoints, the exchange never answers 5xx and its books balance.

Hypothesis sends random forms and JSON bodies — real and made-up accounts, right and wrong passwords, codes,
lot counts and prices from plausible to absurd (NaN, 1e308, text, Unicode) — to a real server on
127.0.0.1, moving the market clock now and then so reservations fill or expire. After every request the
reply must be a refusal or an acceptance in JSON; after every example the audit (cash = initial + fills,
reserved cash = pending buys, holdings = filled net, reserved shares = pending sells) must find nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockllm import store
from stockllm.trading.ledger import Ledger
from stockllm.trading.server import Background
from stockllm.trading.throttle import FailedLogins

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates and control characters too
numbers = st.one_of(
    st.integers(-10, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    any_text,
)
orders = st.fixed_dictionaries(
    {
        "side": st.sampled_from(["buy", "sell"]),
        "account": st.one_of(st.sampled_from(["alice", "alice", "bob"]), any_text),
        "right_password": st.sampled_from([True, True, True, False]),
        "stock_code": st.one_of(st.sampled_from(["2317", "2330"]), any_text),
        "stock_shares": st.one_of(st.integers(1, 3).map(str), numbers),
        "stock_price": st.one_of(st.integers(150, 190).map(str), st.integers(900, 1100).map(str), numbers),
        "client_order_id": st.one_of(st.none(), any_text),
        "as_json": st.booleans(),
    }
)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("properties")
    store.install_snapshot(tmp / "data", ["2330", "2317"])
    ledger = Ledger(tmp / "exchange.sqlite", tmp / "data", "2025-03-03")
    ledger.add_user("alice", "alice-pw", 3_000_000)
    ledger.add_user("bob", "bob-pw", 500_000)
    unthrottled = FailedLogins(per_account=10**9, per_address=10**9)  # wrong passwords stay cheap to test, not tarpitted
    with Background(ledger, logins=unthrottled) as url:
        yield ledger, url


def _send(url: str, order: dict) -> requests.Response:
    form = {k: order[k] for k in ("account", "stock_code", "stock_shares", "stock_price")}
    form["password"] = PASSWORDS.get(order["account"], "x") if order["right_password"] else "wrong"
    if order["client_order_id"] is not None:
        form["client_order_id"] = order["client_order_id"]
    if order["as_json"]:
        return requests.post(f"{url}/{order['side']}", json=form, timeout=30)
    return requests.post(f"{url}/{order['side']}", data=form, timeout=30)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(orders, min_size=1, max_size=4), advance=st.booleans())
def test_random_orders_never_get_a_5xx_and_the_books_always_balance(exchange, batch, advance):
    ledger, url = exchange
    for order in batch:
        reply = _send(url, order)
        assert reply.status_code in (200, 400, 413), (order, reply.status_code, reply.text)
        assert reply.json()["result"] in ("success", "failed")
    if advance:
        ledger.advance()
    assert ledger.audit() == []
    for account in PASSWORDS:
        books = ledger.user_stocks(account, PASSWORDS[account])
        assert 0 <= books["available_cash"] <= books["cash"]
        assert all(0 <= row["reserved_shares"] <= row["shares"] for row in books["data"])
