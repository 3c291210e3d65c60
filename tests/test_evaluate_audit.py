"""The evaluation audit (issue 11): each test pins one defect the audit found and fails on the code it was found in.

- the DM test weighed origin dates equally while the relative MAE weighs forecasts, so verdicts could contradict it;
- a verdict ignored how often a model answered;
- the LLM's validity was re-checked on a table rebuilt on the calendar's dates, not on what the model wrote;
- window models saw only their last ``past`` rows (the LLM's signals context needs 30) and were asked one by one;
- a news-context LLM was built without the data dir its prompts read news from;
- a missing month was scored as one trading day ahead (by row position, not by date);
- origins could not be thinned to non-overlapping ones (``--stride``);
- "MASE" was a relative MAE under another name.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stockllm import store
from stockllm.cli import main
from stockllm.evaluate import ATTEMPT_COLUMNS, POINT_COLUMNS, WalkForward, make_period, score, verdicts, walk_forward
from stockllm.evaluation_report import write_report
from stockllm.forecasters.base import Forecast, make_forecast
from stockllm.forecasters.baselines import RandomWalk
from stockllm.forecasters.registry import make_forecaster
from stockllm.market import next_trading_days
from test_evaluate import PlusOne, snapshot_tail, table


@pytest.fixture(scope="module")
def real_prices() -> dict[str, pd.DataFrame]:
    return {code: snapshot_tail(code, 120) for code in ("2330", "2317")}


# --- 1. significance weighs forecasts like the relative MAE ------------------------------------------

def lucky_when_alone(rng: np.random.Generator) -> WalkForward:
    """A panel where the model is a little worse on 30 dates shared by 20 companies and much better on 30 later
    dates when one company alone is left: better on most *dates*, worse on most *forecasts*."""
    dates = [d.isoformat() for d in next_trading_days("2026-01-02", 60)]
    rows = []
    for t, day in enumerate(dates):
        codes = [f"C{c:02d}" for c in range(20)] if t < 30 else ["C00"]
        for code in codes:
            rw = rng.uniform(0.5, 1.5)
            model = rw + 0.05 + rng.normal(0, 0.02) if t < 30 else max(rw - 0.5, 0.0)
            for name, error in (("random_walk", rw), ("lucky", model)):
                rows.append((name, "1:1", code, day, 1, day, 100.0, 100 + error, 100 + error, 100 + error, 100 + error,
                             1.0, np.nan, np.nan, 1.0, 100.0, 100.0, 100.0, 100.0, True))
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    attempts = points[["model", "window", "code", "origin"]].assign(status="valid", problem="")[ATTEMPT_COLUMNS]
    return WalkForward(points=points, attempts=attempts, skipped=[], windows=[(1, 1)], models=["random_walk", "lucky"],
                       start=dates[0], fit_end=dates[0], end=dates[-1])


def test_the_dm_test_weighs_forecasts_like_the_relative_mae_and_never_contradicts_it():
    scores = score(lucky_when_alone(np.random.default_rng(7)))
    lucky = scores["1:1"]["lucky"]
    assert lucky["mase"] > 1  # worse on the forecasts as a whole ...
    assert lucky["dm"]["mean_loss_difference"] == pytest.approx(lucky["mase"] - 1)  # ... and the test's effect agrees
    assert lucky["dm"]["statistic"] > 0 and lucky["dm"]["weighting"] == "forecast days per origin date"
    assert not any("lucky (rel. MAE" in line for line in verdicts(scores))


def test_a_verdict_whose_sign_disagrees_with_the_relative_mae_is_never_printed():
    scores = {"1:1": {"random_walk": {"mase": 1.0, "answer_rate": 1.0},
                      "odd": {"mase": 1.02, "answer_rate": 1.0, "dm": {"statistic": -3.0, "p_value": 0.003, "mean_loss_difference": -0.01}}}}
    assert not any("odd" in line and ("beat the random walk at" in line or "significantly worse" in line) for line in verdicts(scores))


def test_a_model_that_answered_under_95_percent_gets_no_verdict():
    scores = {"1:1": {"random_walk": {"mase": 1.0, "answer_rate": 1.0},
                      "llm": {"mase": 0.8, "answer_rate": 0.9, "dm": {"statistic": -5.0, "p_value": 1e-6, "mean_loss_difference": -0.2}}}}
    lines = verdicts(scores)
    assert not any("llm (rel. MAE" in line for line in lines)
    assert any("no verdict for llm" in line and "90.0%" in line and "95%" in line for line in lines)


# --- 2. the LLM's validity is what the model wrote -----------------------------------------------------

class SelfJudging(PlusOne):
    """Answers like the LLM does: a table on the calendar's dates, fields it does not forecast as NaN, and its
    own verdict on what it wrote in ``info``."""

    name = "self_judging"

    def __init__(self, valid: bool, problems: list[str], capacity: float = np.nan):
        self.valid, self.problems, self.capacity = valid, problems, capacity

    def predict(self, history, horizon, *, code=None):
        close = float(history["close"].iloc[-1])
        rows = {c: [close] * horizon for c in ("open", "high", "low", "close")}
        forecast = make_forecast(history, dict(rows, capacity=[self.capacity] * horizon), self.name)
        forecast.info.update(valid=self.valid, problems=self.problems)
        return forecast


@pytest.mark.parametrize("model,status", [
    # the model wrote a wrong date: the rebuilt table looks fine, the answer is not
    (SelfJudging(False, ["dates 2026-05-02 are not the expected trading days 2026-05-04"], capacity=1000.0), "invalid"),
    # a field set without capacity (no-capacity, ohlc-transaction): a NaN capacity is not a problem
    (SelfJudging(True, []), "valid"),
])
def test_a_model_that_judged_its_own_answer_is_scored_on_that_judgement(real_prices, model, status):
    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "self_judging": model}, [(1, 1)], start="2026-04-20")
    attempts = result.attempts[result.attempts["model"] == "self_judging"]
    assert set(attempts["status"]) == {status}
    if status == "invalid":
        assert set(attempts["problem"]) == {model.problems[0]}


# --- 3. every forecaster gets the whole history, window models their past, all at once ------------------

class WindowRecorder(RandomWalk):
    """A window model (like the LSTM or the LLM) that records what it is handed."""

    name = "window_recorder"
    uses_full_history = False

    def __init__(self):
        self.seen = []

    def predict(self, history, horizon, *, code=None, past=None):
        self.seen.append((code, history["date"].iloc[-1], len(history), past))
        return super().predict(history.tail(past), horizon, code=code)


def test_window_models_get_the_whole_history_up_to_the_origin_and_their_past(real_prices):
    recorder = WindowRecorder()
    walk_forward(real_prices, {"random_walk": RandomWalk(), "rec": recorder}, [(1, 1), (20, 5)], start="2026-04-20")
    assert {past for *_, past in recorder.seen} == {1, 20}
    for code, origin, length, _ in recorder.seen:
        frame = real_prices[code]
        assert length == int((frame["date"] <= origin).sum())  # everything up to the origin, nothing after


class Batched(RandomWalk):
    """A model that forecasts many requests at once, like the LLM's batched generation."""

    name = "batched"

    def __init__(self):
        self.calls = []

    def predict_batch(self, requests):
        self.calls.append([(r.code, r.past, r.horizon) for r in requests])
        return [self.predict(r.history, r.horizon, code=r.code) for r in requests]


def test_each_window_is_one_batch_of_the_requests_of_a_group_of_companies_with_unchanged_results(real_prices):
    from stockllm.engines import LocalEngine

    windows = [(1, 1), (5, 5)]
    grouped, alone = Batched(), Batched()
    together = walk_forward(real_prices, {"random_walk": RandomWalk(), "batched": grouped}, windows, start="2026-04-20")
    apart = walk_forward(real_prices, {"random_walk": RandomWalk(), "batched": alone}, windows, start="2026-04-20",
                         engine=LocalEngine(group=1))
    assert [sorted({code for code, *_ in call}) for call in grouped.calls] == [sorted(real_prices)] * 2  # one call per window
    assert [{(past, horizon) for _, past, horizon in call} for call in grouped.calls] == [{(1, 1)}, {(5, 5)}]
    assert len(alone.calls) == len(real_prices) * 2 and all(len({code for code, *_ in call}) == 1 for call in alone.calls)
    assert sum(map(len, grouped.calls)) == sum(map(len, alone.calls)) == int((together.attempts["model"] == "batched").sum())
    pd.testing.assert_frame_equal(together.points, apart.points, check_exact=True)
    pd.testing.assert_frame_equal(together.attempts, apart.attempts, check_exact=True)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from stockllm.config import TrainConfig
    from stockllm.dataset import DatasetSpec
    from stockllm.llm.training import fine_tune
    from tiny_llm import build_tiny_llm

    root = tmp_path_factory.mktemp("llm")
    data_dir = root / "data"
    store.install_snapshot(data_dir, ["9921"])
    config = TrainConfig(model_name=str(build_tiny_llm(root / "base")), output_dir=str(root / "out"), model_dir=str(root / "model"),
                         max_steps=1, batch_size=2, gradient_accumulation_steps=1, report_to="none", max_seq_length=1024)
    fine_tune(data_dir, ["9921"], DatasetSpec(windows=[(2, 1)], max_seq_length=1024), config, eval_limit=2, say=lambda _: None)
    return root / "model"


def test_the_registry_hands_an_llm_the_data_dir_it_reads_news_from(tiny_model_dir, tmp_path):
    assert make_forecaster(f"llm:{tiny_model_dir}", data_dir=tmp_path).data_dir == tmp_path


# --- 4. scored by date -----------------------------------------------------------------------------

def test_a_missing_month_is_not_scored_as_the_next_trading_day():
    full = table([100 + (k % 7) for k in range(90)], start="2026-01-05")
    gappy = full.drop(index=range(50, 70)).reset_index(drop=True)  # 20 trading days missing
    result = walk_forward({"FULL": full, "GAP": gappy}, {"random_walk": RandomWalk(), "plus_one": PlusOne()}, [(1, 1), (5, 5)],
                          start=full["date"].iloc[40])
    points = result.points
    calendar = points.apply(lambda p: next_trading_days(p["origin"], int(p["step"]))[-1].isoformat(), axis=1)
    assert (points["target_date"] == calendar).all()
    before_gap = full["date"].iloc[49]
    assert not ((points["code"] == "GAP") & (points["origin"] == before_gap)).any()
    assert set(points.loc[points["code"] == "GAP", "target_date"]) <= set(gappy["date"])


# --- 5. --stride: the same sparse origins for every company and model -----------------------------------

def test_stride_forecasts_from_every_nth_shared_trading_day(real_prices):
    windows = [(1, 1), (5, 5)]
    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "plus_one": PlusOne()}, windows, start="2026-03-02", stride=5)
    period = make_period(real_prices, "2026-03-02", gap=5, stride=5)
    days = sorted(set().union(*(f["date"] for f in real_prices.values())))
    assert list(period.origins) == days[days.index(period.start) - 1::5]
    origins = result.attempts.groupby(["model", "window", "code"])["origin"].apply(tuple)
    assert origins.nunique() <= 2 and set(result.attempts["origin"]) <= set(period.origins)  # one set per window
    five = score(result)["5:5"]["plus_one"]["dm"]
    assert five["dates"] == result.attempts.loc[result.attempts["window"] == "5:5", "origin"].nunique()


def test_the_evaluate_command_takes_a_stride_and_refuses_a_bad_one(tmp_path, capsys, real_prices):
    data = tmp_path / "data"
    for code, frame in real_prices.items():
        store.write_prices(data, code, frame)
    out = tmp_path / "report"
    assert main(["evaluate", "--data-dir", str(data), "--codes", "2330", "2317", "--windows", "5:5", "--models", "drift",
                 "--start", "2026-03-02", "--stride", "5", "--report", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text("utf-8"))
    assert doc["settings"]["stride"] == 5
    assert "Every 5th trading day of the period is a forecast origin" in (out / "report.md").read_text("utf-8")
    with pytest.raises(SystemExit) as refused:  # argparse's checked type: one line, exit 2
        main(["evaluate", "--data-dir", str(data), "--codes", "2330", "--stride", "0", "--report", str(out)])
    assert refused.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--stride" in last


# --- 6. the relative MAE is called what it is -------------------------------------------------------------

def test_the_report_calls_the_relative_mae_by_its_name_and_defines_it(tmp_path, real_prices):
    result = walk_forward(real_prices, {"random_walk": RandomWalk(), "plus_one": PlusOne()}, [(1, 1)], start="2026-04-20")
    report = write_report(result, score(result), tmp_path)["report"].read_text("utf-8")
    assert "| rel. MAE |" in report and "| MASE |" not in report
    assert "rel. MAE = the model's MAE relative to the random walk's" in report
    assert "each date weighted by its number of forecast days" in report
