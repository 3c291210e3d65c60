"""Client of the course's simulated-exchange API (the write-up's ``stock_api.py``), safe for real orders.

* Base URL: argument, else ``STOCK_API_URL``, else the course's ``http://140.116.86.242:8081/stock/api/v1``.
* Credentials: ``STOCK_API_ACCOUNT`` / ``STOCK_API_PASSWORD`` (or arguments); the password is sent in the
  form body only — never logged, printed, written to the order log or shown by ``repr``.
* Reads (stock info, user stocks) are retried on connection errors, timeouts and 5xx replies.
* Orders are never retried. Each one is appended to the order log (JSONL, fsync'd) *before* it is sent and
  again with its reply. When the reply is lost (read timeout, connection dropped, non-JSON reply) the client
  asks ``get_user_stocks`` instead of resubmitting and records what it concluded:

  - ``accepted`` / ``not_received``: the exchange looks orders up by ``client_order_id`` (the local one
    does: ``get_user_stocks`` with that field answers ``order``) and finds it / does not;
  - ``unknown``: the exchange does not list orders (the course server shows only filled holdings), so
    whether the reservation exists can only be seen after the fill day — the order is NOT sent again.

  A connection that was refused or timed out while connecting sent nothing: that is ``not_sent``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import requests

from ..errors import StockLLMError
from ..market import to_date

DEFAULT_URL = "http://140.116.86.242:8081/stock/api/v1"
DEFAULT_ORDER_LOG = "orders.jsonl"
_log_lock = threading.Lock()


@dataclass
class OrderResult:
    """What happened to one order: ``outcome`` is accepted, rejected, not_sent, not_received or unknown."""

    client_order_id: str
    side: str
    code: str
    lots: int
    price: float
    outcome: str
    status: str
    reply: dict | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line durably: a single ``write`` on an O_APPEND file, then ``fsync``.

    A crash leaves at worst a truncated last line, which :func:`read_order_log` skips; earlier lines are intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()
    with _log_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_order_log(path: Path) -> list[dict]:
    """Every complete record of an order log (a torn last line from a crash is ignored)."""
    records = []
    if Path(path).exists():
        for line in Path(path).read_text("utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _yyyymmdd(day: date | str) -> str:
    text = str(day)
    return text if len(text) == 8 and text.isdigit() else to_date(day).strftime("%Y%m%d")


class StockAPI:
    """The four calls of the course API: :meth:`stock_info`, :meth:`user_stocks`, :meth:`buy`, :meth:`sell`."""

    def __init__(self, base_url: str | None = None, account: str | None = None, password: str | None = None, *,
                 order_log: Path | str | None = None, timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.5, send_client_order_id: bool = True):
        self.base_url = (base_url or os.environ.get("STOCK_API_URL") or DEFAULT_URL).rstrip("/")
        self.account = account if account is not None else os.environ.get("STOCK_API_ACCOUNT", "")
        self._password = password if password is not None else os.environ.get("STOCK_API_PASSWORD", "")
        self.order_log = Path(order_log or os.environ.get("STOCK_API_ORDER_LOG") or DEFAULT_ORDER_LOG)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.send_client_order_id = send_client_order_id
        self.session = requests.Session()

    def __repr__(self) -> str:
        return f"StockAPI(base_url={self.base_url!r}, account={self.account!r}, order_log={str(self.order_log)!r})"

    def _credentials(self) -> dict[str, str]:
        if not self.account or not self._password:
            raise StockLLMError("exchange credentials missing; set STOCK_API_ACCOUNT and STOCK_API_PASSWORD")
        return {"account": self.account, "password": self._password}

    # --- reads: retried ------------------------------------------------------------------------------

    def _read(self, method: str, path: str, data: dict | None = None) -> dict:
        url = f"{self.base_url}/{path}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.session.request(method, url, data=data, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = type(exc).__name__
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            try:
                reply = response.json()
            except ValueError:
                raise StockLLMError(f"{url.split('?')[0]} answered HTTP {response.status_code} without JSON; check STOCK_API_URL") from None
            if not isinstance(reply, dict):
                raise StockLLMError(f"{path.split('/')[0]} answered {type(reply).__name__}, not a JSON object; check STOCK_API_URL")
            return reply
        raise StockLLMError(f"exchange {self.base_url} unreachable after {self.retries + 1} tries ({last}); check STOCK_API_URL or try later")

    def stock_info(self, code: str, start: date | str, stop: date | str) -> list[dict]:
        """Daily rows of ``code`` from ``start`` to ``stop`` (dates or YYYYMMDD), newest first as the API gives."""
        reply = self._read("GET", f"api_get_stock_info_from_date_json/{code}/{_yyyymmdd(start)}/{_yyyymmdd(stop)}")
        if reply.get("result") != "success":
            raise StockLLMError(f"stock info for {code} refused: {reply.get('status', 'no reason given')}")
        return list(reply.get("data") or [])

    def user_stocks(self, client_order_id: str | None = None) -> dict:
        """The full ``get_user_stocks`` reply (``data`` = holdings; the local exchange adds cash and orders).

        With ``client_order_id`` the local exchange also answers ``order``: that order, or null if it never
        arrived (the course server ignores the extra field).
        """
        form = self._credentials() | ({"client_order_id": client_order_id} if client_order_id else {})
        reply = self._read("POST", "get_user_stocks", form)
        if reply.get("result") != "success":
            raise StockLLMError(f"get_user_stocks refused: {reply.get('status', 'no reason given')}")
        return reply

    # --- orders: logged, never retried -----------------------------------------------------------------

    def buy(self, code: str, lots: int, price: float) -> OrderResult:
        return self._order("buy", code, lots, price)

    def sell(self, code: str, lots: int, price: float) -> OrderResult:
        return self._order("sell", code, lots, price)

    def _record(self, event: str, order_id: str, **fields: Any) -> None:
        append_jsonl(self.order_log, {"event": event, "client_order_id": order_id,
                                      "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields})

    def _order(self, side: str, code: str, lots: int, price: float) -> OrderResult:
        form = {**self._credentials(), "stock_code": str(code), "stock_shares": str(int(lots)), "stock_price": f"{price:g}"}
        order_id = uuid.uuid4().hex
        if self.send_client_order_id:
            form["client_order_id"] = order_id
        request = {k: v for k, v in form.items() if k != "password"}
        self._record("submit", order_id, side=side, url=f"{self.base_url}/{side}", request=request)
        result = OrderResult(order_id, side, str(code), int(lots), float(price), "unknown", "")
        try:
            response = self.session.post(f"{self.base_url}/{side}", data=form, timeout=self.timeout)
            reply = response.json()
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as exc:
            result.outcome, result.status = "not_sent", f"not sent ({type(exc).__name__}); safe to place again"
        except requests.ConnectionError as exc:
            if _refused(exc):
                result.outcome, result.status = "not_sent", "connection refused; nothing was sent, safe to place again"
            else:
                return self._reconcile(result, f"connection lost ({type(exc).__name__})")
        except (requests.Timeout, ValueError) as exc:
            return self._reconcile(result, f"no usable reply ({type(exc).__name__})")
        else:
            result.reply = reply
            result.outcome = "accepted" if reply.get("result") == "success" else "rejected"
            result.status = str(reply.get("status", ""))
        self._record("reply", order_id, outcome=result.outcome, status=result.status, reply=result.reply)
        return result

    def _reconcile(self, result: OrderResult, why: str) -> OrderResult:
        """Decide what became of an order whose reply was lost, by reading the account — never by resending."""
        self._record("lost_reply", result.client_order_id, reason=why)
        holdings = None
        try:
            account = self.user_stocks(result.client_order_id if self.send_client_order_id else None)
        except StockLLMError as exc:
            result.outcome, result.status = "unknown", f"{why}; reconciliation failed ({exc}); NOT resent — check the account before placing it again"
        else:
            holdings = account.get("data")
            if "order" in account and self.send_client_order_id:
                match = account["order"]
                if match:
                    result.outcome, result.status = "accepted", f"{why}; the exchange lists it as order {match.get('id')} ({match.get('status')})"
                else:
                    result.outcome, result.status = "not_received", f"{why}; the exchange does not list it, so it was not accepted; NOT resent"
            else:
                result.outcome, result.status = "unknown", f"{why}; this exchange shows only filled holdings, so the reservation cannot be seen before its fill day; NOT resent"
            result.reply = None
        self._record("reconciled", result.client_order_id, outcome=result.outcome, status=result.status, holdings=holdings)
        return result


def _refused(exc: Exception) -> bool:
    """Whether a connection error happened before any byte was sent (connection refused / DNS failure)."""
    text = repr(exc)
    return any(marker in text for marker in ("ConnectionRefused", "NewConnectionError", "NameResolution", "Errno 111"))
