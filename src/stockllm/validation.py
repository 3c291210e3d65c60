"""Is a forecast a possible trading record? One check used by every forecaster, the backtest and the app.

An LLM can write rows that no market would print (a low above the open, a 30% jump, a Saturday); a
baseline can too after rounding. Every forecast passes :func:`validate_forecast`, which lists what is
impossible instead of raising, so callers decide whether to reject, repair or just report.
"""

from __future__ import annotations

import math

import pandas as pd

from .market import is_on_tick, is_trading_day, limit_prices, next_trading_days

PRICE_FIELDS = ["open", "high", "low", "close"]
VOLUME_FIELDS = ["capacity", "turnover", "transaction"]


def _dates(frame: pd.DataFrame) -> list[str]:
    """Dates of the rows: the ``date`` column when present (parsed answers), else the index (Forecast.frame)."""
    values = frame["date"] if "date" in frame.columns else frame.index
    return [str(v)[:10] for v in values]


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def validate_forecast(frame: pd.DataFrame, previous_close: float, expected_dates: list[str] | None = None) -> list[str]:
    """The problems of a forecast table; an empty list means it is valid.

    ``frame`` holds one row per future day with ``open``/``high``/``low``/``close`` (and any of
    ``capacity``/``turnover``/``transaction``), dated by a ``date`` column or by its index.
    ``previous_close`` is the last real close before the first forecast day: the first day's ±10% band is
    taken from it and each later day's from the forecast close before it (the limit chain, with
    :func:`market.limit_prices`). Checked: all four prices present and positive, low ≤ open, close ≤ high,
    open/high/low/close inside the day's limit band, volumes positive, and the dates — either exactly
    ``expected_dates`` or, without them, ascending consecutive trading days.
    """
    problems: list[str] = []
    if frame is None or len(frame) == 0:
        return ["the forecast has no rows"]
    missing = [c for c in PRICE_FIELDS if c not in frame.columns]
    if missing:
        return [f"the forecast lacks column(s) {', '.join(missing)}"]
    dates = _dates(frame)

    if expected_dates is not None:
        expected = [str(d)[:10] for d in expected_dates]
        if dates != expected:
            problems.append(f"dates {', '.join(dates)} are not the expected trading days {', '.join(expected)}")
    else:
        for i, day in enumerate(dates):
            if not is_trading_day(day):
                problems.append(f"{day} is not a trading day")
            elif i and next_trading_days(dates[i - 1], 1)[0].isoformat() != day:
                problems.append(f"{day} does not follow {dates[i - 1]} as the next trading day")

    reference = _number(previous_close)
    if reference is None or reference <= 0:
        problems.append(f"previous close {previous_close!r} is not a positive price, so the ±10% limits cannot be checked")
    for day, (_, row) in zip(dates, frame.iterrows()):
        prices = {c: _number(row[c]) for c in PRICE_FIELDS}
        empty = [c for c, v in prices.items() if v is None]
        if empty:
            problems.append(f"{day}: no value for {', '.join(empty)}")
            reference = None
            continue
        nonpositive = [f"{c} {v:g}" for c, v in prices.items() if v <= 0]
        if nonpositive:
            problems.append(f"{day}: prices must be positive ({', '.join(nonpositive)})")
        if prices["low"] > min(prices["open"], prices["close"]):
            problems.append(f"{day}: low {prices['low']:g} is above open {prices['open']:g} or close {prices['close']:g}")
        if prices["high"] < max(prices["open"], prices["close"]):
            problems.append(f"{day}: high {prices['high']:g} is below open {prices['open']:g} or close {prices['close']:g}")
        if reference is not None and reference > 0:
            down, up = (float(x) for x in limit_prices(reference))
            outside = [f"{c} {v:g}" for c, v in prices.items() if not down <= v <= up]
            if outside:
                problems.append(f"{day}: {', '.join(outside)} outside the ±10% limits {down:g}–{up:g} of the previous close {reference:g}")
        for column in VOLUME_FIELDS:
            if column in frame.columns:
                volume = _number(row[column])
                if volume is None or volume <= 0:
                    problems.append(f"{day}: {column} must be a positive number, got {row[column]}")
        reference = prices["close"] if prices["close"] > 0 else None
    return problems


def off_tick_dates(frame: pd.DataFrame) -> list[str]:
    """Dates of the rows of a price table whose open, high, low or close no Taiwan order book could print.

    Stored prices have two decimals; a value off the tick grid (e.g. 26.47 where prices between 10 and 50
    move in steps of 0.05) means the source scaled it (Yahoo adjusts the prices before a stock dividend).
    Empty prices (halted days) are not off the grid.
    """
    prices = frame[PRICE_FIELDS].to_numpy(float)
    return [str(day)[:10] for day, row in zip(_dates(frame), prices)
            if any(not math.isnan(v) and not is_on_tick(round(v, 2)) for v in row)]


def forecast_problems(forecast, previous_close: float, expected_dates: list[str] | None = None) -> list[str]:
    """The problems of a :class:`~stockllm.forecasters.base.Forecast`, judged as its model wrote it.

    A model that checked its own answer (``info["valid"]``: the LLM validates the dates and fields it wrote,
    then returns a table rebuilt on the calendar's dates with NaN for fields it does not forecast) is taken at
    its word, since re-validating that table would misjudge it both ways; every other forecast gets
    :func:`validate_forecast`. Shared by the evaluation and the backtest.
    """
    if "valid" in forecast.info:
        return [] if forecast.info["valid"] else list(forecast.info.get("problems") or ["the model flagged its answer as invalid"])
    return validate_forecast(forecast.frame, previous_close, expected_dates)
