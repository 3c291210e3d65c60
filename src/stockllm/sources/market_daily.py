"""Whole-market daily prices: one request per market per trading day instead of one per company-month.

TWSE's all-stock close report (``rwd/zh/afterTrading/MI_INDEX``, ``type=ALLBUT0999``: every security but
warrants) and TPEx's daily quotes (``www/zh-tw/afterTrading/dailyQuotes``) each list a whole market's day.
Two years of the ~1,920 listed common stocks take about 2 × 490 requests (~30 minutes under the exchanges'
3-requests-per-5-s limit) where the per-company monthly fetch (:mod:`.prices`) needs ~46,000 (~21 hours).

The requests go through the same throttled, retrying clients as the monthly fetch
(:func:`.prices.default_clients`). Every reply is kept verbatim::

    <data-dir>/cache/market/<TWSE|TPEx>/<YYYYMMDD>.json   {"source", "date", "fetched_at", "reply"}

A cached day is final once it was fetched after the day's rows were published (:data:`.prices.PUBLISHED`
Taipei time), so re-runs and runs killed half-way make no request for it again; ``refresh=True`` asks again
anyway (the exchange corrected a figure). Days come from :mod:`stockllm.market`'s calendar; a day the
exchange answers without rows (an unforeseen closure) is cached as such.

After the requests, ``prices/<code>.csv`` of every listed common stock of the market (twstock's code list;
ETFs, bonds and warrants in the reports are left out) is rebuilt from all cached days, with the same nine
twstock fields and units as the monthly fetch. Stored rows of other days are kept when they are complete
exchange rows (a monthly fetch or the snapshot's TWSE figures) and dropped when they are Yahoo rows
(empty ``turnover``/``transaction``), so one series never mixes two sources.

Format notes: TWSE gives the change's sign as HTML (``<p style= color:red>+</p>``, ``X`` = 不比價, whose
change TWSE writes as 0.00, as ``STOCK_DAY`` writes ``X0.00``); TPEx writes the signed change, or
``除息``/``除權`` on ex-dividend days, which has no number and is stored empty (never computed by us).
Untraded prices are ``--``/``---`` → empty, as in the monthly replies.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm import tqdm

from .. import market, store
from ..errors import StockLLMError
from ..universe import Company, listed_companies
from .http import HttpClient, SourceUnreachable
from .prices import PUBLISHED, TAIPEI, TWSE_NO_DATA, _number, _read_cache, default_clients, taipei_now

_TAG = re.compile(r"<[^>]*>")


# --- reply parsing ------------------------------------------------------------------------------------

def _columns(fields: list, wanted: dict[str, str], source: str) -> dict[str, int]:
    """Positions of the ``wanted`` twstock fields, found by the exchange's own field names."""
    names = [str(f).strip() for f in fields]
    out = {}
    for ours, theirs in wanted.items():
        if theirs not in names:
            raise StockLLMError(f"{source} daily report has no {theirs!r} column (fields: {', '.join(names)}); the format may have changed — report it with the cached reply")
        out[ours] = names.index(theirs)
    return out


def _whole(text: object, what: str, unit: int = 1) -> int | None:
    value = _number(text, what)
    return None if value is None else round(value * unit)


def _check_day(text: object, day: date, source: str) -> None:
    """Refuse a reply for another day than the one asked for (``20230130`` or ROC ``112/01/30``)."""
    digits = re.sub(r"\D", "", str(text))
    if len(digits) == 7:  # ROC year 112 + MMDD
        digits = f"{int(digits[:3]) + 1911}{digits[3:]}"
    if digits != day.strftime("%Y%m%d"):
        raise StockLLMError(f"{source} answered the report of {text!r} when asked for {day}; delete that cache file and re-run")


def parse_mi_index(reply: dict, day: date) -> dict[str, dict]:
    """``{code: twstock row}`` of a TWSE ``MI_INDEX`` ``ALLBUT0999`` reply; ``{}`` for its no-data answer."""
    stat = str(reply.get("stat", "")).strip()
    if stat == TWSE_NO_DATA:
        return {}
    if stat != "OK":
        raise StockLLMError(f"TWSE refused the daily report for {day}: {stat or 'no stat in reply'}")
    _check_day(reply.get("date", ""), day, "TWSE")
    tables = [t for t in reply.get("tables", []) if "證券代號" in (t.get("fields") or [])]
    if not tables:
        raise StockLLMError(f"TWSE's daily report for {day} has no table of closing prices (證券代號); the format may have changed")
    rows = {}
    for table in tables:
        at = _columns(table["fields"], {"code": "證券代號", "capacity": "成交股數", "transaction": "成交筆數", "turnover": "成交金額",
                                        "open": "開盤價", "high": "最高價", "low": "最低價", "close": "收盤價", "sign": "漲跌(+/-)",
                                        "change": "漲跌價差"}, "TWSE")
        for row in table.get("data") or []:
            size = _number(row[at["change"]], "漲跌價差")
            sign = _TAG.sub("", str(row[at["sign"]])).strip()
            rows[str(row[at["code"]]).strip()] = {
                "date": day.isoformat(),
                "capacity": _whole(row[at["capacity"]], "成交股數"), "turnover": _whole(row[at["turnover"]], "成交金額"),
                **{k: _number(row[at[k]], k) for k in ("open", "high", "low", "close")},
                "change": None if size is None else -size if sign == "-" else size,
                "transaction": _whole(row[at["transaction"]], "成交筆數"),
            }
    return rows


def parse_daily_quotes(reply: dict, day: date) -> dict[str, dict]:
    """``{code: twstock row}`` of a TPEx ``dailyQuotes`` reply (all its quote tables); ``{}`` when empty."""
    stat = str(reply.get("stat", "ok")).strip().lower()
    if stat != "ok":
        raise StockLLMError(f"TPEx refused the daily report for {day}: {reply.get('stat')}")
    _check_day(reply.get("date", ""), day, "TPEx")
    rows = {}
    for table in reply.get("tables") or []:
        fields = [str(f).strip() for f in table.get("fields") or []]
        if not table.get("data") or "代號" not in fields:
            continue
        shares = next((f for f in fields if f.startswith("成交股數") or f.startswith("成交張數")), "成交股數")
        value = next((f for f in fields if f.startswith("成交金額")), "成交金額(元)")
        at = _columns(fields, {"code": "代號", "close": "收盤", "change": "漲跌", "open": "開盤", "high": "最高", "low": "最低",
                               "capacity": shares, "turnover": value, "transaction": "成交筆數"}, "TPEx")
        share_unit = 1000 if "張" in shares else 1
        value_unit = 1000 if "仟" in value else 1
        for row in table["data"]:
            change = str(row[at["change"]]).strip()
            rows[str(row[at["code"]]).strip()] = {
                "date": day.isoformat(),
                "capacity": _whole(row[at["capacity"]], shares, share_unit), "turnover": _whole(row[at["turnover"]], value, value_unit),
                **{k: _number(row[at[k]], k) for k in ("open", "high", "low", "close")},
                "change": None if change.startswith("除") else _number(change, "漲跌"),
                "transaction": _whole(row[at["transaction"]], "成交筆數"),
            }
    return rows


@dataclass(frozen=True)
class DailyReport:
    """One market's whole-market daily endpoint: where to ask, with which parameters, how to read it."""

    market: str
    path: str
    params: Callable[[date], dict]
    parse: Callable[[dict, date], dict[str, dict]]


REPORTS = {
    "TWSE": DailyReport("TWSE", "rwd/zh/afterTrading/MI_INDEX",
                        lambda d: {"date": d.strftime("%Y%m%d"), "type": "ALLBUT0999", "response": "json"}, parse_mi_index),
    "TPEx": DailyReport("TPEx", "www/zh-tw/afterTrading/dailyQuotes",
                        lambda d: {"date": d.strftime("%Y/%m/%d"), "response": "json"}, parse_daily_quotes),
}


# --- the day cache ------------------------------------------------------------------------------------

def cache_path(data_dir: Path, market_name: str, day: date) -> Path:
    return Path(data_dir) / "cache" / "market" / market_name / f"{day:%Y%m%d}.json"


def _published(day: date) -> datetime:
    return datetime.combine(day, PUBLISHED, TAIPEI)


def is_final(entry: dict, day: date) -> bool:
    """Whether a cached day was fetched after the exchange published that day's rows."""
    try:
        return datetime.fromisoformat(entry["fetched_at"]) >= _published(day)
    except (KeyError, TypeError, ValueError):
        return False


def trading_days(start: date, end: date, now: datetime) -> list[date]:
    """Trading days from ``start`` to ``end`` whose rows are published by ``now``."""
    days, day = [], start
    while day <= end and _published(day) <= now:
        if market.is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def _fetch_day(data_dir: Path, report: DailyReport, day: date, client: HttpClient, now: datetime, refresh: bool) -> bool:
    """Make sure the cache holds a final ``day`` of ``report``'s market; True when a request was needed."""
    path = cache_path(data_dir, report.market, day)
    cached = _read_cache(path)
    if cached and is_final(cached, day) and not refresh:
        return False
    status, reply = client.request_json(report.path, report.params(day))
    if status != 200 or not isinstance(reply, dict):
        raise StockLLMError(f"{report.market} answered HTTP {status} for its daily report of {day}; check its STOCKLLM_*_URL or re-run later")
    report.parse(reply, day)  # refuse to cache a reply we cannot read
    store.atomic_write_json(path, {"source": report.market, "date": day.isoformat(), "fetched_at": now.isoformat(timespec="seconds"), "reply": reply})
    return True


def cached_days(data_dir: Path, market_name: str, codes: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``codes`` from every cached day of ``market_name`` (with a ``code`` column), and the days without any row."""
    report = REPORTS[market_name]
    frames, empty = [], []
    for path in sorted((Path(data_dir) / "cache" / "market" / market_name).glob("[0-9]" * 8 + ".json")):
        entry = _read_cache(path)
        if entry is None:
            continue
        day = date(int(path.stem[:4]), int(path.stem[4:6]), int(path.stem[6:]))
        rows = report.parse(entry["reply"], day)
        if not rows:
            empty.append(day.isoformat())
        picked = [{"code": code, **row} for code, row in rows.items() if code in codes]
        if picked:
            frames.append(pd.DataFrame(picked))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["code", *store.PRICE_COLUMNS])
    return frame, empty


def _with_stored_rows(data_dir: Path, code: str, fetched: pd.DataFrame) -> pd.DataFrame:
    """Stored rows of days the cache lacks, kept when they are complete exchange rows (see the module docstring)."""
    path = store.prices_path(data_dir, code)
    if not path.exists():
        return fetched
    stored = store.read_price_csv(path)
    if stored[["turnover", "transaction"]].isna().any().any():
        return fetched
    return pd.concat([stored, fetched], ignore_index=True)  # normalise_prices keeps the fetched row of a shared day


# --- the fetch ----------------------------------------------------------------------------------------

@dataclass
class MarketFetchReport:
    """What a whole-market fetch did."""

    days: int = 0
    requests: int = 0
    written: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    empty_days: dict[str, list[str]] = field(default_factory=dict)
    unreachable_reasons: dict[str, str] = field(default_factory=dict)

    def summary_lines(self, data_dir: Path | str) -> list[str]:
        lines = []
        if self.written:
            first = min(v[0] for v in self.written.values())
            last = max(v[1] for v in self.written.values())
            lines.append(f"prices: {len(self.written)} companies written to {Path(data_dir) / 'prices'} ({first} → {last}); "
                         f"{self.requests} requests, the rest of {self.days} market-days from the cache")
        lines += [f"{m}: no rows on {', '.join(days)} (closed that day)" for m, days in self.empty_days.items() if days]
        lines += [f"{m} unreachable, its companies rebuilt from the cache only: {reason}" for m, reason in self.unreachable_reasons.items()]
        return lines


def fetch_market(
    data_dir: Path | str,
    start: date,
    end: date | None = None,
    *,
    markets: tuple[str, ...] = ("TWSE", "TPEx"),
    companies: list[Company] | None = None,
    refresh: bool = False,
    now: datetime | None = None,
    clients: dict[str, HttpClient] | None = None,
    progress: bool | None = None,
) -> MarketFetchReport:
    """Fetch every trading day from ``start`` to ``end`` (default: today) of ``markets`` and split it per company.

    ``companies`` limits which price files are written (default: every listed common stock of the markets);
    the requests are the same either way. An unreachable market is skipped after its first failure and its
    companies are rebuilt from what the cache holds.
    """
    data_dir = Path(data_dir)
    now = (now or taipei_now()).astimezone(TAIPEI)
    end = min(end or now.date(), now.date())
    if start > end:
        raise StockLLMError(f"--start {start} is after --end {end} (or after today, Taipei time); give an earlier start")
    days = trading_days(start, end, now)
    if not days:
        raise StockLLMError(f"no trading day with published prices between {start} and {end}; widen --start/--end")
    clients = clients if clients is not None else default_clients()
    report = MarketFetchReport(days=len(days) * len(markets))
    bar = tqdm(total=report.days, unit="day", desc="market", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress is None else not progress)
    try:
        for market_name in markets:
            client = clients[market_name]
            client.throttle.on_wait = lambda seconds: bar.set_postfix_str(f"throttle wait {seconds:.1f}s")
            for day in days:
                bar.set_description(f"{market_name} {day}")
                if market_name not in report.unreachable_reasons:
                    try:
                        report.requests += _fetch_day(data_dir, REPORTS[market_name], day, client, now, refresh)
                    except SourceUnreachable as exc:
                        report.unreachable_reasons[market_name] = str(exc)
                bar.update()
            client.throttle.on_wait = None
    finally:
        bar.close()
    wanted = companies if companies is not None else [c for m in markets for c in listed_companies(m)]
    for market_name in markets:
        _store_market(data_dir, market_name, [c for c in wanted if c.market == market_name], days, report)
    return report


def _store_market(data_dir: Path, market_name: str, companies: list[Company], days: list[date], report: MarketFetchReport) -> None:
    """Rebuild ``prices/<code>.csv`` of ``companies`` from the market's cached days; note asked days without rows."""
    rows, empty = cached_days(data_dir, market_name, {c.code for c in companies})
    asked = {d.isoformat() for d in days}
    report.empty_days[market_name] = [d for d in empty if d in asked]
    for code, frame in rows.groupby("code", sort=True):  # parsed rows are typed already: write_prices normalises once
        merged = _with_stored_rows(data_dir, code, frame.drop(columns="code"))
        store.write_prices(data_dir, code, merged)
        report.written[code] = (merged["date"].min(), merged["date"].max(), merged["date"].nunique())
