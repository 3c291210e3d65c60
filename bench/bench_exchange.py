"""Load check of the local exchange: the normal mix of traffic, then the same mix under abuse, in one run.

Starts ``stockllm exchange serve`` as a separate process on 127.0.0.1 (fresh database, snapshot prices) and
drives it from client threads with mixed stock-info / user-stocks / buy / sell requests, twice: once alone
(``normal``) and once while a second process of this script attacks the server (``abusive``): 40 threads
guessing passwords for a real account and for unknown ones, sending 1 MB fields, 5 MB JSON bodies and absurd
prices. Prints the legitimate requests' p50/p95/p99 for both mixes side by side and the abusers' replies by
HTTP status, then checks that every legitimate request succeeded, that no abusive one got a 5xx, and that
the books balance: the audit recomputes every balance from the order history, and the available cash /
reserved shares must equal what the accepted orders reserved.

    .venv/bin/python bench/bench_exchange.py [--requests 3000] [--threads 8] [--max-seconds 60]

Bounded in count and time; loopback only. Exits 1 when any check fails or the normal rate is below --min-rps.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import requests

from stockllm import store
from stockllm.trading import rules
from stockllm.trading.ledger import Ledger
from stockllm.trading.server import PREFIX

ACCOUNTS = [f"bench{i}" for i in range(4)]
CASH = 10**10
BUY, SELL = ("2317", 1, "170"), ("2317", 1, "165")  # 2317 closed at 170 on the market date 2025-03-03
MIX = ["info"] * 5 + ["user"] * 2 + ["buy"] * 2 + ["sell"]
ABUSERS = 40
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def abuse(port: int, seconds: float) -> None:
    """The abusive traffic (``--abuse PORT``, run as its own process) until stdin closes or ``seconds`` pass;
    then prints the replies' HTTP statuses as JSON (0: the connection was dropped).

    Of the 40 threads, 30 guess passwords (half for ``bench0``, half for made-up accounts), 5 send 1 MB
    fields and 5 alternate 5 MB JSON bodies with absurd prices. Bodies are encoded once, up front.
    """
    order = {"stock_code": "2317", "stock_shares": "1", "stock_price": "170"}
    huge_field = urlencode({"account": "bench0", "password": "x", **order, "stock_shares": "9" * 1_000_000})
    huge_json = json.dumps({"account": "bench0", "password": "x", **order, "stock_price": "1" * 5_000_000})
    absurd = [urlencode({"account": "bench0", "password": "x", **order, "stock_price": p}) for p in ("1e308", "1E+999999", "NaN", "-1")]
    codes: list[int] = []
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    threading.Timer(seconds, stop.set).start()

    def attacker(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(10**9):
            if stop.is_set():
                return
            if n < 30:
                account = "bench0" if n % 2 else f"nobody{n}-{i}"
                body, kind = urlencode({"account": account, "password": f"guess-{n}-{i}", **order}), FORM
            elif n < 35:
                body, kind = huge_field, FORM
            else:
                body, kind = (huge_json, {"Content-Type": "application/json"}) if i % 2 else (absurd[i % len(absurd)], FORM)
            try:
                connection.request("POST", f"{PREFIX}/buy", body, kind)
                response = connection.getresponse()
                response.read()
                codes.append(response.status)
            except (OSError, http.client.HTTPException):
                connection.close()  # the server may close a connection whose huge body it refused
                codes.append(0)

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(ABUSERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(Counter(codes)), flush=True)
    os._exit(0)  # the timer thread need not run out


def run_mix(port: int, args: argparse.Namespace, accepted: dict) -> dict:
    """``args.requests`` legitimate requests of :data:`MIX` from ``args.threads`` threads: latencies, errors, wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))
    stop_at = time.monotonic() + args.max_seconds

    def worker(seed: int) -> None:
        # A lean keep-alive client (http.client): `requests` costs more CPU per call than the server does,
        # and on a small shared machine the load generator would otherwise measure itself.
        rng, connection = random.Random(seed), http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in counter:
            if time.monotonic() > stop_at:
                return
            kind, account = rng.choice(MIX), rng.choice(ACCOUNTS)
            creds = {"account": account, "password": "pw-" + account}
            t0 = time.perf_counter()
            try:
                if kind == "info":
                    code = rng.choice(["2330", "2317"])
                    connection.request("GET", f"{PREFIX}/api_get_stock_info_from_date_json/{code}/20250101/20250303")
                else:
                    form = creds
                    if kind in ("buy", "sell"):
                        code, lots, price = BUY if kind == "buy" else SELL
                        form = creds | {"stock_code": code, "stock_shares": lots, "stock_price": price}
                    path = f"{PREFIX}/{'get_user_stocks' if kind == 'user' else kind}"
                    connection.request("POST", path, urlencode(form), FORM)
                response = connection.getresponse()
                reply = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError) as exc:
                connection.close()
                with lock:
                    errors.append(f"{kind}: {type(exc).__name__}")
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if reply.get("result") != "success":
                    errors.append(f"{kind}: {reply.get('status')}")
                elif kind in ("buy", "sell"):
                    accepted[account][kind] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started}


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--min-rps", type=float, default=200.0)
    parser.add_argument("--abuse", type=int, default=None, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--abuse-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.abuse is not None:
        abuse(args.abuse, args.abuse_seconds)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    data, db = work / "data", work / "exchange.sqlite"
    store.install_snapshot(data, ["2330", "2317"])
    ledger = Ledger(db, data, "2025-03-03")
    for account in ACCOUNTS:  # each starts with 100 lots of 2317 so sells are accepted
        ledger.add_user(account, "pw-" + account, CASH)
        ledger.place_order("buy", account, "pw-" + account, "2317", "100", "187")
    ledger.advance()  # 2025-03-04: the seed buys fill at the open; orders now fill on 2025-03-05
    before = {a: ledger.user_stocks(a, "pw-" + a) for a in ACCOUNTS}

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from stockllm.cli import main; main()", "exchange", "serve",
                               "--db", str(db), "--data-dir", str(data), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/stock/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/status", timeout=1)
                break
            except requests.RequestException:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(server.stderr.read().decode(), file=sys.stderr)
                    return 1
                time.sleep(0.1)

        for account in ACCOUNTS:  # warm-up, untimed: the one scrypt check per account a fresh server does
            requests.post(base + "/get_user_stocks", data={"account": account, "password": "pw-" + account}, timeout=10)
        accepted = {a: {"buy": 0, "sell": 0} for a in ACCOUNTS}
        results = {}
        for mix in ("normal", "abusive"):
            abuser = None
            if mix == "abusive":
                abuser = subprocess.Popen([sys.executable, __file__, "--abuse", str(port), "--abuse-seconds", str(args.max_seconds)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                time.sleep(1.0)  # let the attack get going before measuring
            results[mix] = run_mix(port, args, accepted)
            if abuser is not None:  # closing its stdin stops it; it then prints its tally
                results["abuse_codes"] = json.loads(abuser.communicate(input="", timeout=120)[0] or "{}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()

    problems = ledger.audit()
    reservation = rules.buy_reservation(BUY[2], BUY[1])
    for account in ACCOUNTS:
        after = ledger.user_stocks(account, "pw-" + account)
        want_cash = before[account]["available_cash"] - accepted[account]["buy"] * reservation
        if after["available_cash"] != want_cash:
            problems.append(f"{account}: available cash {after['available_cash']} != {want_cash}")
        reserved = sum(r["reserved_shares"] for r in after["data"])
        if reserved != accepted[account]["sell"] * SELL[1]:
            problems.append(f"{account}: {reserved} lots reserved != {accepted[account]['sell']} accepted sells")

    print(f"{'mix':<9}{'requests':>9}{'seconds':>9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}   (legitimate clients, {args.threads} threads)")
    for mix in ("normal", "abusive"):
        r = results[mix]
        ordered = sorted(r["latencies"])
        print(f"{mix:<9}{len(ordered):>9}{r['wall']:>9.2f}{len(ordered) / r['wall']:>8.0f}{percentile(ordered, 0.5):>9.1f}"
              f"{percentile(ordered, 0.95):>9.1f}{percentile(ordered, 0.99):>9.1f}{len(r['errors']):>8}")
    codes = results["abuse_codes"]
    print(f"abusive traffic ({ABUSERS} threads: password guesses, 1 MB fields, 5 MB JSON bodies, absurd prices): "
          + ", ".join(f"HTTP {code or 'dropped'} x{n}" for code, n in sorted(codes.items())))
    errors = results["normal"]["errors"] + results["abusive"]["errors"]
    print(f"orders accepted: {sum(a['buy'] for a in accepted.values())} buys, {sum(a['sell'] for a in accepted.values())} sells")
    print(f"errors: {len(errors)}{' e.g. ' + errors[0] if errors else ''}")
    print(f"books: {'consistent' if not problems else '; '.join(problems[:3])}")
    server_errors = sum(n for code, n in codes.items() if int(code) >= 500)
    normal = results["normal"]
    ok = (not errors and not problems and not server_errors and len(normal["latencies"]) / normal["wall"] >= args.min_rps
          and all(len(results[m]["latencies"]) == args.requests for m in ("normal", "abusive")))
    print("PASS" if ok else f"FAIL (need >= {args.min_rps:.0f} requests/s in the normal mix, every request done without error, no 5xx, consistent books)")
    ledger.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
