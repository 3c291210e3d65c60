"""Daily prices from the exchanges' monthly endpoints (TWSE ``STOCK_DAY``, TPEx ``tradingStock``).

One request returns one company's month. Every reply is kept verbatim in the data dir's cache::

    <data-dir>/cache/prices/<code>/<YYYYMM>.json   {"source", "code", "month", "fetched_at", "reply"}

A cached month is up to date when it was fetched after the exchange published the month's latest trading
day so far (:data:`PUBLISHED` Taipei time on a trading day of :mod:`stockllm.market`'s calendar). So a
finished month is never requested again, the current month is requested again once a new session has
closed, and a re-run in between makes zero requests. ``prices/<code>.csv`` is then rebuilt from all cached months of the company,
so a run killed at any point resumes from its cache and ends with the same files as an uninterrupted run
(the cache and the CSV are both written atomically).

Parsing follows twstock's own fetchers: ROC dates (``115/08/03`` → 2026-08-03), thousands separators,
``--`` (no trade) → empty price, ``X0.00`` (不比價) → 0 change, and TPEx's units 張 / 仟元 → ×1000.
TWSE's "很抱歉，沒有符合條件的資料!" is a real month without rows (not yet listed, suspended) and is cached
as such.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import market, store
from ..errors import StockLLMError
from ..universe import Company
from .http import HttpClient, SourceUnreachable, base_url, throttle_from_env

TAIPEI = timezone(timedelta(hours=8))  # Taiwan keeps UTC+8 all year (no daylight saving)
TWSE_NO_DATA = "很抱歉，沒有符合條件的資料!"
PUBLISHED = time(17, 0)
"""By this Taipei time a trading day's rows are in STOCK_DAY / tradingStock (the close is 13:30; margin kept)."""


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise StockLLMError(f"--month {self.month} is not a month; use 1-12")

    def __str__(self) -> str:
        return f"{self.year}-{self.month:02d}"

    @property
    def key(self) -> str:
        return f"{self.year}{self.month:02d}"

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)


def months_between(first: Month, last: Month) -> list[Month]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = month.next()
    return months


def taipei_now() -> datetime:
    return datetime.now(TAIPEI)


def latest_publication(moment: datetime) -> datetime:
    """The last time at or before ``moment`` when the exchange published a trading day's rows."""
    day = moment.astimezone(TAIPEI).date()
    while True:
        stamp = datetime.combine(day, PUBLISHED, TAIPEI)
        if stamp <= moment and market.is_trading_day(day):
            return stamp
        day -= timedelta(days=1)


def is_up_to_date(entry: dict, month: Month, now: datetime) -> bool:
    """Whether a cached month already holds every trading day of ``month`` published by ``now``."""
    try:
        fetched_at = datetime.fromisoformat(entry["fetched_at"])
    except (KeyError, TypeError, ValueError):
        return False
    month_end = datetime.combine(month.last_day, time(23, 59, 59), TAIPEI)
    return fetched_at >= latest_publication(min(now, month_end))


# --- reply parsing ------------------------------------------------------------------------------------

def _number(text: object, what: str) -> float | None:
    """``"1,234.50"`` → 1234.5; ``"--"`` / blank → None; ``"+5.00"`` and ``"X0.00"`` (不比價) → signed value."""
    cleaned = str(text).strip().replace(",", "").lstrip("X+")
    if cleaned in ("", "-", "--", "---"):
        return None
    try:
        return float(cleaned)
    except ValueError:
        raise StockLLMError(f"cannot read {what} value {text!r} in the exchange reply; the format may have changed — report it with the cached reply") from None


def _roc_date(text: str, month: Month, source: str) -> str:
    """``"115/08/03"`` (ROC year, TPEx may add ``*``) → ``"2026-08-03"``, checked to lie in ``month``."""
    try:
        roc_year, mm, dd = str(text).replace("*", "").replace("＊", "").strip().split("/")
        day = date(int(roc_year) + 1911, int(mm), int(dd))
    except ValueError:
        raise StockLLMError(f"{source} reply has an unreadable date {text!r}; expected ROC dates like 115/08/03") from None
    if Month.of(day) != month:
        raise StockLLMError(f"{source} answered rows of {Month.of(day)} when asked for {month}; delete that cache file and re-run")
    return day.isoformat()


def _rows(data: list, fields: list | None, month: Month, source: str, share_unit: int, value_unit: int) -> list[dict]:
    """Exchange rows (date, shares, value, open, high, low, close, change, trades[, note]) → twstock dicts.

    The units come from the field names when present (成交張數 = lots of 1000 shares, 成交仟元 = thousand TWD).
    """
    if fields and len(fields) >= 3:
        share_unit = 1000 if "張" in fields[1] else 1
        value_unit = 1000 if "仟" in fields[2] else 1
    out = []
    for row in data:
        if len(row) < 9:
            raise StockLLMError(f"{source} reply row {row!r} has fewer than 9 fields; the format may have changed")
        values = [_number(v, name) for v, name in zip(row[1:9], store.PRICE_COLUMNS[1:])]
        capacity, turnover, open_, high, low, close, change, transaction = values
        out.append({
            "date": _roc_date(row[0], month, source),
            "capacity": None if capacity is None else round(capacity * share_unit),
            "turnover": None if turnover is None else round(turnover * value_unit),
            "open": open_, "high": high, "low": low, "close": close,
            "change": change,
            "transaction": None if transaction is None else round(transaction),
        })
    return out


def parse_twse(reply: dict, month: Month) -> list[dict]:
    """Rows of a TWSE ``STOCK_DAY`` reply; ``[]`` for its no-data answer."""
    stat = str(reply.get("stat", "")).strip()
    if stat == TWSE_NO_DATA or (stat == "OK" and not reply.get("data")):
        return []
    if stat != "OK":
        raise StockLLMError(f"TWSE refused the request for {month}: {stat or 'no stat in reply'}")
    return _rows(reply["data"], reply.get("fields"), month, "TWSE", 1, 1)


def parse_tpex(reply: dict, month: Month) -> list[dict]:
    """Rows of a TPEx ``tradingStock`` reply (units 張 and 仟元, as twstock expects); ``[]`` when empty."""
    stat = str(reply.get("stat", "ok")).strip().lower()
    if stat != "ok":
        raise StockLLMError(f"TPEx refused the request for {month}: {reply.get('stat')}")
    tables = reply.get("tables") or []
    if not tables or not tables[0].get("data"):
        return []
    return _rows(tables[0]["data"], tables[0].get("fields"), month, "TPEx", 1000, 1000)


@dataclass(frozen=True)
class Exchange:
    """One market's monthly endpoint: where to ask, with which parameters, and how to read the answer."""

    market: str
    source: str
    path: str
    params: Callable[[str, Month], dict]
    parse: Callable[[dict, Month], list[dict]]


EXCHANGES = {
    "TWSE": Exchange("TWSE", "twse", "rwd/zh/afterTrading/STOCK_DAY",
                     lambda code, m: {"date": f"{m.key}01", "stockNo": code, "response": "json"}, parse_twse),
    "TPEx": Exchange("TPEx", "tpex", "www/zh-tw/afterTrading/tradingStock",
                     lambda code, m: {"code": code, "date": f"{m.year}/{m.month:02d}/01", "response": "json"}, parse_tpex),
}


def default_clients() -> dict[str, HttpClient]:
    """One throttled client per exchange (3 requests / 5 s each, or ``STOCKLLM_THROTTLE``)."""
    return {market: HttpClient(market, base_url(ex.source), throttle_from_env()) for market, ex in EXCHANGES.items()}


# --- the month cache ----------------------------------------------------------------------------------

def cache_path(data_dir: Path, code: str, month: Month) -> Path:
    return Path(data_dir) / "cache" / "prices" / code / f"{month.key}.json"


def _read_cache(path: Path) -> dict | None:
    """A cached month, or None when absent or unreadable (then it is simply fetched again)."""
    try:
        entry = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) and "reply" in entry else None


def _fetch_month(data_dir: Path, company: Company, month: Month, client: HttpClient, now: datetime) -> None:
    """Make sure the cache holds an up-to-date ``month`` of ``company`` (one request when it does not)."""
    path = cache_path(data_dir, company.code, month)
    cached = _read_cache(path)
    if cached and is_up_to_date(cached, month, now):
        return
    exchange = EXCHANGES[company.market]
    status, reply = client.request_json(exchange.path, exchange.params(company.code, month))
    if status != 200 or not isinstance(reply, dict):
        raise StockLLMError(f"{exchange.market} answered HTTP {status} for {company.code} {month}; check STOCKLLM_{exchange.source.upper()}_URL or re-run later")
    exchange.parse(reply, month)  # refuse to cache a reply we cannot read
    store.atomic_write_json(path, {
        "source": exchange.market, "code": company.code, "month": str(month),
        "fetched_at": now.isoformat(timespec="seconds"), "reply": reply,
    })


def cached_rows(data_dir: Path, company: Company) -> pd.DataFrame:
    """All rows of all cached months of ``company``, in date order (empty frame when none)."""
    folder = Path(data_dir) / "cache" / "prices" / company.code
    rows: list[dict] = []
    for path in sorted(folder.glob("[0-9]" * 6 + ".json")):
        entry = _read_cache(path)
        if entry is not None:
            month = Month(int(path.stem[:4]), int(path.stem[4:]))
            rows += EXCHANGES[entry.get("source", company.market)].parse(entry["reply"], month)
    return pd.DataFrame(rows, columns=store.PRICE_COLUMNS)


def _with_older_rows(data_dir: Path, code: str, fetched: pd.DataFrame) -> pd.DataFrame:
    """Keep stored rows older than the exchange's first row when they are complete exchange rows.

    The snapshot's TWSE rows (all nine fields) extend a fetch back in time; rows with an empty ``turnover``
    or ``transaction`` come from Yahoo (TPEx companies, 4938), whose volume is not the exchange's share
    count, so they are dropped rather than mixed into one series.
    """
    path = store.prices_path(data_dir, code)
    if not path.exists():
        return fetched
    stored = store.read_price_csv(path)
    older = stored[stored["date"] < fetched["date"].min()]
    if older.empty or older[["turnover", "transaction"]].isna().any().any():
        return fetched
    return pd.concat([older, fetched], ignore_index=True)


# --- the fetch ----------------------------------------------------------------------------------------

@dataclass
class FetchReport:
    """What a price fetch did, for the caller to report or act on (snapshot fallback)."""

    written: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    requests: int = 0
    no_rows: list[str] = field(default_factory=list)
    stale: dict[str, int] = field(default_factory=dict)
    unreachable: list[Company] = field(default_factory=list)
    unreachable_reasons: dict[str, str] = field(default_factory=dict)
    months: int = 0

    def summary_lines(self, data_dir: Path | str, n_companies: int) -> list[str]:
        """What happened, one line per fact, for the command line to print."""
        lines = []
        if self.written:
            first = min(v[0] for v in self.written.values())
            last = max(v[1] for v in self.written.values())
            lines.append(f"prices: {len(self.written)} of {n_companies} companies written to {Path(data_dir) / 'prices'} ({first} → {last}); "
                         f"{self.requests} requests, the rest of {n_companies * self.months} company-months from the cache")
        if self.no_rows:
            lines.append(f"no trading rows in the requested months for {', '.join(self.no_rows)} (the exchange answered 'no data')")
        lines += [f"{market} unreachable: {reason}" for market, reason in self.unreachable_reasons.items()]
        if self.stale:
            lines.append("rebuilt from the cache only, months not refreshed: " + ", ".join(f"{c} ({n})" for c, n in self.stale.items()))
        return lines


def fetch_prices(
    data_dir: Path | str,
    companies: list[Company],
    year: int,
    month: int,
    *,
    now: datetime | None = None,
    clients: dict[str, HttpClient] | None = None,
    progress: bool | None = None,
) -> FetchReport:
    """Fetch ``year``-``month`` … the current month for ``companies`` into ``data_dir/prices``.

    Up-to-date months come from the cache (``now``: default the current time); an exchange that cannot be reached at all is skipped: its
    companies are listed in ``report.unreachable`` when nothing of them is cached (the CLI installs the
    offline snapshot for those) and in ``report.stale`` when their CSV was rebuilt from older cache only.
    ``progress`` None shows the bar only on a terminal.
    """
    data_dir = Path(data_dir)
    now = (now or taipei_now()).astimezone(TAIPEI)
    first, current = Month(year, month), Month.of(now.date())
    if first > current:
        raise StockLLMError(f"--year/--month {first} is after the current month {current} (Taipei time); give an earlier start")
    months = months_between(first, current)
    if clients is None:
        clients = default_clients()
    report = FetchReport()
    bar = tqdm(total=len(companies) * len(months), unit="month", desc="prices", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress is None else not progress)
    for client in clients.values():
        client.throttle.on_wait = lambda seconds: bar.set_postfix_str(f"throttle wait {seconds:.1f}s")
    sent_before = sum(c.requests_sent for c in clients.values())
    try:
        for company in companies:
            missing = 0
            for m in months:
                bar.set_description(f"{company.code} {m}")
                if company.market in report.unreachable_reasons:
                    missing += 1
                else:
                    try:
                        _fetch_month(data_dir, company, m, clients[company.market], now)
                    except SourceUnreachable as exc:
                        report.unreachable_reasons[company.market] = str(exc)
                        missing += 1
                bar.update()
            _store_company(data_dir, company, missing, report)
    finally:
        bar.close()
        for client in clients.values():
            client.throttle.on_wait = None
        report.requests = sum(c.requests_sent for c in clients.values()) - sent_before
    report.months = len(months)
    return report


def _store_company(data_dir: Path, company: Company, missing: int, report: FetchReport) -> None:
    """Rebuild ``prices/<code>.csv`` from the cache, or record why it could not be."""
    rows = cached_rows(data_dir, company)
    if rows.empty and missing:
        report.unreachable.append(company)
        return
    if rows.empty:
        report.no_rows.append(company.code)
        return
    if missing:
        report.stale[company.code] = missing
    frame = store.normalise_prices(_with_older_rows(data_dir, company.code, store.normalise_prices(rows)))
    store.write_prices(data_dir, company.code, frame)
    report.written[company.code] = (frame["date"].iloc[0], frame["date"].iloc[-1], len(frame))
