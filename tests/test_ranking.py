"""Cross-sectional IC / Rank IC and the top-k portfolio: the numbers a quant would check by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stockllm import ranking, store
from stockllm.errors import StockLLMError
from stockllm.evaluate import POINT_COLUMNS
from stockllm.market import next_trading_days
from stockllm.trading import rules

DAYS = [d.isoformat() for d in next_trading_days("2026-03-02", 8)]


def point(model, window, code, origin, step, origin_close, f_close, close, valid=True) -> dict:
    row = dict.fromkeys(POINT_COLUMNS, np.nan)
    row.update(model=model, window=window, code=code, origin=origin, step=step, target_date=origin, origin_close=origin_close,
               f_close=f_close, close=close, valid=valid)
    return row


def points_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def test_the_signal_is_the_return_to_the_horizons_last_day_forecast_and_realised():
    points = points_of([
        point("m", "5:2", "1101", DAYS[0], 1, 100.0, 150.0, 90.0),   # step 1 of a 2-day forecast: not the signal
        point("m", "5:2", "1101", DAYS[0], 2, 100.0, 104.0, 97.0),
    ])
    signal = ranking.predicted_returns(points)
    assert len(signal) == 1
    assert signal["predicted"].iloc[0] == pytest.approx(0.04)
    assert signal["realised"].iloc[0] == pytest.approx(-0.03)


def test_daily_ic_is_pearson_and_rank_ic_is_spearman_across_companies():
    realised = [0.01, -0.02, 0.03, 0.00, 0.05, -0.04]
    predicted = [0.002, -0.001, 0.004, 0.0005, 0.03, -0.02]
    codes = [f"{1101 + i}" for i in range(6)]
    rows = [point("m", "1:1", c, DAYS[0], 1, 100.0, 100 * (1 + p), 100 * (1 + r)) for c, p, r in zip(codes, predicted, realised)]
    rows += [point("m", "1:1", c, DAYS[1], 1, 100.0, 100 * (1 - p), 100 * (1 + r)) for c, p, r in zip(codes, predicted, realised)]
    rows += [point("random_walk", "1:1", c, DAYS[0], 1, 100.0, 100.0, 100 * (1 + r)) for c, r in zip(codes, realised)]
    ic = ranking.information_coefficients(points_of(rows)).set_index(["model", "date"])
    assert ic.loc[("m", DAYS[0]), "ic"] == pytest.approx(stats.pearsonr(predicted, realised)[0])
    assert ic.loc[("m", DAYS[0]), "rank_ic"] == pytest.approx(stats.spearmanr(predicted, realised)[0])
    assert ic.loc[("m", DAYS[1]), "rank_ic"] == pytest.approx(-stats.spearmanr(predicted, realised)[0])
    assert ic.loc[("m", DAYS[0]), "codes"] == 6
    assert math.isnan(ic.loc[("random_walk", DAYS[0]), "ic"])  # one prediction for all: nothing ranked


def test_dates_with_too_few_companies_have_no_ic():
    rows = [point("m", "1:1", c, DAYS[0], 1, 100.0, 100.0 + i, 100.0 + i) for i, c in enumerate(["1101", "1102", "1103"])]
    assert ranking.information_coefficients(points_of(rows), min_codes=4).empty
    assert len(ranking.information_coefficients(points_of(rows), min_codes=3)) == 1


def test_ic_summary_gives_mean_std_icir_and_the_t_statistic_of_the_mean():
    values = [0.05, 0.02, -0.01, 0.04, 0.03, 0.00, 0.06]
    ic = pd.DataFrame({"model": "m", "window": "1:1", "date": DAYS[:7], "codes": 40, "ic": values, "rank_ic": values})
    row = ranking.ic_summary(ic).iloc[0]
    mean, std = np.mean(values), np.std(values, ddof=1)
    assert row["ic_mean"] == pytest.approx(mean)
    assert row["ic_std"] == pytest.approx(std)
    assert row["icir"] == pytest.approx(mean / std)
    assert row["ic_t"] == pytest.approx(stats.ttest_1samp(values, 0).statistic)  # 1-day returns do not overlap
    assert row["ic_p"] == pytest.approx(stats.ttest_1samp(values, 0).pvalue)
    assert row["ic_positive"] == pytest.approx(5 / 7)
    assert row["dates"] == 7


def test_overlapping_multi_day_returns_widen_the_t_statistic():
    values = list(np.sin(np.arange(30) / 3.0) * 0.05 + 0.01)  # smooth, as overlapping 5-day ICs are
    one = ranking.ic_summary(pd.DataFrame({"model": "m", "window": "1:1", "date": range(30), "codes": 9, "ic": values, "rank_ic": values}))
    five = ranking.ic_summary(pd.DataFrame({"model": "m", "window": "5:5", "date": range(30), "codes": 9, "ic": values, "rank_ic": values}))
    assert abs(five["ic_t"].iloc[0]) < abs(one["ic_t"].iloc[0])


def test_topk_dropout_keeps_k_names_and_swaps_at_most_n_drop_a_day():
    scores = pd.Series({"A": 0.05, "B": 0.04, "C": 0.03, "D": 0.02, "E": 0.01})
    assert ranking._topk_orders(scores, [], k=2, n_drop=1) == ([], ["A", "B"])
    # held D and E are the two worst; only one may go, the better unheld names come in one at a time
    assert ranking._topk_orders(scores, ["D", "E"], k=2, n_drop=1) == (["E"], ["A"])
    assert ranking._topk_orders(scores, ["A", "B"], k=2, n_drop=1) == ([], [])
    # a held name with no forecast today ranks last
    assert ranking._topk_orders(scores.drop("A"), ["A", "B"], k=2, n_drop=1) == (["A"], ["C"])


def bars(opens: list[float], closes: list[float] | None = None, days: list[str] = DAYS) -> pd.DataFrame:
    closes = closes or opens
    return pd.DataFrame({"date": days[: len(opens)], "capacity": 1_000_000, "open": opens, "high": np.maximum(opens, closes),
                         "low": np.minimum(opens, closes), "close": closes})


def oracle_points(prices: dict[str, pd.DataFrame], origins: list[str], model: str = "oracle") -> pd.DataFrame:
    """Forecasts that know the next close: the best possible ranking."""
    rows = []
    for code, frame in prices.items():
        frame = frame.set_index("date")
        for origin in origins:
            later = frame.index[frame.index > origin]
            if origin in frame.index and len(later):
                rows.append(point(model, "1:1", code, origin, 1, frame.loc[origin, "close"], frame.loc[later[0], "close"], frame.loc[later[0], "close"]))
    return points_of(rows)


def test_topk_portfolio_fills_at_the_next_open_with_the_exchanges_costs():
    prices = {"1101": bars([50.0, 50.0, 55.0, 60.0]), "1102": bars([50.0, 50.0, 45.0, 40.0]), "1103": bars([50.0] * 4)}
    points = oracle_points(prices, DAYS[:3])
    run = ranking.topk_backtest(points, prices, "oracle", "1:1", k=1, n_drop=1, cash=1_000_000)
    first = run.fills[0]
    assert (first.decided_on, first.day, first.code, first.side) == (DAYS[0], DAYS[1], "1101", "buy")
    assert first.price == 50.0  # DAYS[1]'s open, decided on DAYS[0]'s close
    lots = 1_000_000 // rules.buy_reservation(rules.marketable_limit(rules.BUY, 50.0), 1)  # sized at the limit-up reservation
    assert first.lots == lots
    assert first.cash == -(lots * 50_000 + rules.brokerage_fee(lots * 50_000))
    # held to the end, valued net of selling at the last close (fee and tax)
    value = lots * 60_000
    assert run.equity.iloc[-1] == 1_000_000 + first.cash + value - rules.brokerage_fee(value) - rules.transaction_tax(value)
    assert run.equity.index[0] == DAYS[0] and run.equity.index[-1] == DAYS[3]
    assert run.fees == rules.brokerage_fee(lots * 50_000) + rules.brokerage_fee(value)


def test_no_fill_when_the_stock_opens_locked_at_its_limit_or_does_not_trade():
    limit_up = float(rules.marketable_limit(rules.BUY, 50.0))  # 55.0
    prices = {
        "1101": bars([50.0, limit_up, 55.0]),                        # best, but opens locked limit-up: no buy
        "1102": bars([50.0, 50.0], days=[DAYS[0], DAYS[2]]),          # second best, no row on DAYS[1]: no buy
        "1103": bars([50.0, 50.0, 50.0]),
    }
    points = points_of([point("m", "1:1", "1101", DAYS[0], 1, 50.0, 60.0, 55.0), point("m", "1:1", "1102", DAYS[0], 1, 50.0, 55.0, 50.0),
                        point("m", "1:1", "1103", DAYS[0], 1, 50.0, 49.0, 50.0)])
    run = ranking.topk_backtest(points, prices, "m", "1:1", k=2, n_drop=1, cash=1_000_000)
    assert run.fills == [] and run.unfilled == 2
    assert run.equity.tolist() == [1_000_000.0, 1_000_000.0]


def test_the_benchmark_is_the_cost_free_equal_weight_universe():
    prices = {"1101": bars([50.0, 50.0, 55.0]), "1102": bars([50.0, 50.0, 45.0]), "1103": bars([50.0, 50.0, 53.0])}
    run = ranking.topk_backtest(oracle_points(prices, DAYS[:2]), prices, "oracle", "1:1", k=1, n_drop=0, cash=1_000_000)
    assert run.benchmark.tolist() == pytest.approx([1_000_000, 1_000_000, 1_000_000 * (1 + (0.1 - 0.1 + 0.06) / 3)])


def test_an_oracle_beats_the_universe_and_the_summary_reports_it(tmp_path):
    rng = np.random.default_rng(7)
    days = [d.isoformat() for d in next_trading_days("2026-01-02", 40)]
    prices = {}
    for i in range(12):
        closes = list(np.round(np.round(50 * np.cumprod(1 + rng.normal(0, 0.02, len(days))) / 0.05) * 0.05, 2))
        prices[f"{2000 + i}"] = bars(closes, closes, days)
    points = pd.concat([oracle_points(prices, days[:-1]), oracle_points(prices, days[:-1], "inverse").assign(
        f_close=lambda p: 2 * p["origin_close"] - p["f_close"])], ignore_index=True)
    runs = ranking.topk_backtests(points, prices, k=3, n_drop=1, cash=10_000_000)
    table = ranking.topk_summary(runs).set_index("model")
    assert table.loc["oracle", "annualised_excess"] > 0 > table.loc["inverse", "annualised_excess"]
    assert table.loc["oracle", "information_ratio"] > 0
    assert 0 <= table.loc["inverse", "max_drawdown"] < 1
    summary = ranking.ic_summary(ranking.information_coefficients(points)).set_index("model")
    assert summary.loc["oracle", "rank_ic_mean"] == pytest.approx(1.0)
    assert summary.loc["inverse", "rank_ic_mean"] == pytest.approx(-1.0)

    paths = ranking.write_ranking_report(points, prices, tmp_path / "report", k=3, n_drop=1, cash=10_000_000)
    saved = json.loads(paths["json"].read_text("utf-8"))
    assert {r["model"] for r in saved["topk"]} == {"oracle", "inverse"}
    assert "| oracle | 1:1 |" in paths["markdown"].read_text("utf-8")
    assert paths["plot"].stat().st_size > 10_000


def test_forecasts_without_prices_are_refused_in_one_line():
    points = points_of([point("m", "1:1", "1101", DAYS[0], 1, 50.0, 51.0, 50.0)])
    with pytest.raises(StockLLMError, match="no price table"):
        ranking.topk_backtest(points, {}, "m", "1:1")


def test_ranking_runs_on_a_real_walk_forward():
    from stockllm.evaluate import walk_forward
    from stockllm.forecasters.baselines import Drift, RandomWalk

    prices = {code: store.read_price_csv(store.snapshot_dir() / f"{code}.csv").dropna(subset=["close"]).reset_index(drop=True)
              for code in ("2330", "2317", "2454", "2303", "2308", "3711")}
    result = walk_forward(prices, {"random_walk": RandomWalk(), "drift": Drift()}, [(1, 1)], start="2026-04-01")
    summary = ranking.ic_summary(ranking.information_coefficients(result.points)).set_index("model")
    assert summary.loc["drift", "dates"] > 20 and -1 <= summary.loc["drift", "rank_ic_mean"] <= 1
    assert summary.loc["random_walk", "dates"] == 0
    runs = ranking.topk_backtests(result.points, result.prices, k=2, n_drop=1, cash=50_000_000)
    assert list(runs) == [("drift", "1:1")]
    assert runs[("drift", "1:1")].equity.index[0] == result.points["origin"].min()
