"""Walk-forward evaluation: no look-ahead, metrics as computed by hand, the DM test, skipped companies, the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from stockllm import metrics, store
from stockllm.cli import main
from stockllm.errors import StockLLMError
from stockllm.evaluate import load_prices, parse_windows, period_bounds, score, verdicts, walk_forward
from stockllm.forecasters.base import make_forecast
from stockllm.forecasters.baselines import BestFourBaseline, Drift, RandomWalk, StatsForecaster
from stockllm.forecasters.neural import NeuralForecaster
from stockllm.market import next_trading_days
from stockllm.universe import resolve_code


def snapshot_tail(code: str, rows: int) -> pd.DataFrame:
    frame = store.read_price_csv(store.snapshot_dir() / f"{code}.csv")
    return frame.tail(rows).reset_index(drop=True)


def table(closes: list[float], start: str = "2026-03-02") -> pd.DataFrame:
    """A price table with the given closes on consecutive trading days (candles of zero range)."""
    dates = [start] + [d.isoformat() for d in next_trading_days(start, len(closes) - 1)]
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame({"date": dates, "capacity": 1000, "open": close, "high": close, "low": close, "close": close})


class PlusOne:
    """Says every close will be one dollar above the last: easy to score by hand."""

    name = "plus_one"
    uses_full_history = True

    def fit(self, histories):
        return self

    def predict(self, history, horizon, *, code=None):
        value = float(history["close"].iloc[-1]) + 1
        return make_forecast(history, {c: [value] * horizon for c in ("open", "high", "low", "close", "capacity")}, self.name)


class Recorder(RandomWalk):
    """A random walk that remembers the last day of everything it was shown."""

    name = "recorder"

    def __init__(self):
        self.fit_last_day, self.seen = None, []

    def fit(self, histories):
        self.fit_last_day = max(h["date"].iloc[-1] for h in histories.values())
        return self

    def predict(self, history, horizon, *, code=None):
        self.seen.append((code, history["date"].iloc[-1]))
        return super().predict(history, horizon, code=code)


# --- metrics on a tiny series, by hand ---------------------------------------------------------------

def test_error_metrics_match_hand_computed_values():
    forecast, actual = [10.0, 12.0, 9.0], [11.0, 11.0, 11.0]
    errors = np.subtract(forecast, actual)  # -1, 1, -2
    assert metrics.mae(errors) == pytest.approx(4 / 3)
    assert metrics.rmse(errors) == pytest.approx(math.sqrt(2))
    assert metrics.mape(forecast, actual) == pytest.approx((1 / 11 + 1 / 11 + 2 / 11) / 3 * 100)


def test_mase_scales_each_company_by_its_random_walk_error_and_weights_by_forecasts():
    # company A: ratio (1+3)/2 / (2+2)/2 = 1.0 on 2 forecasts; company B: 1/4 = 0.25 on 1 forecast
    assert metrics.relative_mae([([1, 3], [2, 2]), ([1], [4])]) == pytest.approx((2 * 1.0 + 1 * 0.25) / 3)
    assert metrics.relative_mae([([5, 1], [5, 1]), ([3], [3])]) == 1.0


def test_direction_accuracy_majority_rate_coverage_and_mcc_by_hand():
    score_ = metrics.direction_score([1, -1, 2, 0, 1], [1, 1, -3, 2, 0])
    # points with a move and a call: 0 (up/up), 1 (down/up), 2 (up/down); point 3 has no call, point 4 no move
    assert score_.n == 3
    assert score_.accuracy == pytest.approx(1 / 3)
    assert score_.majority == pytest.approx(2 / 3)
    assert score_.coverage == pytest.approx(3 / 4)
    assert score_.mcc == pytest.approx((0 * 1 - 1 * 1) / math.sqrt(2 * 2 * 1 * 1))  # tp=1 tn=0 fp=1 fn=1


def test_interval_coverage_counts_actuals_inside_their_interval():
    assert metrics.coverage([1, 2, 3], [0, 2.5, 3], [2, 3, 3]) == pytest.approx(2 / 3)


def test_diebold_mariano_matches_a_hand_computed_example():
    # e1 = 0..5, e2 = 0,2,3,3,5,6, squared loss: d = 0,-3,-5,0,-9,-11, mean -14/3;
    # gamma0 = sum((d - mean)^2) / 6 = 105.333/6; DM = mean / sqrt(gamma0 / 6) = -2.7281;
    # HLN factor sqrt((6 + 1 - 2 + 0) / 6) → -2.4905; two-sided t(5) p = 0.0551.
    result = metrics.diebold_mariano(np.square([0, 1, 2, 3, 4, 5]), np.square([0, 2, 3, 3, 5, 6]))
    d = np.array([0, -3, -5, 0, -9, -11], dtype=float)
    by_hand = d.mean() / math.sqrt(((d - d.mean()) ** 2).mean() / 6) * math.sqrt(5 / 6)
    assert result.statistic == pytest.approx(by_hand)
    assert result.statistic == pytest.approx(-2.4905, abs=1e-4)
    assert result.p_value == pytest.approx(0.05513, abs=1e-4)


def test_diebold_mariano_with_a_three_step_horizon_matches_a_published_reference():
    # Reference values published with the `dieboldmariano` package's tests (absolute loss, h = 3, one-sided),
    # which follow R's forecast::dm.test: statistic 1.2109, p = 0.877.
    p1 = [0.3675225224615024, 0.5450608127223211, 0.22044990720021074, 0.8688743471040006, 0.6072512228948467,
          0.8582283746501538, 0.41662295816718187, 0.3812100211114714, 0.7185133356116706, 0.30827323290318875,
          0.4297093624074402, 0.8615974488577858, 0.7240514514808826, 0.3450839595261038, 0.19675301374013598]
    p2 = [0.12794132529988733, 0.3679643204341153, 0.768715420996091, 0.09972248964114683, 0.27197653636654284,
          0.28797629010039505, 0.9160213458582482, 0.6112628048698798, 0.5452873235576241, 0.06785907231746158,
          0.6072666485541124, 0.6241575753989782, 0.39998026828867217, 0.19895665605941748, 0.8094941215215619]
    result = metrics.diebold_mariano(p1, p2, horizon=3, alternative="less")
    assert result.statistic == pytest.approx(1.2109, abs=1e-4)
    assert result.p_value == pytest.approx(0.877, abs=1e-3)


# --- the walk-forward --------------------------------------------------------------------------------

def test_walk_forward_scores_a_tiny_series_as_computed_by_hand():
    closes = [100, 101, 102, 103, 104, 105, 106, 107, 108, 110, 109, 111]
    prices = {"A": table(closes)}
    start = prices["A"]["date"].iloc[9]
    result = walk_forward(prices, {"random_walk": RandomWalk(), "plus_one": PlusOne()}, [(1, 1)], start=start)
    scores = score(result)["1:1"]
    # origins: days 8, 9, 10 → random walk 108, 110, 109 vs actual 110, 109, 111: errors -2, 1, -2
    assert scores["random_walk"]["mae"] == pytest.approx(5 / 3)
    # plus one: 109, 111, 110 → errors -1, 2, -1
    assert scores["plus_one"]["mae"] == pytest.approx(4 / 3)
    assert scores["plus_one"]["rmse"] == pytest.approx(math.sqrt(2))
    assert scores["plus_one"]["mase"] == pytest.approx(0.8)
    assert scores["plus_one"]["direction"]["accuracy"] == pytest.approx(2 / 3)
    assert scores["plus_one"]["direction"]["majority"] == pytest.approx(2 / 3)
    assert scores["plus_one"]["direction"]["mcc"] == 0.0  # it always says "up": no correlation to speak of


@pytest.fixture(scope="module")
def real_prices() -> dict[str, pd.DataFrame]:
    """The last 200 stored days of three real companies (two end 2026-05-12, one 2026-05-15)."""
    return {code: snapshot_tail(code, 200) for code in ("2330", "2317", "9921")}


def all_models() -> dict:
    return {
        "random_walk": RandomWalk(), "drift": Drift(), "arima": StatsForecaster("arima"), "ets": StatsForecaster("ets"),
        "bestfour": BestFourBaseline(),
        "lstm": NeuralForecaster("lstm", hidden=4, epochs=2), "cnn": NeuralForecaster("cnn", hidden=4, epochs=2),
    }


def test_random_walk_mase_is_exactly_one(real_prices):
    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "drift": Drift()}, [(1, 1), (3, 3)], start="2026-04-20")
    scores = score(result)
    for window in ("1:1", "3:3"):
        assert scores[window]["random_walk"]["mase"] == 1.0
        assert all(value == 1.0 for value in scores[window]["random_walk"]["mase_ohlc"].values())
        assert all(step["mase"] == 1.0 for step in scores[window]["random_walk"]["by_step"].values())


def test_no_model_sees_data_after_its_origin_a_planted_future_spike_changes_no_earlier_forecast(real_prices):
    spike_day = "2026-05-04"
    spiked = {code: frame.copy() for code, frame in real_prices.items()}
    for frame in spiked.values():
        at = frame["date"] >= spike_day
        frame.loc[at, ["open", "high", "low", "close"]] *= 1.5
        frame.loc[at, "capacity"] *= 10
    windows = [(1, 1), (5, 3)]
    clean = walk_forward(real_prices, all_models(), windows, start="2026-04-24").points
    dirty = walk_forward(spiked, all_models(), windows, start="2026-04-24").points
    forecast_columns = ["f_open", "f_high", "f_low", "f_close", "f_lo", "f_hi", "f_direction"]
    before = clean["origin"] < spike_day
    assert before.sum() > 0 and set(clean.loc[before, "model"]) == set(all_models())
    pd.testing.assert_frame_equal(clean.loc[before, forecast_columns], dirty.loc[dirty["origin"] < spike_day, forecast_columns])
    # and the spike is really there for origins on or after it
    after = (clean["origin"] >= spike_day) & (clean["model"] == "random_walk")
    assert (dirty.loc[after, "f_close"].to_numpy() > clean.loc[after, "f_close"].to_numpy()).all()


def test_models_learn_only_before_the_gap_and_predict_from_rows_up_to_the_origin(real_prices):
    recorder = Recorder()
    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "recorder": recorder}, [(1, 1), (4, 4)], start="2026-04-20")
    assert recorder.fit_last_day < result.fit_end < result.start
    days = sorted(set().union(*(f["date"] for f in real_prices.values())))
    assert days.index(result.start) - days.index(result.fit_end) == 4  # gap = the longest horizon
    attempts = result.attempts[result.attempts["model"] == "recorder"]
    assert sorted(recorder.seen) == sorted(zip(attempts["code"], attempts["origin"]))
    points = result.points[result.points["model"] == "recorder"]
    assert (points["target_date"] > points["origin"]).all() and (points["target_date"] >= result.start).all()


def test_invalid_forecasts_are_counted_and_failures_left_out_of_the_errors(real_prices):
    class Flaky(PlusOne):
        name = "flaky"

        def predict(self, history, horizon, *, code=None):
            if len(history) % 2:
                raise StockLLMError("could not parse the model's answer")
            forecast = super().predict(history, horizon, code=code)
            forecast.frame["high"] = forecast.frame["close"] - 1  # high below close: impossible
            return forecast

    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "flaky": Flaky()}, [(1, 1)], start="2026-04-20")
    flaky = score(result)["1:1"]["flaky"]
    assert flaky["failed"] > 0 and flaky["invalid"] > 0 and flaky["valid"] == 0
    assert flaky["failed"] + flaky["invalid"] == flaky["forecasts"]
    assert flaky["answer_rate"] == pytest.approx(flaky["invalid"] / flaky["forecasts"])
    assert "could not parse" in next(iter(flaky["failure_reasons"]))
    assert "high" in next(iter(flaky["invalid_reasons"]))
    assert len(result.points[result.points["model"] == "flaky"]) == flaky["invalid"]


def test_companies_with_too_little_history_are_skipped_and_listed(real_prices):
    prices = dict(real_prices, SHORT=snapshot_tail("6569", 4))
    result = walk_forward(prices, {"random_walk": RandomWalk()}, [(1, 1), (20, 5)], start="2026-04-20")
    skipped = {(s.code, s.window): s.reason for s in result.skipped}
    assert ("SHORT", "20:5") in skipped and "too little history" in skipped[("SHORT", "20:5")]
    long_window = result.points[result.points["window"] == "20:5"]
    assert set(long_window["code"]) == set(real_prices)  # the others are still evaluated
    assert "SHORT" in set(result.points.loc[result.points["window"] == "1:1", "code"])  # 4 days suffice for 1:1


def test_a_pre_trained_model_whose_training_data_reach_the_period_is_refused(real_prices):
    leaky = RandomWalk()
    leaky.trained_until = "2026-05-01"
    with pytest.raises(StockLLMError, match="trained on data up to 2026-05-01"):
        walk_forward(real_prices, {"random_walk": RandomWalk(), "llm": leaky}, [(1, 1)], start="2026-04-20")


def test_verdict_says_plainly_when_no_model_beats_the_random_walk():
    scores = {"1:1": {"random_walk": {"mase": 1.0, "answer_rate": 1.0},
                      "drift": {"mase": 1.01, "answer_rate": 1.0, "dm": {"statistic": 0.8, "p_value": 0.4, "mean_loss_difference": 0.01}}}}
    assert verdicts(scores) == ["Window 1:1: no model beats the random walk at the 5% level; the lowest relative MAE is drift's (1.010, DM statistic +0.80, p = 0.4)."]
    scores["1:1"]["drift"] = {"mase": 0.9, "answer_rate": 1.0, "dm": {"statistic": -3.0, "p_value": 0.01, "mean_loss_difference": -0.1}}
    assert verdicts(scores) == ["Window 1:1: drift (rel. MAE 0.900, p = 0.01) beat the random walk at the 5% level."]


@pytest.mark.parametrize("text", ["5", "5:0", "a:b", "1:1,1:1", ""])
def test_bad_windows_are_refused_with_the_expected_form(text):
    with pytest.raises(StockLLMError, match="PAST:FUTURE|twice"):
        parse_windows(text)


def test_default_period_is_the_last_tenth_of_stored_days(real_prices):
    start, fit_end = period_bounds(real_prices, None, gap=5)
    days = sorted(set().union(*(f["date"] for f in real_prices.values())))
    assert days.index(start) == len(days) - round(len(days) * 0.1) and days.index(fit_end) == days.index(start) - 5
    with pytest.raises(StockLLMError, match="YYYY-MM-DD"):
        period_bounds(real_prices, "May 1st", gap=5)
    with pytest.raises(StockLLMError, match="after the last stored day"):
        period_bounds(real_prices, "2030-01-01", gap=5)


def test_evaluate_command_writes_report_metrics_and_plots(tmp_path, capsys, real_prices):
    data = tmp_path / "data"
    for code in ("2330", "9921"):
        store.write_prices(data, code, real_prices[code].tail(120))
    store.write_prices(data, "6569", snapshot_tail("6569", 4))
    out = tmp_path / "report"
    code = main(["evaluate", "--data-dir", str(data), "--codes", "2330", "9921", "6569", "2317",
                 "--windows", "1:1,3:3", "--models", "drift,ets,bestfour", "--start", "2026-04-27", "--report", str(out)])
    assert code == 0
    doc = json.loads((out / "metrics.json").read_text("utf-8"))
    assert doc["windows"]["1:1"]["random_walk"]["mase"] == 1.0
    assert set(doc["windows"]["3:3"]) == {"random_walk", "drift", "ets", "bestfour"}
    report = (out / "report.md").read_text("utf-8")
    assert "beat the random walk" in report or "no model beats the random walk" in report
    assert "| 6569 |" in report and "| 2317 | all | no stored prices" in report
    assert "## Ranking the companies: IC, Rank IC and a top-k portfolio" in report and (out / "ranking.json").exists()
    for png in ("error_by_horizon.png", "calibration.png", "example_forecasts.png", "kline_random_walk.png", "kline_ets.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(out / "forecasts.csv")["model"].nunique() == 4


@pytest.mark.parametrize("argv,message", [
    (["--windows", "5-5"], "PAST:FUTURE"),
    (["--models", "random_walk,oracle"], "unknown model 'oracle'"),
    (["--start", "2099-01-01"], "after the last stored day"),
])
def test_evaluate_command_reports_bad_input_in_one_line(tmp_path, capsys, argv, message):
    data = tmp_path / "data"
    store.write_prices(data, "2330", snapshot_tail("2330", 60))
    code = main(["evaluate", "--data-dir", str(data), "--codes", "2330", "--report", str(tmp_path / "r"), "--models", "drift", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and message in err[-1]


def test_loading_prices_lists_companies_without_a_price_file(tmp_path):
    store.write_prices(tmp_path, "2330", snapshot_tail("2330", 30))
    prices, skipped = load_prices(tmp_path, [resolve_code("2330"), resolve_code("2317")])
    assert list(prices) == ["2330"] and [s.code for s in skipped] == ["2317"]
    with pytest.raises(StockLLMError, match="stockllm fetch"):
        load_prices(tmp_path, [resolve_code("2317")])
