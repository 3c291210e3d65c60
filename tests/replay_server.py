"""A real HTTP server on 127.0.0.1 that replays recorded TWSE, TPEx and newsapi replies.

Clients are pointed at it through ``STOCKLLM_TWSE_URL`` / ``STOCKLLM_TPEX_URL`` / ``STOCKLLM_NEWSAPI_URL``
(or an ``HttpClient`` built with its URL), so the whole network path — requests, sockets, JSON — runs for
real; nothing of ours is mocked.

What it answers:

* ``/rwd/zh/afterTrading/STOCK_DAY`` (TWSE): the real sample in ``fixtures/exchange`` when one exists for
  that code and month (2330 in 2026-08 and 2026-09); otherwise a reply *generated* from the bundled
  twstock-format snapshot CSV (real TWSE figures) in the exact shape of the real sample — same keys,
  fields, notes, ROC dates, thousands separators, signed changes, ``--`` for halted days; months without
  rows get TWSE's real no-data reply.
* ``/www/zh-tw/afterTrading/tradingStock`` (TPEx): the real 6488 2026-08 sample; any other code/month gets
  that sample's shape with no rows (no real empty TPEx reply was recorded).
* ``/rwd/zh/afterTrading/MI_INDEX`` (TWSE, whole market) and ``/www/zh-tw/afterTrading/dailyQuotes`` (TPEx):
  the real 2023-01-30 replies; any other day gets TWSE's real no-data reply (the ``rwd`` endpoints share it)
  and TPEx's real empty reply of a holiday (2023-01-01) with that day's date.
* ``/v2/everything`` (newsapi): real error bodies for a missing (``apiKeyMissing``) or ``bad`` key
  (``apiKeyInvalid``); otherwise real page ``everything_1.json`` for ``language=zh`` and
  ``everything_2.json`` for ``language=en``.

Tests script failures with :meth:`ReplayServer.inject` (a status, a body, ``"drop"`` to close the socket
unanswered, or ``("delay", s)``) and can freeze the N-th request with ``block_at`` to kill a client
mid-request. Every request is recorded in ``hits``.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from stockllm import store

FIXTURES = Path(__file__).parent / "fixtures"
EXCHANGE = FIXTURES / "exchange"
NEWSAPI = FIXTURES / "newsapi"
TWSE_PATH = "/rwd/zh/afterTrading/STOCK_DAY"
TPEX_PATH = "/www/zh-tw/afterTrading/tradingStock"
NEWS_PATH = "/v2/everything"
MI_INDEX_PATH = "/rwd/zh/afterTrading/MI_INDEX"
DAILY_QUOTES_PATH = "/www/zh-tw/afterTrading/dailyQuotes"


def load(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


@dataclass
class Hit:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


# --- generated exchange replies -------------------------------------------------------------------------

def _price(value: float) -> str:
    return "--" if value != value else f"{value:,.2f}"  # NaN → "--" as TWSE writes untraded prices


def _change(value: float) -> str:
    if value != value:
        return "--"
    return f"{'+' if value > 0 else '-' if value < 0 else ' '}{abs(value):,.2f}"


def twse_reply_from_csv(code: str, year: int, month: int) -> dict:
    """TWSE ``STOCK_DAY`` reply for a month of the bundled snapshot, shaped like the real 2330 sample."""
    template = load(EXCHANGE / "twse_rwd_STOCK_DAY_2330_20260801.json")
    path = store.snapshot_dir() / f"{code}.csv"
    frame = store.read_price_csv(path) if path.exists() else None
    prefix = f"{year}-{month:02d}-"
    rows = frame[frame["date"].str.startswith(prefix)] if frame is not None else []
    if len(rows) == 0:
        return load(EXCHANGE / "twse_rwd_STOCK_DAY_nodata.json")
    if rows[["turnover", "transaction"]].isna().any().any():
        raise ValueError(f"snapshot {code} lacks turnover/transaction in {prefix}: generate TWSE replies only from full-column rows")
    data = []
    for r in rows.itertuples():
        y, m, d = r.date.split("-")
        data.append([f"{int(y) - 1911}/{m}/{d}", f"{r.capacity:,}", f"{r.turnover:,}", _price(r.open), _price(r.high),
                     _price(r.low), _price(r.close), _change(r.change), f"{r.transaction:,}", ""])
    reply = copy.deepcopy(template)
    reply.update(date=f"{year}{month:02d}01", title=f"{year - 1911}年{month:02d}月 {code} 各日成交資訊", data=data, total=len(data))
    return reply


def tpex_empty_reply(code: str, year: int, month: int) -> dict:
    reply = copy.deepcopy(load(EXCHANGE / "tpex_tradingStock_6488_20260801.json"))
    reply.update(date=f"{year}{month:02d}01", code=code)
    reply["tables"][0].update(data=[], totalCount=0, date=f"{year}{month:02d}01")
    return reply


def exchange_reply(path: str, params: dict[str, str]) -> tuple[int, dict]:
    if path == TWSE_PATH:
        code, day = params["stockNo"], params["date"]
        sample = EXCHANGE / f"twse_rwd_STOCK_DAY_{code}_{day}.json"
        return 200, load(sample) if sample.exists() else twse_reply_from_csv(code, int(day[:4]), int(day[4:6]))
    if path == TPEX_PATH:
        code, (year, month, _) = params["code"], params["date"].split("/")
        sample = EXCHANGE / f"tpex_tradingStock_{code}_{year}{month}01.json"
        return 200, load(sample) if sample.exists() else tpex_empty_reply(code, int(year), int(month))
    if path == MI_INDEX_PATH:
        sample = EXCHANGE / f"twse_rwd_MI_INDEX_{params['type']}_{params['date']}.json"
        return 200, load(sample if sample.exists() else EXCHANGE / "twse_rwd_STOCK_DAY_nodata.json")
    if path == DAILY_QUOTES_PATH:
        day = params["date"].replace("/", "")
        sample = EXCHANGE / f"tpex_dailyQuotes_{day}.json"
        return 200, load(sample) if sample.exists() else tpex_no_quotes(day)
    return 404, {"stat": "not found"}


def tpex_no_quotes(day: str) -> dict:
    """TPEx's real empty daily-quotes reply (a holiday), dated ``day`` (YYYYMMDD)."""
    reply = load(EXCHANGE / "tpex_dailyQuotes_nodata_20230101.json")
    reply["date"] = day
    reply["tables"][0]["date"] = f"{int(day[:4]) - 1911}/{day[4:6]}/{day[6:]}"
    return reply


def newsapi_reply(params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
    key = headers.get("x-api-key")
    if not key:
        return 401, load(NEWSAPI / "error_ApiKeyMissing.json")
    if key == "bad":
        return 401, load(NEWSAPI / "error_ApiKeyInvalid.json")
    return 200, load(NEWSAPI / ("everything_1.json" if params.get("language") == "zh" else "everything_2.json"))


# --- the server -----------------------------------------------------------------------------------------

class ReplayServer:
    """Threaded HTTP server on an ephemeral 127.0.0.1 port; use as a context manager."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: deque = deque()
        self.block_at: int | None = None
        self.blocked = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ReplayServer:
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def inject(self, *actions) -> None:
        """Answer the next requests with ``actions`` in order: ``503``, ``(429, body)`` (a dict, or raw bytes),
        ``"drop"`` (close unanswered) or ``("delay", seconds)`` (then the normal reply)."""
        self.script.extend(actions)

    def count(self, path: str | None = None) -> int:
        return sum(1 for h in self.hits if path is None or h.path == path)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                with server._lock:
                    server.hits.append(Hit(url.path, params, {k.lower(): v for k, v in self.headers.items()}))
                    number = len(server.hits)
                    action = server.script.popleft() if server.script else None
                if server.block_at == number:
                    server.blocked.set()
                    server.release.wait(30)
                    return
                if action == "drop":
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "delay":
                    time.sleep(action[1])
                    action = None
                if isinstance(action, int):
                    status, body = action, {"status": "error", "message": f"injected HTTP {action}"}
                elif isinstance(action, tuple):
                    status, body = action
                elif url.path == NEWS_PATH:
                    status, body = newsapi_reply(params, {k.lower(): v for k, v in self.headers.items()})
                else:
                    status, body = exchange_reply(url.path, params)
                payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) or was killed

        return Handler
