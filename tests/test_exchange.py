"""The local exchange, driven over real HTTP on 127.0.0.1 by the stock_api client and by plain ``requests``.

Prices are the bundled snapshot (real TWSE rows). With the market date at 2025-03-03, an order fills at the
2025-03-04 open: 2330 opened at 996 that day and at 1020 on 2025-03-05; 2317 closed at 170 on 2025-03-03.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import requests

from stockllm import store
from stockllm.cli import main
from stockllm.market import next_trading_days, round_to_tick
from stockllm.trading import rules
from stockllm.trading.client import StockAPI, read_order_log
from stockllm.trading.ledger import AUTH_FAILED, Ledger
from stockllm.trading.server import Background

START = "2025-03-03"
STOCKLLM = Path(sys.executable).parent / "stockllm"


@pytest.fixture
def exchange(tmp_path: Path):
    data = tmp_path / "data"
    store.install_snapshot(data, ["2330", "2317"])
    ledger = Ledger(tmp_path / "exchange.sqlite", data, START)
    ledger.add_user("alice", "alice-pw", 5_000_000)
    ledger.add_user("bob", "bob-pw", 100_000)
    with Background(ledger) as url:
        yield SimpleNamespace(url=url, ledger=ledger, tmp=tmp_path, data=data)


def client(ex, account="alice", password=None, **kw) -> StockAPI:
    return StockAPI(ex.url, account, password or f"{account}-pw", order_log=ex.tmp / "orders.jsonl", **kw)


def test_buy_fills_at_next_open_then_sell_with_fee_and_tax_to_the_dollar(exchange):
    alice = client(exchange)
    placed = alice.buy("2330", 2, 1000)
    assert placed.outcome == "accepted", placed.status
    assert "2025-03-04" in placed.status
    account = alice.user_stocks()
    assert account["data"] == [] and account["available_cash"] == 5_000_000 - (2_000_000 + 2850)

    exchange.ledger.advance()  # 2025-03-04: open 996 <= limit 1000 -> fill at 996
    account = alice.user_stocks()
    assert account["data"] == [{"stock_code_id": "2330", "shares": 2, "beginning_price": 996.0, "reserved_shares": 0}]
    assert account["cash"] == 5_000_000 - 1_992_000 - 2838  # fee 1,992,000 x 0.1425% = 2838.6 -> 2838

    assert alice.sell("2330", 2, 950).ok
    exchange.ledger.advance()  # 2025-03-05: open 1020 >= 950 -> fill at 1020
    account = alice.user_stocks()
    assert account["data"] == []
    # proceeds 2,040,000 - fee 2907 (2907.0) - tax 6120 (0.3%)
    assert account["cash"] == 5_000_000 - 1_994_838 + 2_040_000 - 2907 - 6120 == 5_036_135
    filled = [o for o in account["orders"] if o["status"] == "filled"]
    assert [(o["side"], o["fill_price"], o["fee"], o["tax"]) for o in filled] == [("buy", "996", 2838, 0), ("sell", "1020", 2907, 6120)]
    assert exchange.ledger.audit() == []


def test_a_limit_the_open_does_not_reach_expires_and_frees_the_cash(exchange):
    alice = client(exchange)
    assert alice.buy("2330", 1, 990).ok  # 2025-03-04 opens at 996 > 990
    events = exchange.ledger.advance()
    assert [(e.status, e.reason) for e in events] == [("expired", "open 996 above the limit 990")]
    account = alice.user_stocks()
    assert account["data"] == [] and account["available_cash"] == account["cash"] == 5_000_000


def test_insufficient_cash_counts_the_fee_and_pending_reservations(exchange):
    bob = client(exchange, "bob")  # NT$100,000
    refused = bob.buy("2330", 1, 1000)
    assert refused.outcome == "rejected" and "insufficient cash" in refused.status
    carol_cash = 2 * 170_242 + 1000  # two 1-lot 2317 buys at 170 (170,000 + fee 242) fit, a third does not
    exchange.ledger.add_user("carol", "carol-pw", carol_cash)
    carol = client(exchange, "carol")
    assert carol.buy("2317", 1, 170).ok and carol.buy("2317", 1, 170).ok
    third = carol.buy("2317", 1, 170)
    assert third.outcome == "rejected" and "available NT$1,000" in third.status


def test_selling_more_than_is_held_and_not_already_being_sold_is_refused(exchange):
    alice = client(exchange)
    assert "insufficient shares" in alice.sell("2330", 1, 1000).status
    assert alice.buy("2317", 2, 175).ok
    exchange.ledger.advance()
    assert alice.sell("2317", 2, 165).ok
    assert "insufficient shares" in alice.sell("2317", 1, 165).status  # both lots already reserved for a sell


@pytest.mark.parametrize("form, why", [
    ({"stock_code": "9999"}, "unknown stock code"),
    ({"stock_price": "1002"}, "tick"),
    ({"stock_price": "1125"}, "limit band"),
    ({"stock_shares": "0"}, "lots"),
    ({"stock_shares": "1.5"}, "whole number"),
    ({"stock_shares": "two"}, "not a number"),
    ({"stock_price": "cheap"}, "not a number"),
    ({"stock_code": ""}, "missing form field"),
])
def test_bad_orders_are_refused_with_a_reason_not_an_error(exchange, form, why):
    fields = {"account": "alice", "password": "alice-pw", "stock_code": "2330", "stock_shares": "1", "stock_price": "1000"} | form
    response = requests.post(exchange.url + "/buy", data=fields, timeout=10)
    assert response.status_code == 200
    reply = response.json()
    assert reply["result"] == "failed" and why in reply["status"]


def test_wrong_password_and_unknown_account_get_the_same_reply_revealing_nothing(exchange):
    replies = [requests.post(exchange.url + path, data=form, timeout=10).json() for path, form in [
        ("/get_user_stocks", {"account": "alice", "password": "wrong"}),
        ("/get_user_stocks", {"account": "nobody", "password": "wrong"}),
        ("/buy", {"account": "alice", "password": "wrong", "stock_code": "2330", "stock_shares": "1", "stock_price": "1000"}),
    ]]
    assert replies == [{"result": "failed", "status": AUTH_FAILED}] * 3


def test_a_user_cannot_see_or_trade_another_users_account(exchange):
    alice = client(exchange)
    assert alice.buy("2317", 1, 170).ok
    bob_as_alice = client(exchange, "alice", password="bob-pw")
    assert bob_as_alice.buy("2317", 1, 170).outcome == "rejected"
    assert bob_as_alice.sell("2317", 1, 170).outcome == "rejected"
    with pytest.raises(Exception, match="authentication failed"):
        bob_as_alice.user_stocks()
    bob = client(exchange, "bob").user_stocks()
    assert bob["data"] == [] and bob["orders"] == [] and bob["cash"] == 100_000
    assert len(alice.user_stocks()["orders"]) == 1


def test_the_write_ups_own_requests_client_works_unchanged(exchange):
    """The course's stock_api.py functions, verbatim apart from the base URL."""
    base = exchange.url

    def Get_Stock_Informations(stock_code, start_date, stop_date):
        information_url = (base + '/api_get_stock_info_from_date_json/' + str(stock_code) + '/' + str(start_date) + '/' + str(stop_date))
        result = requests.get(information_url).json()
        if result['result'] == 'success':
            return result['data']
        return dict([])

    def Get_User_Stocks(account, password):
        data = {'account': account, 'password': password}
        result = requests.post(base + '/get_user_stocks', data=data).json()
        if result['result'] == 'success':
            return result['data']
        return dict([])

    def Buy_Stock(account, password, stock_code, stock_shares, stock_price):
        data = {'account': account, 'password': password, 'stock_code': stock_code, 'stock_shares': stock_shares, 'stock_price': stock_price}
        result = requests.post(base + '/buy', data=data).json()
        print('Result: ' + result['result'] + "\nStatus: " + result['status'])
        return result['result'] == 'success'

    rows = Get_Stock_Informations(2330, 20250224, 20250310)
    assert [r["date"] for r in rows] == sorted((r["date"] for r in rows), reverse=True)  # newest first
    assert rows[0]["date"] == 1740960000  # 2025-03-03 00:00 UTC: the market date caps the range
    assert rows[0]["close"] == 1020.0 and rows[0]["transaction_volume"] == 208673 and rows[0]["stock_code_id"] == "2330"
    assert Get_Stock_Informations(2330, 20250310, 20250224) == {}
    assert Buy_Stock('alice', 'alice-pw', 2330, 1, 1000.0) is True
    assert Buy_Stock('alice', 'alice-pw', 2330, 1, 1003) is False
    assert Get_User_Stocks('alice', 'alice-pw') == []


def test_unknown_paths_and_bad_dates_reply_failed_json(exchange):
    assert requests.get(exchange.url + "/nowhere", timeout=10).json()["result"] == "failed"
    for path in ("2330/2025-03-01/20250303", "2330/20250231/20250303", "ABC%2F/20250101/20250303", "9999/20250101/20250303"):
        reply = requests.get(f"{exchange.url}/api_get_stock_info_from_date_json/{path}", timeout=10).json()
        assert reply["result"] == "failed" and reply["status"]


def test_orders_are_logged_before_sending_without_the_password(exchange):
    alice = client(exchange)
    placed = alice.buy("2330", 1, 1000)
    records = read_order_log(alice.order_log)
    assert [r["event"] for r in records] == ["submit", "reply"]
    assert {r["client_order_id"] for r in records} == {placed.client_order_id}
    assert records[0]["request"]["stock_code"] == "2330" and "password" not in records[0]["request"]
    assert "alice-pw" not in alice.order_log.read_text() and "alice-pw" not in repr(alice)


def test_concurrent_orders_from_two_clients_keep_cash_consistent(exchange):
    exchange.ledger.add_user("carol", "carol-pw", 1_000_000)  # 5 reservations of 170,242 fit, not 6
    outcomes: list[str] = []

    def burst():
        api = client(exchange, "carol")
        for _ in range(8):
            outcomes.append(api.buy("2317", 1, 170).outcome)

    threads = [threading.Thread(target=burst) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted"] * 5 + ["rejected"] * 11
    assert client(exchange, "carol").user_stocks()["available_cash"] == 1_000_000 - 5 * 170_242
    assert exchange.ledger.audit() == []


# --- lost replies: reconcile, never resend ---------------------------------------------------------------

class _Proxy(http.server.ThreadingHTTPServer):
    """Forwards to the exchange; can delay or drop order replies and hide the order list like the course server."""

    daemon_threads = True

    def __init__(self, target: str, mode: str):
        self.target, self.mode = target, mode
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        is_order = self.path.endswith(("/buy", "/sell"))
        if is_order and self.server.mode == "drop":
            self.connection.close()
            return
        reply = requests.post(self.server.target + self.path.split("/v1", 1)[1], data=body,
                              headers={"Content-Type": self.headers["Content-Type"]}, timeout=10).json()
        if self.server.mode == "course":
            reply.pop("orders", None)
            reply.pop("order", None)
        if is_order:
            time.sleep(1.0)  # the client's read timeout fires first
        payload = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass


@pytest.mark.parametrize("mode, outcome", [("slow", "accepted"), ("drop", "not_received"), ("course", "unknown")])
def test_a_lost_order_reply_is_reconciled_with_get_user_stocks_not_resent(exchange, mode, outcome):
    proxy = _Proxy(exchange.url, mode)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        api = client(exchange, timeout=0.4, retries=0)
        api.base_url = f"http://127.0.0.1:{proxy.server_address[1]}/stock/api/v1"
        result = api.buy("2317", 1, 170)
    finally:
        proxy.shutdown()
    assert result.outcome == outcome, result.status
    assert "NOT resent" in result.status or outcome == "accepted"
    events = [r["event"] for r in read_order_log(api.order_log)]
    assert events == ["submit", "lost_reply", "reconciled"]
    placed = exchange.ledger.user_stocks("alice", "alice-pw")["orders"]
    assert len(placed) == (0 if mode == "drop" else 1)  # sent once, never twice


def test_a_refused_connection_is_reported_as_not_sent(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = StockAPI(f"http://127.0.0.1:{port}/stock/api/v1", "a", "p", order_log=tmp_path / "o.jsonl", retries=0)
    assert api.buy("2330", 1, 1000).outcome == "not_sent"


# --- durability: kill -9 -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db: Path, data: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([str(STOCKLLM), "exchange", "serve", "--db", str(db), "--data-dir", str(data), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/stock/api/v1/status", timeout=5)
            return process
        except requests.RequestException:  # not listening yet, or still starting on a busy machine
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.1)
    process.kill()
    raise AssertionError("exchange did not start")


def test_kill_9_between_accept_and_fill_loses_nothing(tmp_path):
    data = tmp_path / "data"
    store.install_snapshot(data, ["2330", "2317"])
    db = tmp_path / "exchange.sqlite"
    env = os.environ | {"STOCK_API_PASSWORD": "alice-pw"}
    subprocess.run([str(STOCKLLM), "exchange", "init", "--db", str(db), "--data-dir", str(data), "--date", START], check=True, env=env)
    subprocess.run([str(STOCKLLM), "exchange", "add-user", "--account", "alice", "--cash", "5000000", "--db", str(db), "--data-dir", str(data)], check=True, env=env)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/stock/api/v1"
    server = _serve(db, data, port)
    alice = StockAPI(url, "alice", "alice-pw", order_log=tmp_path / "orders.jsonl", timeout=5, retries=0)
    accepted: list[str] = []
    stop = threading.Event()

    def hammer():  # orders in flight while the server dies
        api = StockAPI(url, "alice", "alice-pw", order_log=tmp_path / "orders.jsonl", timeout=5, retries=0)
        while not stop.is_set():
            result = api.buy("2317", 1, 170)
            if result.ok:
                accepted.append(result.client_order_id)
            elif result.outcome != "rejected":
                return

    try:
        first = alice.buy("2330", 2, 1000)
        assert first.ok
        accepted.append(first.client_order_id)
        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        stop.set()
        for w in workers:
            w.join()
        server = _serve(db, data, port)
        account = alice.user_stocks()
        with sqlite3.connect(db) as books:
            listed = {row[0] for row in books.execute("SELECT client_order_id FROM orders")}
        assert set(accepted) <= listed, "an accepted order was lost"
        assert len(accepted) >= 2
        reserved = 2_002_850 + (len(listed) - 1) * 170_242
        assert account["available_cash"] == 5_000_000 - reserved
        subprocess.run([str(STOCKLLM), "exchange", "advance", "--db", str(db), "--data-dir", str(data)], check=True, capture_output=True)
        holdings = {r["stock_code_id"]: r["shares"] for r in alice.user_stocks()["data"]}
        assert holdings == {"2330": 2, "2317": len(listed) - 1}
        status = subprocess.run([str(STOCKLLM), "exchange", "status", "--db", str(db), "--data-dir", str(data)], capture_output=True, text=True)
        assert json.loads(status.stdout)["audit_problems"] == []
    finally:
        stop.set()
        server.kill()
        server.wait()


# --- stockllm trade -------------------------------------------------------------------------------------

def _trending(start: float, factor: float, dates: list[str]) -> pd.DataFrame:
    closes, price = [], start
    for _ in dates:
        closes.append(float(round_to_tick(price)))
        price *= factor
    return pd.DataFrame({"date": dates, "capacity": 1_000_000, "turnover": 1, "open": closes, "high": closes,
                         "low": closes, "close": closes, "change": 0.0, "transaction": 1})


def test_trade_is_a_dry_run_by_default_and_send_places_the_orders(tmp_path, monkeypatch, capsys):
    dates = [d.isoformat() for d in next_trading_days("2025-01-01", 40)]
    data = tmp_path / "data"
    store.write_prices(data, "2330", _trending(100.0, 1.01, dates))  # rising: drift expects +1% a day -> buy
    falling = _trending(100.0, 0.99, dates)  # drift expects -1% a day -> sell what is held
    store.write_prices(data, "2317", falling)
    ledger = Ledger(tmp_path / "exchange.sqlite", data, dates[-2])
    ledger.add_user("alice", "alice-pw", 5_000_000)
    ledger.place_order("buy", "alice", "alice-pw", "2317", "3", str(rules.marketable_limit("buy", falling["close"].iloc[-2])))
    ledger.advance()  # the 2317 lots fill; the market date is now the last stored day
    log = tmp_path / "orders.jsonl"
    argv = ["trade", "--model", "drift", "--codes", "2330", "2317", "--data-dir", str(data), "--order-log", str(log)]
    with Background(ledger) as url:
        for name, value in {"STOCK_API_URL": url, "STOCK_API_ACCOUNT": "alice", "STOCK_API_PASSWORD": "alice-pw"}.items():
            monkeypatch.setenv(name, value)
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert "2330" in out and ": buy" in out and "2317" in out and ": sell 3 lots" in out
        assert "dry run: nothing sent" in err and not log.exists()
        assert len(ledger.user_stocks("alice", "alice-pw")["orders"]) == 1

        assert main(argv + ["--send"]) == 0
        out = capsys.readouterr().out
        assert out.count("→ accepted") == 2, out
    pending = [(o["side"], o["code"]) for o in ledger.user_stocks("alice", "alice-pw")["orders"] if o["status"] == "pending"]
    assert sorted(pending) == [("buy", "2330"), ("sell", "2317")]
    assert "alice-pw" not in log.read_text()
