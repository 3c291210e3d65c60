"""Load check of the local exchange: mixed stock-info / user-stocks / buy / sell traffic over loopback.

Starts ``stockllm exchange serve`` as a separate process on 127.0.0.1 (fresh database, snapshot prices),
drives it from client threads, then checks that every request succeeded and that the books balance:
the audit recomputes every balance from the order history, and the available cash / reserved shares
must equal what the accepted orders reserved. Prints requests/s and latency percentiles.

    .venv/bin/python bench/bench_exchange.py [--requests 3000] [--threads 8] [--max-seconds 60]

Bounded in count and time; loopback only. Exits 1 when any check fails or the rate is below --min-rps.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--min-rps", type=float, default=200.0)
    args = parser.parse_args()

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
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(server.stderr.read().decode(), file=sys.stderr)
                    return 1
                time.sleep(0.1)

        for account in ACCOUNTS:  # warm-up, untimed: the one scrypt check per account a fresh server does
            requests.post(base + "/get_user_stocks", data={"account": account, "password": "pw-" + account}, timeout=10)
        latencies: list[float] = []
        errors: list[str] = []
        accepted = {a: {"buy": 0, "sell": 0} for a in ACCOUNTS}
        lock = threading.Lock()
        counter = iter(range(args.requests))
        stop_at = time.monotonic() + args.max_seconds

        def worker(seed: int) -> None:
            # A lean keep-alive client (http.client): `requests` costs more CPU per call than the server does,
            # and on a small shared machine the load generator would otherwise measure itself.
            rng, connection = random.Random(seed), http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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
                        connection.request("POST", path, urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
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
        wall = time.perf_counter() - started
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

    done = len(latencies)
    ordered = sorted(latencies) or [0.0]
    rps = done / wall if wall else 0.0
    print(f"requests: {done} in {wall:.2f}s with {args.threads} client threads -> {rps:.0f} requests/s")
    print(f"latency ms: p50 {ordered[len(ordered) // 2] * 1000:.1f}  p99 {ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000:.1f}  max {ordered[-1] * 1000:.1f}")
    print(f"orders accepted: {sum(a['buy'] for a in accepted.values())} buys, {sum(a['sell'] for a in accepted.values())} sells")
    print(f"errors: {len(errors)}{' e.g. ' + errors[0] if errors else ''}")
    print(f"books: {'consistent' if not problems else '; '.join(problems[:3])}")
    ok = not errors and not problems and rps >= args.min_rps and done == args.requests
    print("PASS" if ok else f"FAIL (need >= {args.min_rps:.0f} requests/s, zero errors, consistent books)")
    ledger.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
