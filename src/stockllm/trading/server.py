"""The local simulated exchange: the course's ``stock_api`` HTTP API over :class:`~.ledger.Ledger`.

Same paths, form fields and JSON replies as ``http://140.116.86.242:8081/stock/api/v1`` so the
write-up's own ``requests.post(url, data={...})`` client works unchanged. Every refusal is
``{"result": "failed", "status": "<why>"}`` — HTTP 200 for orders the course's rules refuse (as the course
server does), 400 for a value beyond what the exchange represents (a field longer than
:data:`FIELD_LIMITS`, a price above ``rules.MAX_PRICE``), 413 for a body over :data:`MAX_BODY` bytes,
429 while failed logins are throttled (:mod:`.throttle`), 503 when the database stays busy, 404/405 for an
unknown path or method, 500 only for a bug, and never a traceback in the body.

Hostile input costs little: the body size is checked before any parser runs, every field's length before
any number is parsed, and the password before the write lock is taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import StockLLMError
from ..threaded_server import ThreadedServer
from . import rules
from .ledger import Ledger, Rejected
from .throttle import FailedLogins

PREFIX = "/stock/api/v1"
ORDER_FIELDS = ("account", "password", "stock_code", "stock_shares", "stock_price")
FIELD_LIMITS = {"account": 64, "password": 256, "stock_code": 16, "stock_shares": 16,
                "stock_price": rules.MAX_PRICE_CHARS, "client_order_id": 128}
"""Longest value accepted per form field (characters); other fields are ignored."""
MAX_BODY = 16 * 1024
"""Largest request body in bytes: a real order is under 200."""
TARPIT_SECONDS = 3.0
"""A throttled login waits this long (without holding a thread) before its refusal: it slows guessers down."""
CONCURRENT_CHECKS = 2
"""Password checks (scrypt, ~100 ms of CPU each) running at once; more wait their turn, so guessing from
many addresses cannot take every core from the requests of clients already logged in."""
log = logging.getLogger("stockllm.exchange")


def _failed(status: str, code: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"result": "failed", "status": status}, status_code=code, headers=headers)


class Throttled(Rejected):
    """A login refused unchecked because its account or address failed too often lately (HTTP 429)."""

    def __init__(self, wait: float):
        self.retry_after = max(1, math.ceil(wait))
        super().__init__(f"too many failed logins for this account or from this address; try again in {self.retry_after} s", http_status=429)


class BodyLimit:
    """ASGI middleware refusing bodies over ``limit`` bytes before any parser sees them.

    A declared ``Content-Length`` over the limit is answered at once; a body sent without one is counted as
    it streams in and refused as soon as it passes the limit.
    """

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    def _refusal(self) -> Rejected:
        return Rejected(f"request body over {self.limit:,} bytes; an order is a few short form fields", http_status=413)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if len(declared) > 12 or not declared.isdigit() or int(declared) > self.limit:
            return await _failed(str(self._refusal()), 413)(scope, receive, send)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self._refusal()
            return message

        await self.app(scope, bounded_receive, send)


def _day(text: str, name: str) -> date:
    if not re.fullmatch(r"\d{8}", text):
        raise Rejected(f"{name} date {text!r} must be YYYYMMDD")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise Rejected(f"{name} date {text!r} is not a calendar date") from None


def _unix(day: str) -> int:
    """A trading date as unix seconds at 00:00 UTC — the same calendar date in UTC and Taiwan time."""
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())


def _number(value, kind):
    return None if value is None else kind(value)


def stock_info(ledger: Ledger, code: str, start: str, stop: str) -> dict:
    """Daily rows of ``code`` between two YYYYMMDD dates, newest first, never after the market date."""
    first, last = _day(start, "start"), _day(stop, "stop")
    if first > last:
        raise Rejected(f"start date {start} is after stop date {stop}")
    if not ledger.prices.has(code):
        raise Rejected(f"unknown stock code {code!r}: this exchange has no prices for it")
    rows = ledger.prices.records(code, first, min(last, ledger.market_date()))
    data = [
        {
            "date": _unix(r["date"]),
            "capacity": _number(r["capacity"], int),
            "turnover": _number(r["turnover"], int),
            "open": _number(r["open"], float),
            "high": _number(r["high"], float),
            "low": _number(r["low"], float),
            "close": _number(r["close"], float),
            "change": _number(r["change"], float),
            "transaction_volume": _number(r["transaction"], int),
            "stock_code_id": code,
        }
        for r in reversed(rows)
    ]
    return {"result": "success", "data": data}


async def _fields(request: Request) -> dict[str, str]:
    """The known form fields (urlencoded or multipart, as ``requests`` sends them, or a JSON object body),
    each refused when longer than :data:`FIELD_LIMITS` allows — before anything parses its value."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, a 5000-digit number, deep nesting
            raise Rejected("request body is not valid JSON; send form fields account, password, ...") from None
        if not isinstance(body, dict):
            raise Rejected("JSON body must be an object of form fields")
        if any(isinstance(v, (dict, list)) for v in body.values()):
            raise Rejected("JSON form fields must be strings or numbers")
        fields = {k: str(v) for k, v in body.items()}
    else:
        form = await request.form(max_files=0, max_fields=2 * len(FIELD_LIMITS))
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    fields = {k: v for k, v in fields.items() if k in FIELD_LIMITS}
    for name, value in fields.items():
        if len(value) > FIELD_LIMITS[name]:
            raise Rejected(f"form field {name} is {len(value):,} characters long; at most {FIELD_LIMITS[name]} are accepted", http_status=400)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape: no database can store it
                raise Rejected(f"form field {name} is not valid Unicode text", http_status=400) from None
    return fields


def _require(fields: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [n for n in names if not fields.get(n, "").strip()]
    if missing:
        raise Rejected(f"missing form field(s): {', '.join(missing)}")


def create_app(ledger: Ledger, logins: FailedLogins | None = None) -> FastAPI:
    """The HTTP application over ``ledger`` (used by ``stockllm exchange serve`` and by the tests).

    ``logins`` throttles failed logins (default: :class:`~.throttle.FailedLogins`'s limits).
    """
    app = FastAPI(title="stockllm local exchange", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    logins = logins or FailedLogins()
    checks = asyncio.Semaphore(CONCURRENT_CHECKS)

    @app.exception_handler(Rejected)
    @app.exception_handler(StockLLMError)
    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return _failed(str(exc), getattr(exc, "http_status", 200), headers)

    @app.exception_handler(sqlite3.OperationalError)
    async def busy(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        if "locked" in str(exc) or "busy" in str(exc):
            log.warning("database busy: %s %s", request.method, request.url.path)
            return _failed("the exchange is busy; nothing was applied, retry in a moment", 503, {"Retry-After": "1"})
        return await bug(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        why = "unknown path" if exc.status_code == 404 else str(exc.detail).lower()
        return _failed(f"{why}: {request.method} {request.url.path}; see docs/trading.md for the API", exc.status_code)

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return _failed("internal error; the request was not applied", 500)

    @app.api_route(PREFIX + "/api_get_stock_info_from_date_json/{code}/{start}/{stop}", methods=["GET", "POST"])
    async def get_stock_info(code: str, start: str, stop: str) -> dict:
        return await run_in_threadpool(stock_info, ledger, code, start, stop)

    async def login(request: Request, fields: dict[str, str]) -> None:
        """Check the password first, throttled, so the ledger's own check is the cached one."""
        account, password = fields["account"], fields["password"]
        if ledger.remembers(account, password):
            return
        address = request.client.host if request.client else "unknown"
        wait = logins.start(account, address)
        if wait:
            await asyncio.sleep(min(wait, TARPIT_SECONDS))
            raise Throttled(wait)
        ok = True
        try:
            async with checks:
                await run_in_threadpool(ledger.authenticate, account, password)
        except Rejected:
            ok = False  # only a wrong password counts as a failure, not a busy database
            raise
        finally:
            logins.ended(account, address, ok)

    @app.post(PREFIX + "/get_user_stocks")
    async def get_user_stocks(request: Request) -> dict:
        fields = await _fields(request)
        _require(fields, ("account", "password"))
        await login(request, fields)
        return await run_in_threadpool(ledger.user_stocks, fields["account"], fields["password"], fields.get("client_order_id") or None)

    async def order(side: str, request: Request) -> dict:
        fields = await _fields(request)
        _require(fields, ORDER_FIELDS)
        await login(request, fields)
        return await run_in_threadpool(
            ledger.place_order, side, fields["account"], fields["password"], fields["stock_code"],
            fields["stock_shares"], fields["stock_price"], fields.get("client_order_id") or None,
        )

    @app.post(PREFIX + "/buy")
    async def buy(request: Request) -> dict:
        return await order("buy", request)

    @app.post(PREFIX + "/sell")
    async def sell(request: Request) -> dict:
        return await order("sell", request)

    @app.get(PREFIX + "/status")
    async def status() -> dict:
        """Not in the course API: the market date, so a client can tell which day its orders fill."""
        market = await run_in_threadpool(ledger.market_date)
        return {"result": "success", "status": "open", "market_date": market.isoformat()}

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not (port taken, unknown host)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except socket.gaierror as exc:
        raise StockLLMError(f"cannot listen on {host}: {exc.strerror}; give --host an address of this machine") from None
    except OSError as exc:
        raise StockLLMError(f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or pick another --port") from None
    return sock


def serve(db: Path, data_dir: Path, host: str = "127.0.0.1", port: int = 8081, access_log: bool = False) -> None:
    """Run the exchange until interrupted (every accepted request is already committed to ``db``).

    The socket is bound before anything is printed, so a taken port is one error line, not a false start.
    With ``access_log`` every request line goes to stderr (uvicorn's access log: never bodies or passwords).
    """
    import uvicorn

    ledger = Ledger(db, data_dir)
    ledger.prices.last_date()  # fail now, not on the first request, when the data dir is empty
    sock = listen(host, port)
    print(f"exchange on http://{host}:{port}{PREFIX} — market date {ledger.market_date()}, db {db}, data {data_dir}", flush=True)
    config = uvicorn.Config(create_app(ledger), access_log=access_log, log_level="info" if access_log else "warning")
    uvicorn.Server(config).run(sockets=[sock])


class Background(ThreadedServer):
    """The exchange served from a thread of this process (tests, benchmarks): ``with Background(ledger) as url``.

    ``port=0`` picks a free port; ``url`` is the API base, e.g. ``http://127.0.0.1:54321/stock/api/v1``.
    """

    def __init__(self, ledger: Ledger, host: str = "127.0.0.1", port: int = 0, logins: FailedLogins | None = None):
        super().__init__(create_app(ledger, logins), host=host, port=port, what="the exchange server")

    def __enter__(self) -> str:
        return super().__enter__() + PREFIX
