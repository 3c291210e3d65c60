"""Cross-sectional measures of a walk-forward: daily IC / Rank IC and a top-k portfolio after Taiwan costs.

Per-series errors (MASE) say how close each forecast came; a trader ranks stocks. These are the measures
quant benchmarks report (Microsoft Qlib on CSI300: IC 0.03–0.05, Rank IC 0.04–0.06, information ratio
0.5–1.3 after costs), computed from the walk-forward's points table (:data:`stockllm.evaluate.POINT_COLUMNS`).

* **Signal.** For every model × window × origin × company: predicted return = forecast close on the
  horizon's last day ÷ origin close − 1; realised return = actual close on that day ÷ origin close − 1.
* **IC / Rank IC.** For every origin date, the Pearson (IC) and Spearman (Rank IC) correlation of predicted
  with realised returns across the companies forecast from that date (at least ``min_codes``; a constant
  prediction, such as the random walk's 0, has no IC). Summary per model and window: mean, std,
  ICIR = mean / std, and a t-statistic of the mean whose variance allows for the overlap of ``h``-day
  returns (Newey-West over ``h − 1`` lags, the Diebold-Mariano machinery of :mod:`stockllm.metrics`).
* **Top-k portfolio** (Qlib's TopkDropout): after each origin's close, rank the companies by predicted return;
  hold the ``k`` best, replacing at most ``n_drop`` held names a day by better-ranked ones. Orders are whole
  board lots at marketable limits (:mod:`stockllm.trading.strategy`, sized by the cash the exchange would
  reserve at limit-up, split equally over the day's buys), fill at the next trading day's open with the
  exchange's fee and tax (:mod:`stockllm.trading.rules`), and do not fill when the company does not trade
  that day, opens locked at its limit (a buy at limit-up, a sell at limit-down) or when one board lot costs
  more than its share of the cash (counted as ``unfilled_orders``). The signal of an ``h``-day window is its
  ``h``-day predicted return, and the portfolio is still rebalanced every day, as Qlib does. Marked at each close;
  the last day's value is net of selling everything (fee and tax), as in :mod:`stockllm.trading.backtest`.
  Benchmark: the equal-weight portfolio of the forecast universe, close to close, rebalanced daily,
  without costs. Reported: annualised return and excess return (mean daily × 252), information ratio
  (mean / std of the daily excess × √252), max drawdown, turnover, fees and tax.

How to call (``evaluation_report`` does this for a finished :class:`~stockllm.evaluate.WalkForward`)::

    from stockllm import ranking
    ic = ranking.information_coefficients(result.points)         # one row per model × window × origin date
    summary = ranking.ic_summary(ic)                              # one row per model × window
    runs = ranking.topk_backtests(result.points, result.prices, k=10, n_drop=2)   # {(model, window): TopkResult}
    table = ranking.topk_summary(runs)                            # one row per model × window
    ranking.plot_topk(runs, out_dir / "topk.png")
    # or all of it, written as ranking.json / ranking.md / topk.png:
    ranking.write_ranking_report(result.points, result.prices, out_dir, k=10, n_drop=2)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import metrics, store
from .errors import StockLLMError
from .trading import rules
from .trading.backtest import TRADING_DAYS_PER_YEAR, Book, Fill, tradable
from .trading.strategy import lots_for_budget

MIN_CODES = 5
"""Fewest companies a date's cross-section needs for its IC to be computed."""


def horizon_of(window: str) -> int:
    """Forecast days of a window name ``"past:future"``."""
    try:
        return int(str(window).split(":")[1])
    except (IndexError, ValueError):
        raise StockLLMError(f"window {window!r} is not PAST:FUTURE (e.g. 5:5)") from None


def predicted_returns(points: pd.DataFrame, valid_only: bool = False) -> pd.DataFrame:
    """One row per model × window × origin × code: ``predicted`` and ``realised`` return over the horizon.

    Only the horizon's last day of each forecast is used (step = the window's future days). Forecasts the
    validator rejected are kept unless ``valid_only``: they are still what the model said.
    """
    if points.empty:
        return pd.DataFrame(columns=["model", "window", "origin", "code", "target_date", "predicted", "realised"])
    last = points["step"] == points["window"].map(horizon_of)
    if valid_only:
        last &= points["valid"].astype(bool)
    rows = points.loc[last]
    return pd.DataFrame({
        "model": rows["model"], "window": rows["window"], "origin": rows["origin"].astype(str), "code": rows["code"].astype(str),
        "target_date": rows["target_date"].astype(str),
        "predicted": rows["f_close"].astype(float) / rows["origin_close"].astype(float) - 1.0,
        "realised": rows["close"].astype(float) / rows["origin_close"].astype(float) - 1.0,
    }).reset_index(drop=True)


def _correlations(group: pd.DataFrame) -> pd.Series:
    p, r = group["predicted"], group["realised"]
    n = len(group)
    if n < 2 or p.nunique() < 2 or r.nunique() < 2:
        return pd.Series({"codes": n, "ic": math.nan, "rank_ic": math.nan})
    return pd.Series({"codes": n, "ic": float(np.corrcoef(p, r)[0, 1]),
                      "rank_ic": float(np.corrcoef(p.rank(), r.rank())[0, 1])})


def information_coefficients(points: pd.DataFrame, min_codes: int = MIN_CODES, valid_only: bool = False) -> pd.DataFrame:
    """Daily cross-sectional IC (Pearson) and Rank IC (Spearman): one row per model × window × origin date.

    Columns ``model, window, date, codes, ic, rank_ic``; dates with fewer than ``min_codes`` companies are
    left out, and a date whose predictions (or outcomes) are all equal has ``ic`` = ``rank_ic`` = NaN.
    """
    signals = predicted_returns(points, valid_only).dropna(subset=["predicted", "realised"])
    signals = signals[signals.groupby(["model", "window", "origin"])["code"].transform("size") >= min_codes]
    if signals.empty:
        return pd.DataFrame(columns=["model", "window", "date", "codes", "ic", "rank_ic"])
    out = (signals.groupby(["model", "window", "origin"], sort=True)[["predicted", "realised"]]
           .apply(_correlations).reset_index().rename(columns={"origin": "date"}))
    out["codes"] = out["codes"].astype(int)
    return out


def _summary(series: pd.Series, horizon: int) -> dict:
    values = series.dropna().to_numpy(float)
    if len(values) < 2:
        return {"mean": math.nan, "std": math.nan, "ir": math.nan, "t": math.nan, "p": math.nan, "positive": math.nan}
    std = float(values.std(ddof=1))
    test = metrics.diebold_mariano(values, np.zeros_like(values), horizon=horizon)  # t-test of mean 0, overlap-aware
    return {"mean": float(values.mean()), "std": std, "ir": float(values.mean() / std) if std > 0 else math.nan,
            "t": test.statistic, "p": test.p_value, "positive": float((values > 0).mean())}


def ic_summary(ic: pd.DataFrame) -> pd.DataFrame:
    """Per model × window: dates, mean companies a date, and for IC and Rank IC the mean, std, ICIR, t, p, share > 0.

    Columns ``model, window, dates, codes, ic_mean, ic_std, icir, ic_t, ic_p, ic_positive`` and the same
    with ``rank_ic`` / ``rank_icir``. ``dates`` counts the dates with a defined IC.
    """
    rows = []
    for (model, window), group in ic.groupby(["model", "window"], sort=False):
        horizon = horizon_of(window)
        plain, ranked = _summary(group["ic"], horizon), _summary(group["rank_ic"], horizon)
        rows.append({"model": model, "window": window, "dates": int(group["ic"].notna().sum()),
                     "codes": float(group["codes"].mean()),
                     "ic_mean": plain["mean"], "ic_std": plain["std"], "icir": plain["ir"], "ic_t": plain["t"],
                     "ic_p": plain["p"], "ic_positive": plain["positive"],
                     "rank_ic_mean": ranked["mean"], "rank_ic_std": ranked["std"], "rank_icir": ranked["ir"],
                     "rank_ic_t": ranked["t"], "rank_ic_p": ranked["p"], "rank_ic_positive": ranked["positive"]})
    return pd.DataFrame(rows)


# --- the top-k portfolio ----------------------------------------------------------------------------

@dataclass
class TopkResult:
    """One top-k run: net equity and the cost-free equal-weight benchmark by date, the fills, and the settings."""

    model: str
    window: str
    k: int
    n_drop: int
    initial_cash: int
    equity: pd.Series
    benchmark: pd.Series
    fills: list[Fill] = field(default_factory=list)
    fees: int = 0
    tax: int = 0
    unfilled: int = 0

    def metrics(self) -> dict:
        """Annualised return and excess return, information ratio, max drawdowns, turnover and costs."""
        returns = self.equity.pct_change().dropna()
        bench = self.benchmark.reindex(self.equity.index).pct_change().dropna()
        excess = (returns - bench).dropna()
        std = float(excess.std(ddof=1)) if len(excess) > 1 else math.nan
        cumulative = excess.cumsum()
        return {
            "model": self.model, "window": self.window, "k": self.k, "n_drop": self.n_drop, "days": len(returns),
            "total_return": float(self.equity.iloc[-1] / self.initial_cash - 1),
            "benchmark_return": float(self.benchmark.iloc[-1] / self.benchmark.iloc[0] - 1),
            "annualised_return": float(returns.mean() * TRADING_DAYS_PER_YEAR) if len(returns) else math.nan,
            "annualised_excess": float(excess.mean() * TRADING_DAYS_PER_YEAR) if len(excess) else math.nan,
            "information_ratio": float(excess.mean() / std * math.sqrt(TRADING_DAYS_PER_YEAR)) if std and std > 0 else math.nan,
            "max_drawdown": float((1 - self.equity / self.equity.cummax()).max()),
            "excess_max_drawdown": float((cumulative.cummax() - cumulative).max()) if len(cumulative) else math.nan,
            "turnover": float(sum(f.value for f in self.fills) / self.equity.mean() / max(len(returns), 1)),
            "fees": self.fees, "tax": self.tax, "trades": len(self.fills), "unfilled_orders": self.unfilled,
        }


def _topk_orders(scores: pd.Series, held: list[str], k: int, n_drop: int) -> tuple[list[str], list[str]]:
    """(sell, buy) codes of one TopkDropout step: keep k names, swap at most ``n_drop`` held ones for better ones.

    ``scores`` are the day's predicted returns (highest first is best); a held name without a score today
    ranks last, so it is the first to go.
    """
    score = lambda code: scores.get(code, -math.inf)  # noqa: E731 - a sort key
    last = sorted(held, key=score, reverse=True)
    fresh = [code for code in scores.sort_values(ascending=False, kind="stable").index if code not in held]
    today = fresh[: max(n_drop + k - len(last), 0)]
    combined = sorted(last + today, key=score, reverse=True)
    bottom = set(combined[-n_drop:]) if n_drop > 0 else set()
    sell = [code for code in last if code in bottom]
    buy = today[: len(sell) + k - len(last)]
    return sell, buy


def _benchmark(prices: Mapping[str, pd.DataFrame], days: list[str], cash: float) -> pd.Series:
    """Equal-weight universe, cost-free: each day the mean close-to-close return of the companies traded that day."""
    closes = pd.DataFrame({code: frame.set_index("date")["close"] for code, frame in prices.items()}).sort_index()
    returns = closes.ffill().pct_change(fill_method=None).where(closes.notna())
    daily = returns.reindex(days).mean(axis=1).fillna(0.0)
    daily.iloc[0] = 0.0
    return cash * (1 + daily).cumprod()


def topk_backtest(points: pd.DataFrame, prices: Mapping[str, pd.DataFrame], model: str, window: str, k: int = 10,
                  n_drop: int = 2, cash: int = 100_000_000, valid_only: bool = False) -> TopkResult:
    """The top-k portfolio of ``model``'s ``window`` forecasts (module docstring), from the first origin on."""
    if k < 1 or n_drop < 0:
        raise StockLLMError(f"top-k needs k ≥ 1 and n_drop ≥ 0 (got k={k}, n_drop={n_drop})")
    signals = predicted_returns(points[(points["model"] == model) & (points["window"] == window)], valid_only)
    if signals.empty:
        raise StockLLMError(f"no forecasts of model {model} in window {window} to rank")
    universe = tradable({code: prices[code] for code in signals["code"].unique() if code in prices})
    missing = sorted(set(signals["code"]) - set(universe))
    if missing:
        raise StockLLMError(f"no price table for {len(missing)} forecast companies ({', '.join(missing[:5])}); pass the walk-forward's prices")
    by_origin = {origin: group.set_index("code")["predicted"].dropna() for origin, group in signals.groupby("origin")}
    calendar = sorted({d for frame in universe.values() for d in frame["date"]})
    first, last = min(by_origin), max(by_origin)
    days = [d for d in calendar if first <= d <= last] + [d for d in calendar if d > last][:1]  # + the last orders' fill day
    rows = {code: frame.set_index("date") for code, frame in universe.items()}
    book, fills, curve, unfilled, pending, decided = Book(cash), [], {}, 0, ([], []), days[0]
    for day in days:
        sells, buys = pending
        for code in sells:
            bar = rows[code].loc[day] if day in rows[code].index else None
            if bar is None or float(bar["open"]) <= float(rules.marketable_limit(rules.SELL, _previous_close(rows[code], day))):
                unfilled += 1
                continue
            fills.append(book.execute(rules.SELL, code, book.positions[code].lots, rules.parse_price(float(bar["open"])), decided, day))
        budget = book.cash / len(buys) if buys else 0.0
        for code in buys:
            bar = rows[code].loc[day] if day in rows[code].index else None
            limit = rules.marketable_limit(rules.BUY, _previous_close(rows[code], day)) if bar is not None else None
            if bar is None or float(bar["open"]) >= float(limit):
                unfilled += 1
                continue
            lots = lots_for_budget(limit, min(budget, book.cash))
            if not lots:  # one board lot costs more than the name's share of the cash
                unfilled += 1
                continue
            fills.append(book.execute(rules.BUY, code, lots, rules.parse_price(float(bar["open"])), decided, day))
        curve[day] = book.value(universe, day)
        held = [code for code, position in book.positions.items() if position.lots]
        scores = by_origin.get(day)
        pending = _topk_orders(scores, held, k, n_drop) if scores is not None and len(scores) else ([], [])
        decided = day
    closing = book.liquidate(universe, days[-1])
    curve[days[-1]] = book.cash
    equity = pd.Series(curve, dtype=float)
    return TopkResult(model, window, k, n_drop, cash, equity, _benchmark(universe, list(equity.index), cash),
                      fills, book.fees, book.tax, unfilled)


def _previous_close(rows: pd.DataFrame, day: str) -> float:
    """The close of the company's last traded day before ``day`` (the reference of ``day``'s ±10% limits)."""
    before = rows.loc[rows.index < day, "close"]
    return float(before.iloc[-1])


def topk_backtests(points: pd.DataFrame, prices: Mapping[str, pd.DataFrame], k: int = 10, n_drop: int = 2,
                   cash: int = 100_000_000, valid_only: bool = False) -> dict[tuple[str, str], TopkResult]:
    """:func:`topk_backtest` for every model × window whose predictions vary across companies.

    A model that predicts the same return for every company (the random walk's 0) cannot rank them and is skipped.
    """
    signals = predicted_returns(points, valid_only)
    runs = {}
    for (model, window), group in signals.groupby(["model", "window"], sort=False):
        if group.groupby("origin")["predicted"].nunique().max() < 2:
            continue
        runs[(model, window)] = topk_backtest(points, prices, model, window, k, n_drop, cash, valid_only)
    return runs


def topk_summary(runs: Mapping[tuple[str, str], TopkResult]) -> pd.DataFrame:
    """One row of :meth:`TopkResult.metrics` per run."""
    return pd.DataFrame([run.metrics() for run in runs.values()])


def plot_topk(runs: Mapping[tuple[str, str], TopkResult], path: Path) -> Path:
    """Cumulative excess return over the equal-weight universe of every run, one panel per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = list(dict.fromkeys(window for _, window in runs))
    fig, axes = plt.subplots(len(windows), 1, figsize=(10, 3.5 * max(len(windows), 1)), squeeze=False)
    for ax, window in zip(axes[:, 0], windows):
        for (model, run_window), run in runs.items():
            if run_window != window:
                continue
            excess = (run.equity.pct_change() - run.benchmark.pct_change()).fillna(0.0).cumsum()
            ax.plot(pd.to_datetime(excess.index), excess.values * 100, label=f"{model} (top {run.k}, drop {run.n_drop})")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"window {window}: cumulative excess return over the equal-weight universe, after Taiwan costs")
        ax.set_ylabel("excess return (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return store.atomic_save_figure(fig, path, dpi=100)


def markdown_tables(summary: pd.DataFrame, topk: pd.DataFrame) -> str:
    """The IC and top-k tables as Markdown (the report's and docs/results.md's)."""
    def num(value, digits=4):
        return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = ["| model | window | dates | companies/date | IC | ICIR | IC t | Rank IC | Rank ICIR | Rank IC t | Rank IC > 0 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.window} | {r.dates} | {r.codes:.0f} | {num(r.ic_mean)} | {num(r.icir, 3)} | {num(r.ic_t, 2)} | "
              f"{num(r.rank_ic_mean)} | {num(r.rank_icir, 3)} | {num(r.rank_ic_t, 2)} | {num(r.rank_ic_positive, 2)} |"
              for r in summary.itertuples()]
    if len(topk):
        lines += ["", "| model | window | top k / drop | days | return | universe | ann. excess | IR | max DD | excess max DD | turnover/day | fees + tax (NT$) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r.model} | {r.window} | {r.k} / {r.n_drop} | {r.days} | {r.total_return:+.2%} | {r.benchmark_return:+.2%} | "
                  f"{r.annualised_excess:+.2%} | {num(r.information_ratio, 2)} | {r.max_drawdown:.2%} | {r.excess_max_drawdown:.2%} | "
                  f"{r.turnover:.2%} | {r.fees + r.tax:,} |" for r in topk.itertuples()]
    return "\n".join(lines) + "\n"


def write_ranking_report(points: pd.DataFrame, prices: Mapping[str, pd.DataFrame], out_dir: Path, k: int = 10,
                         n_drop: int = 2, cash: int = 100_000_000, min_codes: int = MIN_CODES) -> dict[str, Path]:
    """``ranking.json`` (daily ICs, summaries, top-k metrics and equity), ``ranking.md`` and ``topk.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    ic = information_coefficients(points, min_codes)
    summary = ic_summary(ic)
    runs = topk_backtests(points, prices, k, n_drop, cash)
    table = topk_summary(runs)
    paths = {"json": out_dir / "ranking.json", "markdown": out_dir / "ranking.md"}
    records = lambda frame: json.loads(frame.to_json(orient="records"))  # noqa: E731 - NaN → null
    store.atomic_write_json(paths["json"], {
        "settings": {"k": k, "n_drop": n_drop, "cash": cash, "min_codes": min_codes},
        "ic_summary": records(summary), "topk": records(table), "daily_ic": records(ic),
        "equity": {f"{m} {w}": json.loads(pd.DataFrame({"portfolio": run.equity, "benchmark": run.benchmark}).round(2).to_json(orient="index"))
                   for (m, w), run in runs.items()},
    })
    store.atomic_write_text(paths["markdown"], markdown_tables(summary, table))
    if runs:
        paths["plot"] = plot_topk(runs, out_dir / "topk.png")
    return paths

