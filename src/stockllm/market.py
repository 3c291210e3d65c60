"""Facts of the Taiwan stock market every layer shares: the trading calendar, price ticks, the ±10% limit.

Kept in one module so the forecast validator, the backtest and the local exchange apply the same rules.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Iterable

# Weekdays the TWSE was closed, read off the bundled snapshot (every universe company missing that day;
# typhoon closures included), then the announced 2026 holidays after the snapshot ends (2026-06-23).
# Unannounced closures (typhoons) cannot be known ahead: a forecast date may then be one day early.
_OBSERVED_CLOSED = """
2023-04-03 2023-04-04 2023-04-05 2023-05-01 2023-06-22 2023-06-23 2023-08-03 2023-09-29 2023-10-09 2023-10-10
2024-01-01 2024-02-06 2024-02-07 2024-02-08 2024-02-09 2024-02-12 2024-02-13 2024-02-14 2024-02-28 2024-04-04
2024-04-05 2024-05-01 2024-06-10 2024-07-24 2024-07-25 2024-09-17 2024-10-02 2024-10-03 2024-10-10 2024-10-31
2025-01-01 2025-01-23 2025-01-24 2025-01-27 2025-01-28 2025-01-29 2025-01-30 2025-01-31 2025-02-28 2025-04-03
2025-04-04 2025-05-01 2025-05-30 2025-09-29 2025-10-06 2025-10-10 2025-10-24 2025-12-25 2026-01-01 2026-02-12
2026-02-13 2026-02-16 2026-02-17 2026-02-18 2026-02-19 2026-02-20 2026-02-27 2026-04-03 2026-04-06 2026-05-01
2026-06-19
"""
_ANNOUNCED_CLOSED = "2026-09-25 2026-09-28 2026-10-09 2026-10-26 2026-12-25 2027-01-01"

HOLIDAYS: frozenset[date] = frozenset(date.fromisoformat(d) for d in (_OBSERVED_CLOSED + _ANNOUNCED_CLOSED).split())

DAILY_LIMIT = Decimal("0.10")
"""TWSE/TPEx daily price limit: ±10% of the previous close (reference price)."""

# (upper bound of the price band, tick) — TWSE/TPEx stock tick sizes.
_TICKS = [
    (Decimal("10"), Decimal("0.01")),
    (Decimal("50"), Decimal("0.05")),
    (Decimal("100"), Decimal("0.1")),
    (Decimal("500"), Decimal("0.5")),
    (Decimal("1000"), Decimal("1")),
    (None, Decimal("5")),
]


def to_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def is_trading_day(day: date | str) -> bool:
    """Monday–Friday and not a known market holiday."""
    day = to_date(day)
    return day.weekday() < 5 and day not in HOLIDAYS


def next_trading_days(last: date | str, n: int, extra_holidays: Iterable[date] = ()) -> list[date]:
    """The ``n`` trading days after ``last`` (exclusive)."""
    closed = HOLIDAYS | frozenset(extra_holidays)
    day, out = to_date(last), []
    while len(out) < n:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in closed:
            out.append(day)
    return out


def tick_size(price: float | Decimal) -> Decimal:
    """Minimum price increment for a stock trading at ``price``."""
    value = Decimal(str(price))
    for bound, tick in _TICKS:
        if bound is None or value < bound:
            return tick
    raise AssertionError("unreachable")


def is_on_tick(price: float | Decimal) -> bool:
    value = Decimal(str(price))
    return value > 0 and value % tick_size(value) == 0


def round_to_tick(price: float | Decimal, direction: str = "nearest") -> Decimal:
    """Round ``price`` onto its tick grid: ``"down"``, ``"up"`` or ``"nearest"``."""
    value = Decimal(str(price))
    tick = tick_size(value)
    mode = {"down": ROUND_FLOOR, "up": ROUND_CEILING}.get(direction)
    if mode is None:
        return (value / tick).to_integral_value() * tick
    return (value / tick).to_integral_value(rounding=mode) * tick


def limit_prices(previous_close: float | Decimal) -> tuple[Decimal, Decimal]:
    """(limit-down, limit-up) for a day whose reference price is ``previous_close``.

    The limits are ±10% rounded inward onto the tick grid, as TWSE publishes them: 2330 closed at 942 on
    2025-04-02, and its limit-down close of 2025-04-07 was 848 (942 × 0.9 = 847.8, rounded up to the 1-dollar tick).
    """
    reference = Decimal(str(previous_close))
    up = round_to_tick(reference * (1 + DAILY_LIMIT), "down")
    down = round_to_tick(reference * (1 - DAILY_LIMIT), "up")
    return down, up


def within_limit(price: float, previous_close: float, slack: float = 0.0) -> bool:
    """Whether ``price`` lies inside the daily limit band of ``previous_close`` (``slack`` as a fraction)."""
    down, up = limit_prices(previous_close)
    return float(down) * (1 - slack) <= price <= float(up) * (1 + slack)
