"""Forecast → buy / sell / hold, with a cost-aware threshold and position limits.

One rule, used by both the backtest and ``stockllm trade``:

* expected move = forecast close ``horizon`` trading days ahead ÷ last close − 1;
* **buy** when the expected move beats the round-trip cost (2 × fee + tax ≈ 0.585%, more when the
  NT$20 minimum fee binds) plus ``margin``, as many whole lots as the position limit and the cash allow;
* **sell** the whole position when the expected move is below minus that threshold;
* otherwise **hold**.

Orders use *marketable* limits — limit-up for a buy, limit-down for a sell — so they fill at the next
open whatever it is; the buy reservation (and so the sizing) uses the limit-up price, as the exchange does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

import pandas as pd

from ..errors import StockLLMError
from ..forecasters.base import Forecast
from . import rules


@dataclass(frozen=True)
class StrategyConfig:
    """Knobs of the forecast-driven strategy (the CLI exposes each one)."""

    horizon: int = 1
    """Trading days ahead whose forecast close drives the decision."""
    margin: float = 0.0
    """Extra expected return demanded on top of the round-trip cost (0.002 = 0.2 percentage points)."""
    max_position: float | None = None
    """Largest fraction of equity in one code; ``None`` = equal weight, 1 / number of codes."""

    def weight(self, n_codes: int) -> float:
        weight = self.max_position if self.max_position is not None else 1.0 / max(n_codes, 1)
        if not 0 < weight <= 1:
            raise StockLLMError(f"--max-position {weight} must be in (0, 1]")
        return weight


@dataclass(frozen=True)
class Decision:
    """What to do with one code after the close of ``as_of``; ``limit`` is None for a hold."""

    code: str
    as_of: str
    action: str  # buy | sell | hold
    lots: int
    limit: Decimal | None
    last_close: float
    forecast_close: float | None
    expected_return: float | None
    threshold: float
    reason: str

    def to_dict(self) -> dict:
        record = asdict(self)
        record["limit"] = None if self.limit is None else str(self.limit)
        return record


def lots_for_budget(limit: Decimal, budget: float) -> int:
    """Most whole lots whose buy reservation (value at ``limit`` + fee) fits in ``budget``, capped per order."""
    per_lot = rules.buy_reservation(limit, 1)
    lots = min(int(budget // per_lot), rules.MAX_LOTS_PER_ORDER) if budget > 0 else 0
    while lots > 0 and rules.buy_reservation(limit, lots) > budget:
        lots -= 1
    return lots


def expected_move(forecast: Forecast, last_close: float, horizon: int) -> tuple[float, float]:
    """(forecast close at ``horizon``, expected return over the last close)."""
    closes = forecast.frame["close"].astype(float)
    if len(closes) < horizon or pd.isna(closes.iloc[horizon - 1]):
        raise StockLLMError(f"forecaster {forecast.model} gave {len(closes)} days, the strategy needs {horizon}; lower --horizon")
    target = float(closes.iloc[horizon - 1])
    return target, target / last_close - 1


def decide(code: str, history: pd.DataFrame, forecast: Forecast, held_lots: int, cash_available: float,
           equity: float, held_value: float, n_codes: int, config: StrategyConfig = StrategyConfig()) -> Decision:
    """The decision for ``code`` after the last row of ``history`` (the forecast was made from that history)."""
    as_of, last_close = str(history["date"].iloc[-1]), float(history["close"].iloc[-1])
    target, move = expected_move(forecast, last_close, config.horizon)
    threshold = rules.round_trip_cost_rate(last_close) + config.margin
    common = dict(code=code, as_of=as_of, last_close=last_close, forecast_close=target, expected_return=move, threshold=threshold)
    if move > threshold:
        limit = rules.marketable_limit(rules.BUY, last_close)
        budget = min(cash_available, config.weight(n_codes) * equity - held_value)
        lots = lots_for_budget(limit, budget)
        if lots:
            return Decision(action="buy", lots=lots, limit=limit, reason=f"expected {move:+.2%} > cost threshold {threshold:.2%}", **common)
        return Decision(action="hold", lots=0, limit=None, reason=f"expected {move:+.2%} but the position limit or cash allows no whole lot", **common)
    if move < -threshold and held_lots > 0:
        lots = min(held_lots, rules.MAX_LOTS_PER_ORDER)
        limit = rules.marketable_limit(rules.SELL, last_close)
        return Decision(action="sell", lots=lots, limit=limit, reason=f"expected {move:+.2%} < −{threshold:.2%}", **common)
    return Decision(action="hold", lots=0, limit=None, reason=f"expected {move:+.2%} within ±{threshold:.2%}", **common)
