"""The one interface every forecaster implements, and the Forecast it returns.

Evaluation, trading, charts and the app only see :class:`Forecaster` and :class:`Forecast`, so the
fine-tuned LLM, the LSTM/CNN and the statistical and naive baselines are interchangeable.

``history`` is always a price table in the store's format (``store.PRICE_COLUMNS``, ``date`` as
``YYYY-MM-DD`` strings, ascending) holding only days up to the forecast origin: a forecaster never
receives data after the origin, which is how evaluation guarantees no look-ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import pandas as pd

from ..market import next_trading_days

FORECAST_COLUMNS = ["open", "high", "low", "close", "capacity"]


@dataclass
class Forecast:
    """Predicted rows for the next trading days.

    ``frame`` is indexed by future trading dates (``YYYY-MM-DD`` strings) with ``FORECAST_COLUMNS``;
    optional ``close_lo`` / ``close_hi`` columns carry an 80% interval. ``raw_text`` keeps what an LLM
    generated, so a forecast can always be traced back to the model's own words.
    """

    frame: pd.DataFrame
    model: str
    raw_text: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return len(self.frame)

    def has_interval(self) -> bool:
        return {"close_lo", "close_hi"} <= set(self.frame.columns)


@runtime_checkable
class Forecaster(Protocol):
    """Anything that turns a price history into a :class:`Forecast` of ``horizon`` trading days."""

    name: str

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "Forecaster":
        """Learn from per-company histories (all strictly before the evaluation period). May do nothing."""
        ...

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        """Forecast the ``horizon`` trading days after the last row of ``history``."""
        ...


@dataclass(frozen=True)
class ForecastRequest:
    """One forecast to make: the whole ``history`` up to the origin, the ``horizon``, the company ``code`` and,
    for a window (``past:future``) evaluation, the ``past`` days a window model (LSTM, CNN, the LLM) is shown."""

    history: pd.DataFrame
    horizon: int
    code: str
    past: int | None = None


def predict_many(model: Forecaster, requests: list[ForecastRequest]) -> list[Forecast | Exception]:
    """Forecasts for many requests, in order; a request that fails gives its exception instead of a Forecast.

    Models that gain from batching (the LLM generates for many prompts at once) implement
    ``predict_batch(requests)`` with the same contract; every other model is asked one request at a time, a
    window model (``uses_full_history`` false: LSTM, CNN) with ``past=request.past`` so it takes its own window
    from the whole history. Only :class:`~stockllm.errors.StockLLMError` counts as a failed forecast; any other
    exception is a bug and propagates.
    """
    from ..errors import StockLLMError

    batch = getattr(model, "predict_batch", None)
    if batch is not None:
        return batch(requests)
    window_model = not getattr(model, "uses_full_history", False)
    out: list[Forecast | Exception] = []
    for request in requests:
        window = {"past": request.past} if window_model and request.past is not None else {}
        try:
            out.append(model.predict(request.history, request.horizon, code=request.code, **window))
        except StockLLMError as exc:
            out.append(exc)
    return out


def future_dates(history: pd.DataFrame, horizon: int) -> list[str]:
    """The trading dates a forecast made from ``history`` covers."""
    return [d.isoformat() for d in next_trading_days(history["date"].iloc[-1], horizon)]


def make_forecast(history: pd.DataFrame, rows: Mapping[str, list[float]], model: str, **extra) -> Forecast:
    """Build a :class:`Forecast` whose index is the next ``len(rows['close'])`` trading days."""
    horizon = len(rows["close"])
    frame = pd.DataFrame(dict(rows), index=pd.Index(future_dates(history, horizon), name="date"))
    return Forecast(frame=frame, model=model, **extra)
