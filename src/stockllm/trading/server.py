"""The local simulated exchange: the course's ``stock_api`` HTTP API over :class:`~.ledger.Ledger`.

Same paths, form fields and JSON replies as ``http://140.116.86.242:8081/stock/api/v1`` so the
write-up's own ``requests.post(url, data={...})`` client works unchanged. Every refusal is
``{"result": "failed", "status": "<why>"}`` — HTTP 200 for refused requests (as the course server does),
404/405 for an unknown path or method, 500 only for a bug, and never a traceback in the body.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import StockLLMError
from .ledger import Ledger, Rejected

PREFIX = "/stock/api/v1"
ORDER_FIELDS = ("account", "password", "stock_code", "stock_shares", "stock_price")
log = logging.getLogger("stockllm.exchange")


def _failed(status: str, code: int = 200) -> JSONResponse:
    return JSONResponse({"result": "failed", "status": status}, status_code=code)


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
    """Form fields (urlencoded or multipart, as ``requests`` sends them), or a JSON object body."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Rejected("request body is not valid JSON; send form fields account, password, ...") from None
        if not isinstance(body, dict):
            raise Rejected("JSON body must be an object of form fields")
        return {k: str(v) for k, v in body.items()}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _require(fields: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [n for n in names if not fields.get(n, "").strip()]
    if missing:
        raise Rejected(f"missing form field(s): {', '.join(missing)}")


def create_app(ledger: Ledger) -> FastAPI:
    """The HTTP application over ``ledger`` (used by ``stockllm exchange serve`` and by the tests)."""
    app = FastAPI(title="stockllm local exchange", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Rejected)
    @app.exception_handler(StockLLMError)
    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        return _failed(str(exc))

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

    @app.post(PREFIX + "/get_user_stocks")
    async def get_user_stocks(request: Request) -> dict:
        fields = await _fields(request)
        _require(fields, ("account", "password"))
        return await run_in_threadpool(ledger.user_stocks, fields["account"], fields["password"], fields.get("client_order_id") or None)

    async def order(side: str, request: Request) -> dict:
        fields = await _fields(request)
        _require(fields, ORDER_FIELDS)
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


def serve(db: Path, data_dir: Path, host: str = "127.0.0.1", port: int = 8081, access_log: bool = False) -> None:
    """Run the exchange until interrupted (every accepted request is already committed to ``db``)."""
    import uvicorn

    ledger = Ledger(db, data_dir)
    ledger.prices.last_date()  # fail now, not on the first request, when the data dir is empty
    print(f"exchange on http://{host}:{port}{PREFIX} — market date {ledger.market_date()}, db {db}, data {data_dir}", flush=True)
    uvicorn.run(create_app(ledger), host=host, port=port, access_log=access_log, log_level="warning")


class Background:
    """The exchange served from a thread of this process (tests, benchmarks): ``with Background(ledger) as url``.

    ``port=0`` picks a free port; ``url`` is the API base, e.g. ``http://127.0.0.1:54321/stock/api/v1``.
    """

    def __init__(self, ledger: Ledger, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        config = uvicorn.Config(create_app(ledger), host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StockLLMError("the exchange server thread did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}{PREFIX}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
