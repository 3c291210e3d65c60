"""Simple forecasters the LLM has to beat: random walk, drift, AutoARIMA, AutoETS and BestFourPoint.

The statistical models forecast the log close; :func:`candles_around` then builds open/high/low and volume
around the predicted closes from the company's recent typical candle shapes, and :func:`within_limits`
keeps every candle inside the ±10% daily limit chain (a price the exchange cannot print is never forecast).
These baselines use the whole history they are given (``uses_full_history``): that is what a user of
such a method would do, while the window models (LLM, LSTM, CNN) see only their ``past`` days.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import StockLLMError
from ..market import limit_prices
from ..signals import MIN_DAYS, best_four_point
from .base import Forecast, make_forecast

SHAPE_DAYS = 20
"""Recent days whose candles set the typical gap, wicks and volume of built candles."""


def _prices(history: pd.DataFrame) -> pd.DataFrame:
    """The traded rows of ``history`` (a suspended day has no close and teaches nothing about shape)."""
    close = history["close"]
    if close.isna().to_numpy().any():
        history = history[close.notna()]
    if history.empty:
        raise StockLLMError("price history has no traded day (no close price); fetch prices first")
    return history


def last_candle(history: pd.DataFrame, horizon: int) -> dict[str, list[float]]:
    """The last traded day's open/high/low/close/volume repeated ``horizon`` times."""
    traded = _prices(history)
    rows = {column: [float(traded[column].iat[-1])] * horizon for column in ("open", "high", "low", "close")}
    volume = traded["capacity"].iat[-1]
    rows["capacity"] = [float(volume) if pd.notna(volume) and volume > 0 else 1.0] * horizon
    return rows


def within_limits(previous_close: float, rows: dict[str, list[float]]) -> dict[str, list[float]]:
    """Clip each day's prices into the ±10% band of the previous (forecast) close, in place, and return ``rows``.

    The band of day k is set by the forecast close of day k-1, the chain ``validation.validate_forecast``
    checks; low ≤ open, close ≤ high is restored afterwards.
    """
    reference = previous_close
    for k in range(len(rows["close"])):
        down, up = (float(p) for p in limit_prices(reference))
        for column in ("open", "high", "low", "close"):
            rows[column][k] = min(max(rows[column][k], down), up)
        rows["high"][k] = max(rows["high"][k], rows["open"][k], rows["close"][k])
        rows["low"][k] = min(rows["low"][k], rows["open"][k], rows["close"][k])
        reference = rows["close"][k]
    return rows


def candles_around(history: pd.DataFrame, closes: list[float]) -> dict[str, list[float]]:
    """Open/high/low/volume built around predicted ``closes`` from the last ``SHAPE_DAYS`` candles.

    open = previous close × the median overnight gap; high/low = the candle body widened by the median upper
    and lower wick (as fractions of price); volume = the median recent volume. Medians keep one limit-up day
    from setting the shape of every forecast.
    """
    recent = _prices(history).tail(SHAPE_DAYS + 1)
    close, open_ = recent["close"].to_numpy(float), recent["open"].to_numpy(float)
    high, low = recent["high"].to_numpy(float), recent["low"].to_numpy(float)
    gap = float(np.nanmedian(open_[1:] / close[:-1])) if len(recent) > 1 else 1.0
    body_top, body_bottom = np.maximum(open_, close), np.minimum(open_, close)
    upper = float(np.nanmedian(high / body_top - 1.0))
    lower = float(np.nanmedian(1.0 - low / body_bottom))
    volume = recent["capacity"].dropna()
    typical_volume = float(volume.tail(SHAPE_DAYS).median()) if len(volume) else 1.0
    rows: dict[str, list[float]] = {"open": [], "high": [], "low": [], "close": [], "capacity": []}
    previous = float(close[-1])
    for value in closes:
        opening = previous * (gap if math.isfinite(gap) else 1.0)
        rows["open"].append(opening)
        rows["close"].append(float(value))
        rows["high"].append(max(opening, value) * (1.0 + max(upper, 0.0)))
        rows["low"].append(min(opening, value) * (1.0 - min(max(lower, 0.0), 0.5)))
        rows["capacity"].append(max(typical_volume, 1.0))
        previous = float(value)
    return within_limits(float(close[-1]), rows)


class RandomWalk:
    """Tomorrow looks like today: the last candle (and volume) repeated. The yardstick of every metric.

    The close is exactly the last close; only a wick beyond the next day's ±10% band (a day that spanned
    limit-up to limit-down) is pulled in, so the forecast stays a printable candle.
    """

    name = "random_walk"
    uses_full_history = True
    min_history = 1

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "RandomWalk":
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        rows = last_candle(history, horizon)
        return make_forecast(history, within_limits(rows["close"][0], rows), self.name)


class Drift:
    """Random walk with drift: the average daily log return of the history, carried forward.

    Prices move multiplicatively, so the drift is fitted on log closes (the line from the first to the last
    close in log space) and the last candle is scaled along it.
    """

    name = "drift"
    uses_full_history = True
    min_history = 2

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "Drift":
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        traded = _prices(history)
        closes = traded["close"].to_numpy(float)
        step = math.log(closes[-1] / closes[0]) / (len(closes) - 1) if len(closes) > 1 else 0.0
        rows = last_candle(history, horizon)
        for column in ("open", "high", "low", "close"):
            rows[column] = [value * math.exp(step * (k + 1)) for k, value in enumerate(rows[column])]
        return make_forecast(history, within_limits(float(closes[-1]), rows), self.name)


class StatsForecaster:
    """AutoARIMA or AutoETS (statsforecast) on the log close, with 80% intervals.

    ``fit`` selects and estimates one model per company on data before the evaluation period; ``predict``
    then runs that fixed model over the history up to the origin (statsforecast's ``forward``: the state is
    updated with the new days, the parameters are not re-estimated), so a walk-forward costs one fit per
    company instead of one per origin, and no parameter ever sees a day after the fit period. A company
    without a fitted model gets one fitted on the history it is given (which still ends at the origin).
    """

    uses_full_history = True
    min_history = 30
    level = 80

    def __init__(self, kind: str):
        if kind not in ("arima", "ets"):
            raise StockLLMError(f"unknown statistical model {kind!r}; use arima or ets")
        self.name = kind
        self._models: dict[str, object] = {}

    def _new_model(self):
        from statsforecast.models import AutoARIMA, AutoETS

        return AutoARIMA() if self.name == "arima" else AutoETS()

    def _fit_one(self, history: pd.DataFrame):
        closes = _prices(history)["close"].to_numpy(float)
        if len(closes) < self.min_history:
            raise StockLLMError(f"{self.name} needs at least {self.min_history} traded days of history, got {len(closes)}")
        return self._new_model().fit(np.log(closes))

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "StatsForecaster":
        self._models = {}
        for code, history in histories.items():
            if len(_prices(history)) >= self.min_history:
                self._models[code] = self._fit_one(history)
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        model = self._models.get(code) if code is not None else None
        if model is None:
            model = self._fit_one(history)
        log_close = np.log(_prices(history)["close"].to_numpy(float))
        out = model.forward(log_close, h=horizon, level=[self.level])
        closes = [float(v) for v in np.exp(np.asarray(out["mean"], dtype=float))]
        rows = candles_around(history, closes)
        # Clipping to the daily limit may move a point forecast; its interval is widened to still hold it.
        rows["close_lo"] = [min(float(np.exp(lo)), c) for lo, c in zip(out[f"lo-{self.level}"], rows["close"])]
        rows["close_hi"] = [max(float(np.exp(hi)), c) for hi, c in zip(out[f"hi-{self.level}"], rows["close"])]
        return make_forecast(history, rows, self.name)


class BestFourBaseline:
    """twstock's BestFourPoint as a direction-only forecast: buy signal → up, sell → down, none/both → flat.

    The signal says nothing about size, so the candles are the last one moved by the median absolute daily
    move in the signal's direction; ``info["direction"]`` carries the call and ``direction_only`` tells the
    evaluation to score only its direction.
    """

    name = "bestfour"
    uses_full_history = True
    direction_only = True
    min_history = MIN_DAYS

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "BestFourBaseline":
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        signal = best_four_point(history)
        if signal is None:
            raise StockLLMError(f"BestFourPoint needs at least {MIN_DAYS} traded days of history")
        closes = _prices(history)["close"].tail(SHAPE_DAYS + 1).to_numpy(float)
        move = float(np.median(np.abs(np.diff(np.log(closes))))) if len(closes) > 1 else 0.0
        rows = last_candle(history, horizon)
        for column in ("open", "high", "low", "close"):
            rows[column] = [value * math.exp(signal.direction * move * (k + 1)) for k, value in enumerate(rows[column])]
        rows = within_limits(float(closes[-1]), rows)
        return make_forecast(history, rows, self.name, info={"direction": signal.direction, "signal": signal.describe()})
