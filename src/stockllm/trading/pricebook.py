"""Read-through cache of the data dir's price CSVs, for the exchange's many small look-ups.

The exchange answers hundreds of requests a second; parsing a CSV each time would dominate. A table is
re-read only when its file changes (``stat`` per look-up), so ``stockllm fetch`` can extend the data
while the server runs.
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from .. import store
from ..errors import StockLLMError

CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{4,6}$")


@dataclass(frozen=True)
class _Table:
    mtime_ns: int
    frame: pd.DataFrame
    dates: list[str]
    opens: list[float]
    closes: list[float]
    records: list[dict]


class PriceBook:
    """Price rows of every code stored under ``data_dir/prices``."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def has(self, code: str) -> bool:
        return bool(CODE_PATTERN.match(code)) and store.prices_path(self.data_dir, code).exists()

    def codes(self) -> list[str]:
        return store.stored_codes(self.data_dir)

    def _table(self, code: str) -> _Table:
        path = store.prices_path(self.data_dir, code)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            raise StockLLMError(f"no prices for {code} in {path.parent}; run `stockllm fetch` for it") from None
        table = self._tables.get(code)
        if table is None or table.mtime_ns != mtime:
            frame = store.read_prices(self.data_dir, code)
            frame = frame.dropna(subset=["open", "close"]).reset_index(drop=True)
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            table = _Table(mtime, frame, frame["date"].tolist(), frame["open"].tolist(), frame["close"].tolist(), records)
            with self._lock:
                self._tables[code] = table
        return table

    def frame(self, code: str) -> pd.DataFrame:
        """The whole stored table of ``code`` (do not modify)."""
        return self._table(code).frame

    def records(self, code: str, first: date, last: date) -> list[dict]:
        """Rows of ``code`` from ``first`` to ``last`` inclusive as plain dicts (empty cells as ``None``), ascending."""
        table = self._table(code)
        lo = bisect.bisect_left(table.dates, first.isoformat())
        hi = bisect.bisect_right(table.dates, last.isoformat())
        return table.records[lo:hi]

    def open_on(self, code: str, day: date) -> float | None:
        """Opening price of ``code`` on ``day``; ``None`` when it did not trade (or is not stored yet)."""
        table = self._table(code)
        key = day.isoformat()
        i = bisect.bisect_left(table.dates, key)
        return table.opens[i] if i < len(table.dates) and table.dates[i] == key else None

    def close_on_or_before(self, code: str, day: date) -> tuple[str, float] | None:
        """(date, close) of the last stored row of ``code`` at or before ``day``."""
        table = self._table(code)
        i = bisect.bisect_right(table.dates, day.isoformat())
        return (table.dates[i - 1], table.closes[i - 1]) if i else None

    def first_date(self) -> date:
        """The earliest day any stored code has a row for."""
        return date.fromisoformat(min(self._table(code).dates[0] for code in self._dated_codes()))

    def _dated_codes(self) -> list[str]:
        codes = [code for code in self.codes() if self._table(code).dates]
        if not codes:
            raise StockLLMError(f"no price data in {self.data_dir / 'prices'}; run `stockllm fetch --offline` (or give --data-dir)")
        return codes

    def last_date(self) -> date:
        """The latest day any stored code has a row for: the exchange cannot simulate past it."""
        return date.fromisoformat(max(self._table(code).dates[-1] for code in self._dated_codes()))
