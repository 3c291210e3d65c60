"""twstock's BestFourPoint (四大買點 / 四大賣點) computed from stored prices instead of a live download.

twstock's ``BestFourPoint`` only needs an object with ``price``, ``open`` and ``capacity`` lists and the
``Analytics`` helpers, so the stored table is wrapped in such an object and twstock's own rules are used
unchanged. Used by ``--choose-stock``, the dataset's ``signals`` context and the direction-only baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from twstock.analytics import Analytics, BestFourPoint

MIN_DAYS = 8
"""Fewest traded days BestFourPoint needs (6-day average plus the pivot's look-back)."""


class _StoredStock(Analytics):
    """The attributes twstock's analytics read, taken from a stored price table."""

    def __init__(self, frame: pd.DataFrame):
        traded = frame.dropna(subset=["open", "close", "capacity"])
        self.price = traded["close"].astype(float).tolist()
        self.open = traded["open"].astype(float).tolist()
        self.capacity = traded["capacity"].astype(float).tolist()


@dataclass(frozen=True)
class Signal:
    """BestFourPoint on one day: the reasons (twstock's Chinese labels) for buy and/or sell, or empty."""

    date: str
    buy: str = ""
    sell: str = ""

    @property
    def direction(self) -> int:
        """+1 buy, -1 sell, 0 none or both."""
        return int(bool(self.buy)) - int(bool(self.sell))

    def describe(self) -> str:
        parts = [f"buy ({self.buy})" if self.buy else "", f"sell ({self.sell})" if self.sell else ""]
        return " and ".join(p for p in parts if p) or "no signal"


def best_four_point(history: pd.DataFrame) -> Signal | None:
    """BestFourPoint on the last day of ``history`` (only its rows are used); ``None`` if too short."""
    stock = _StoredStock(history.tail(30))
    if len(stock.price) < MIN_DAYS:
        return None
    analysis = BestFourPoint(stock)
    return Signal(
        date=str(history["date"].iloc[-1]),
        buy=analysis.best_four_point_to_buy() or "",
        sell=analysis.best_four_point_to_sell() or "",
    )
