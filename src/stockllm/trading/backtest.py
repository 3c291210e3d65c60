"""Day-by-day simulation of the forecast-driven strategy with the exchange's own rules (:mod:`.rules`).

Timeline of each trading day D in ``[start, end]``:

1. orders decided on the previous trading day fill at D's **open** (``rules.fill_price``; fee and tax from
   ``rules.costs``) — or expire when the code did not trade on D;
2. the portfolio is marked at D's close (a code that did not trade keeps its last close);
3. unless D is the last day, each code is forecast from its history **up to and including D only**
   (``frame.iloc[:i + 1]``) and :func:`.strategy.decide` turns the forecast into an order for D+1.
   A forecast that fails (an unparseable LLM answer: :class:`StockLLMError`) or is invalid (the model flagged
   it, or :func:`stockllm.validation.forecast_problems` finds a price the market could not print) drives no
   order: the code is held as it is, and the skip is counted in the report with its reason.

No decision ever sees a price after D, and no fill happens at a price known when deciding. A pre-trained
model (the LLM) must have learned only from days before the first traded day
(:func:`stockllm.forecasters.registry.refuse_if_trained_on`).

At the end, open positions are valued at what selling them at the last close would bring after fee and
tax (net liquidation value): the final equity, total return and the fees/tax paid include those closing
costs, so strategies holding and not holding stock compare fairly. Buy-and-hold buys, on the first fill
day, the lots an equal share of the cash affords (same sizing rule; sized at the open instead when a code
opens above the limit its last stored close implies, so it never spends more than it has) and is valued the
same way. Prices are unadjusted and **cash dividends are not credited** to any strategy: holding through an
ex-dividend day shows the price drop without the dividend (:data:`DIVIDEND_NOTE`, written into the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Mapping

import pandas as pd

from .. import store
from ..errors import StockLLMError
from ..forecasters.base import Forecast, Forecaster, future_dates
from ..forecasters.registry import refuse_if_trained_on
from ..market import to_date
from ..validation import forecast_problems
from . import rules
from .strategy import Decision, StrategyConfig, decide, lots_for_budget

TRADING_DAYS_PER_YEAR = 252
DIVIDEND_NOTE = ("Prices are unadjusted and cash dividends are not credited: every strategy and buy-and-hold that holds a "
                 "stock through an ex-dividend day shows the price drop without the dividend, so returns are understated by it.")


@dataclass
class Fill:
    """One executed order (``cash`` = signed change of cash)."""

    decided_on: str
    day: str
    code: str
    side: str
    lots: int
    price: float
    value: int
    fee: int
    tax: int
    cash: int
    pnl: int | None = None  # realised on a sell: proceeds − cost of the shares incl. their buy fees


@dataclass
class Position:
    lots: int = 0
    cost: int = 0  # what the held lots cost, buy fees included


@dataclass(frozen=True)
class Skipped:
    """A forecast that drove no order: ``status`` failed (the model raised) or invalid (the market could not print it)."""

    day: str
    code: str
    status: str
    problem: str


@dataclass
class BacktestResult:
    model: str
    equity: pd.Series  # by date; last value = net liquidation value
    fills: list[Fill]
    decisions: list[Decision]
    initial_cash: int
    fees: int = 0
    tax: int = 0
    closing: list[Fill] = field(default_factory=list)  # the valuation's notional sells at the last close
    skipped: list[Skipped] = field(default_factory=list)

    def metrics(self) -> dict:
        asked = len(self.decisions) + len(self.skipped)
        return performance(self.equity, self.initial_cash) | {
            "fees_paid": self.fees,
            "tax_paid": self.tax,
            "trades": len(self.fills),
            "win_rate": _win_rate(self.fills + self.closing),
            "turnover": round(sum(f.value for f in self.fills) / float(self.equity.mean()), 4) if len(self.equity) else 0.0,
            "decisions": {a: sum(d.action == a for d in self.decisions) for a in ("buy", "sell", "hold")},
            "forecasts": {
                "asked": asked, "used": len(self.decisions),
                "failed": sum(s.status == "failed" for s in self.skipped),
                "invalid": sum(s.status == "invalid" for s in self.skipped),
                "reasons": pd.Series([s.problem[:120] for s in self.skipped], dtype=str).value_counts().head(5).to_dict(),
            },
        }


def performance(equity: pd.Series, initial: float) -> dict:
    """Total and annualised return, Sharpe (daily, risk-free 0, ×√252) and max drawdown of an equity curve."""
    final = float(equity.iloc[-1])
    total = final / initial - 1
    returns = equity.astype(float).pct_change().dropna()
    days = max(len(returns), 1)
    annual = (1 + total) ** (TRADING_DAYS_PER_YEAR / days) - 1 if total > -1 else -1.0
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    sharpe = float(returns.mean()) / std * math.sqrt(TRADING_DAYS_PER_YEAR) if std > 0 else 0.0
    drawdown = float((1 - equity / equity.cummax()).max())
    return {"final_equity": round(final, 2), "total_return": round(total, 6), "annualised_return": round(annual, 6),
            "sharpe": round(sharpe, 4), "max_drawdown": round(drawdown, 6), "days": days}


def _win_rate(fills: list[Fill]) -> float | None:
    closed = [f.pnl for f in fills if f.pnl is not None]
    return round(sum(p > 0 for p in closed) / len(closed), 4) if closed else None


def tradable(prices: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables without rows lacking an open or close (halted days), as the exchange's price book sees them."""
    return {code: frame.dropna(subset=["open", "close"]).reset_index(drop=True) for code, frame in prices.items()}


def _window(prices: Mapping[str, pd.DataFrame], start: date, end: date) -> list[str]:
    days = sorted({d for frame in prices.values() for d in frame["date"] if start.isoformat() <= d <= end.isoformat()})
    if len(days) < 2:
        raise StockLLMError(f"fewer than 2 trading days with prices between {start} and {end}; widen --start/--end or fetch more data")
    return days


def _close_on(frame: pd.DataFrame, day: str) -> float:
    rows = frame[frame["date"] <= day]
    return float(rows["close"].iloc[-1])


class Book:
    """Cash and positions under the exchange's arithmetic (shared with the top-k portfolio of :mod:`stockllm.ranking`)."""

    def __init__(self, cash: int):
        self.cash = cash
        self.positions: dict[str, Position] = {}
        self.fees = self.tax = 0

    def execute(self, side: str, code: str, lots: int, price, decided_on: str, day: str) -> Fill:
        c = rules.costs(side, price, lots)
        position = self.positions.setdefault(code, Position())
        pnl = None
        if side == rules.BUY:
            position.lots += lots
            position.cost += -c.cash
        else:
            share = round(position.cost * lots / position.lots)
            pnl = c.cash - share
            position.lots -= lots
            position.cost -= share
        self.cash += c.cash
        self.fees += c.fee
        self.tax += c.tax
        return Fill(decided_on, day, code, side, lots, float(c.price), c.value, c.fee, c.tax, c.cash, pnl)

    def value(self, prices: Mapping[str, pd.DataFrame], day: str) -> int:
        return self.cash + sum(p.lots * rules.LOT * _close_on(prices[code], day) for code, p in self.positions.items() if p.lots)

    def liquidate(self, prices: Mapping[str, pd.DataFrame], day: str) -> list[Fill]:
        """Notional sells of every position at ``day``'s close (the valuation), fees and tax included."""
        return [self.execute(rules.SELL, code, p.lots, rules.parse_price(_close_on(prices[code], day)), day, day)
                for code, p in list(self.positions.items()) if p.lots]


def run_backtest(prices: Mapping[str, pd.DataFrame], forecaster: Forecaster, start: date | str, end: date | str,
                 cash: int = 1_000_000, config: StrategyConfig = StrategyConfig()) -> BacktestResult:
    """Simulate ``forecaster`` + :func:`decide` on ``prices`` (full stored tables) from ``start`` to ``end``."""
    start, end, prices = to_date(start), to_date(end), tradable(prices)
    days = _window(prices, start, end)
    name = getattr(forecaster, "name", type(forecaster).__name__)
    refuse_if_trained_on(name, forecaster, days[0], "the backtest's first day")
    forecaster.fit({code: frame[frame["date"] < days[0]].reset_index(drop=True) for code, frame in prices.items()})
    index = {code: {d: i for i, d in enumerate(frame["date"])} for code, frame in prices.items()}
    book, fills, decisions, pending, skipped = Book(cash), [], [], [], []
    curve = {}
    for n, day in enumerate(days):
        for decision in pending:
            row = index[decision.code].get(day)
            price = None if row is None else rules.fill_price(decision.action, decision.limit, prices[decision.code]["open"].iloc[row])
            if price is not None:
                fills.append(book.execute(decision.action, decision.code, decision.lots, price, decision.as_of, day))
        pending = []
        equity = book.value(prices, day)
        curve[day] = equity
        if n == len(days) - 1:
            break
        available = book.cash
        for code, frame in prices.items():
            i = index[code].get(day)
            if i is None:
                continue
            history = frame.iloc[: i + 1]
            forecast, status, problem = checked_forecast(forecaster, history, config.horizon, code)
            if forecast is None:
                skipped.append(Skipped(day, code, status, problem))
                continue
            position = book.positions.get(code, Position())
            held_value = position.lots * rules.LOT * float(history["close"].iloc[-1])
            decision = decide(code, history, forecast, position.lots, available, equity, held_value, len(prices), config)
            decisions.append(decision)
            if decision.action == "buy":
                available -= rules.buy_reservation(decision.limit, decision.lots)
            if decision.action != "hold":
                pending.append(decision)
    closing = book.liquidate(prices, days[-1])
    curve[days[-1]] = book.cash
    return BacktestResult(name, pd.Series(curve, dtype=float), fills, decisions, cash, book.fees, book.tax, closing, skipped)


def checked_forecast(forecaster: Forecaster, history: pd.DataFrame, horizon: int, code: str) -> tuple[Forecast | None, str, str]:
    """(forecast, "valid", "") when the forecast may drive an order, else (None, "failed" or "invalid", why)."""
    try:
        forecast = forecaster.predict(history, horizon, code=code)
    except StockLLMError as exc:
        return None, "failed", str(exc)
    closes = forecast.frame["close"].to_numpy(float) if "close" in forecast.frame.columns else []
    if len(closes) < horizon or pd.isna(closes[horizon - 1]):
        return None, "failed", f"gave {len(closes)} usable days instead of {horizon}"
    problems = forecast_problems(forecast, float(history["close"].iloc[-1]), future_dates(history, len(forecast.frame)))
    return (None, "invalid", problems[0]) if problems else (forecast, "valid", "")


def buy_and_hold(prices: Mapping[str, pd.DataFrame], start: date | str, end: date | str, cash: int = 1_000_000,
                 config: StrategyConfig = StrategyConfig()) -> tuple[BacktestResult, pd.Series]:
    """Buy each code's equal share on the first fill day's open and hold; (net result, gross cost-free curve)."""
    prices = tradable(prices)
    days = _window(prices, to_date(start), to_date(end))
    book, fills, budget = Book(cash), [], config.weight(len(prices)) * cash
    for code, frame in prices.items():
        rows = frame.index[frame["date"] == days[1]]
        if len(rows) == 0 or rows[0] == 0:
            continue
        limit = rules.marketable_limit(rules.BUY, float(frame["close"].iloc[rows[0] - 1]))
        opening = rules.parse_price(frame["open"].iloc[rows[0]])
        lots = lots_for_budget(max(limit, opening), min(budget, book.cash))  # a gap above the stale limit: size at the open
        if lots:
            fills.append(book.execute(rules.BUY, code, lots, opening, days[0], days[1]))
    gross = pd.Series({day: cash + sum(f.lots * rules.LOT * _close_on(prices[f.code], day) - f.value for f in fills) if n else cash
                       for n, day in enumerate(days)}, dtype=float)
    net = pd.Series({day: book.value(prices, day) if n else cash for n, day in enumerate(days)}, dtype=float)
    closing = book.liquidate(prices, days[-1])
    net.iloc[-1] = book.cash
    return BacktestResult("buy_and_hold", net, fills, [], cash, book.fees, book.tax, closing), gross


def write_report(results: list[BacktestResult], benchmark: BacktestResult, gross: pd.Series, out_dir: Path,
                 settings: dict) -> dict:
    """``OUT/backtest.json`` (metrics, settings, trades) and ``OUT/equity.png``; returns the JSON object."""
    out_dir = Path(out_dir)
    report = {
        "settings": settings,
        "notes": [DIVIDEND_NOTE],
        "models": {r.model: r.metrics() for r in results},
        "buy_and_hold": benchmark.metrics() | {"gross_final_equity": round(float(gross.iloc[-1]), 2),
                                               "gross_total_return": round(float(gross.iloc[-1]) / benchmark.initial_cash - 1, 6)},
        "trades": {r.model: [vars(f) for f in r.fills] for r in results},
        "equity": {r.model: {d: round(v, 2) for d, v in r.equity.items()} for r in results + [benchmark]},
    }
    store.atomic_write_json(out_dir / "backtest.json", report)
    _plot(results, benchmark, gross, out_dir / "equity.png")
    return report


def _plot(results: list[BacktestResult], benchmark: BacktestResult, gross: pd.Series, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for result in results:
        ax.plot(pd.to_datetime(result.equity.index), result.equity.values, label=result.model)
    ax.plot(pd.to_datetime(benchmark.equity.index), benchmark.equity.values, label="buy & hold (after costs)", color="black")
    ax.plot(pd.to_datetime(gross.index), gross.values, label="buy & hold (before costs)", color="grey", linestyle=":")
    ax.set_ylabel("equity (NT$)")
    ax.set_title("Backtest equity: fills at next open, Taiwan fee 0.1425% (min NT$20) and tax 0.3%")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    store.atomic_save_figure(fig, path, dpi=100)
