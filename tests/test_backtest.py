"""The backtest: no look-ahead, fills at the next open, and costs charged exactly as the exchange charges them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stockllm import store
from stockllm.cli import main
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import make_forecast
from stockllm.market import next_trading_days
from stockllm.trading import rules
from stockllm.trading.backtest import buy_and_hold, performance, run_backtest, write_report
from stockllm.trading.strategy import StrategyConfig


def flat_then_spike(days: int = 30, spike_at: int = 20) -> pd.DataFrame:
    """Prices at 100 every day, then +9.5% from day ``spike_at`` on (open and close), on real trading dates."""
    dates = [d.isoformat() for d in next_trading_days("2025-02-28", days)]
    close = [100.0 if i < spike_at else 109.5 for i in range(days)]
    return pd.DataFrame({"date": dates, "capacity": 1000, "turnover": 100_000, "open": close, "high": close,
                         "low": close, "close": close, "change": 0.0, "transaction": 10})


class Scripted:
    """A forecaster whose forecast close is ``rule(history)`` × last close; it records every history it gets."""

    def __init__(self, rule, name="scripted"):
        self.rule, self.name, self.seen = rule, name, []

    def fit(self, histories):
        return self

    def predict(self, history, horizon, *, code=None):
        self.seen.append(history["date"].iloc[-1])
        close = float(history["close"].iloc[-1]) * self.rule(history)
        return make_forecast(history, {k: [close] * horizon for k in ("open", "high", "low", "close", "capacity")}, self.name)


def test_decisions_use_data_up_to_the_day_and_fill_at_the_next_open():
    frame = flat_then_spike()
    spike_day = frame["date"].iloc[20]
    # "buy after a jump": expects +5% once the history contains a close above 105. A peek at the future
    # would buy before the spike; an honest backtest buys on the spike day's close and fills a day later.
    follower = Scripted(lambda h: 1.05 if h["close"].max() > 105 else 1.0)
    result = run_backtest({"1101": frame}, follower, frame["date"].iloc[0], frame["date"].iloc[-1], cash=1_000_000)
    assert follower.seen == list(frame["date"].iloc[:-1])  # one forecast per day, from data up to that day
    buys = [d for d in result.decisions if d.action == "buy"]
    assert buys[0].as_of == spike_day
    fill = result.fills[0]
    assert (fill.decided_on, fill.day, fill.side) == (spike_day, frame["date"].iloc[21], "buy")
    assert fill.price == frame["open"].iloc[21]
    for f in result.fills:
        assert f.day == frame["date"].iloc[list(frame["date"]).index(f.decided_on) + 1]


def test_buy_and_hold_strategy_equals_the_buy_and_hold_line_minus_exactly_fees_and_tax(tmp_path):
    prices = {code: store.read_price_csv(store.snapshot_dir() / f"{code}.csv") for code in ("2330", "2317")}
    calls = {"n": 0}

    def rise_once(history):  # +8% expected on the first day of each code, flat afterwards: buy, then hold
        calls["n"] += 1
        return 1.08 if calls["n"] <= 2 else 1.0

    start, end, cash = "2025-01-02", "2025-03-31", 5_000_000
    strategy = run_backtest(prices, Scripted(rise_once, "hold"), start, end, cash)
    benchmark, gross = buy_and_hold(prices, start, end, cash)
    assert [f.side for f in strategy.fills] == ["buy", "buy"]
    assert strategy.fees > 0 and strategy.tax > 0  # buy fees + closing fee and tax at the last close
    assert strategy.equity.iloc[-1] == gross.iloc[-1] - strategy.fees - strategy.tax
    assert strategy.equity.tolist() == benchmark.equity.tolist()
    # the closing valuation sells at the last close under the exchange's rules
    last = {code: float(f[f["date"] <= end]["close"].iloc[-1]) for code, f in prices.items()}
    assert strategy.tax == sum(rules.transaction_tax(rules.trade_value(last[f.code], f.lots)) for f in strategy.fills)

    report = write_report([strategy], benchmark, gross, tmp_path / "report", {"start": start})
    assert (tmp_path / "report" / "equity.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "report" / "backtest.json").read_text())
    metrics = saved["models"]["hold"]
    for key in ("total_return", "annualised_return", "sharpe", "max_drawdown", "win_rate", "turnover", "fees_paid", "tax_paid"):
        assert key in metrics
    assert saved["buy_and_hold"]["gross_final_equity"] == gross.iloc[-1]
    assert report["models"]["hold"]["final_equity"] == benchmark.metrics()["final_equity"]


def test_costs_make_a_threshold_so_tiny_expected_moves_do_not_trade():
    frame = flat_then_spike()
    nudge = Scripted(lambda h: 1.004)  # +0.4% < the ~0.585% round trip
    assert run_backtest({"1101": frame}, nudge, frame["date"].iloc[0], frame["date"].iloc[-1]).fills == []
    assert run_backtest({"1101": frame}, nudge, frame["date"].iloc[0], frame["date"].iloc[-1],
                        config=StrategyConfig(margin=-0.003)).fills != []


def test_position_limit_caps_each_buy():
    frame = flat_then_spike()
    eager = Scripted(lambda h: 1.05)
    result = run_backtest({"1101": frame}, eager, frame["date"].iloc[0], frame["date"].iloc[-1], cash=1_000_000,
                          config=StrategyConfig(max_position=0.25))
    assert result.fills[0].lots == 2  # 25% of 1,000,000 at the limit-up reservation of 110 x 1000 + fee


def test_performance_metrics_of_a_known_curve():
    curve = pd.Series([100.0, 110.0, 99.0, 121.0])
    m = performance(curve, 100.0)
    assert m["total_return"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["annualised_return"] == pytest.approx(1.21 ** (252 / 3) - 1, rel=1e-5)
    assert m["sharpe"] > 0


def test_backtest_command_writes_the_report(tmp_path, snapshot_data_dir, capsys):
    pytest.importorskip("stockllm.forecasters.registry")
    out = tmp_path / "bt"
    code = main(["backtest", "--models", "random_walk", "drift", "--codes", "2330", "2317", "--start", "2025-01-02",
                 "--end", "2025-02-28", "--data-dir", str(snapshot_data_dir), "--cash", "5000000", "--report", str(out)])
    assert code == 0
    report = json.loads((out / "backtest.json").read_text())
    assert set(report["models"]) == {"random_walk", "drift"} and "buy_and_hold" in report
    assert "buy_and_hold" in capsys.readouterr().out


def test_backtest_rejects_a_window_without_data(snapshot_data_dir, capsys):
    code = main(["backtest", "--codes", "2330", "--start", "2030-01-01", "--end", "2030-02-01", "--data-dir", str(snapshot_data_dir)])
    assert code == 2 and "fewer than 2 trading days" in capsys.readouterr().err


def test_a_model_trained_on_days_of_the_traded_period_is_refused():
    frame = flat_then_spike()
    leaky = Scripted(lambda h: 1.0, "llm")
    leaky.trained_until = frame["date"].iloc[5]
    with pytest.raises(StockLLMError, match=f"trained on data up to {frame['date'].iloc[5]}"):
        run_backtest({"1101": frame}, leaky, frame["date"].iloc[3], frame["date"].iloc[-1])
    leaky.trained_until = frame["date"].iloc[2]  # learned only from days before the first traded day
    assert run_backtest({"1101": frame}, leaky, frame["date"].iloc[3], frame["date"].iloc[-1]).fills == []


class Flaky(Scripted):
    """Answers +5% but cannot be parsed on the days ``bad`` says (as an LLM's garbled answer)."""

    def __init__(self, bad):
        super().__init__(lambda h: 1.05, "flaky")
        self.bad = bad

    def predict(self, history, horizon, *, code=None):
        if self.bad(history):
            raise StockLLMError("could not parse the model's answer: 'open 1O5'")
        return super().predict(history, horizon, code=code)


def test_unparseable_answers_are_skipped_and_counted_not_fatal():
    frame = flat_then_spike()
    flaky = Flaky(lambda h: len(h) <= 3)  # the first three days' answers are garbled
    result = run_backtest({"1101": frame}, flaky, frame["date"].iloc[0], frame["date"].iloc[-1])
    forecasts = result.metrics()["forecasts"]
    assert (forecasts["asked"], forecasts["used"], forecasts["failed"], forecasts["invalid"]) == (29, 26, 3, 0)
    assert forecasts["reasons"] == {"could not parse the model's answer: 'open 1O5'": 3}
    assert result.fills[0].decided_on == frame["date"].iloc[3]  # trading starts with the first readable answer


def flagged(history, horizon, valid):
    close = float(history["close"].iloc[-1]) * 1.5  # +50%: beyond the ±10% limit
    forecast = make_forecast(history, {k: [close] * horizon for k in ("open", "high", "low", "close", "capacity")}, "llm")
    if valid is not None:
        forecast.info.update(valid=valid, problems=[] if valid else ["close 150 outside the ±10% limits"])
    return forecast


@pytest.mark.parametrize("verdict", [False, None], ids=["the model flagged it", "the validator finds it"])
def test_invalid_forecasts_drive_no_orders_and_are_counted(verdict):
    frame = flat_then_spike()
    model = Scripted(lambda h: 1.0, "llm")
    model.predict = lambda history, horizon, *, code=None: flagged(history, horizon, verdict)
    result = run_backtest({"1101": frame}, model, frame["date"].iloc[0], frame["date"].iloc[-1])
    assert result.fills == []
    forecasts = result.metrics()["forecasts"]
    assert forecasts["invalid"] == 29 and forecasts["used"] == 0
    assert "outside the ±10% limits" in next(iter(forecasts["reasons"]))


def test_a_model_that_vouches_for_its_answer_is_taken_at_its_word():
    frame = flat_then_spike()
    model = Scripted(lambda h: 1.0, "llm")

    def vouched(history, horizon, *, code=None):
        forecast = make_forecast(history, {"open": [105.0] * horizon, "high": [105.0] * horizon, "low": [105.0] * horizon,
                                           "close": [105.0] * horizon, "capacity": [float("nan")] * horizon}, "llm")
        forecast.info.update(valid=True, problems=[])  # its field set has no volume: NaN capacity is not a problem
        return forecast

    model.predict = vouched
    result = run_backtest({"1101": frame}, model, frame["date"].iloc[0], frame["date"].iloc[-1])
    assert result.metrics()["forecasts"]["invalid"] == 0 and result.fills


def test_buy_and_hold_never_spends_more_than_its_cash_when_the_first_fill_opens_in_a_gap():
    frame = flat_then_spike(days=6)
    frame = frame.drop(index=1).reset_index(drop=True)  # a missing day: the stored close before the fill is stale...
    frame.loc[1, ["open", "high", "close"]] = 150.0       # ...and the fill day opens 50% above it
    result, _ = buy_and_hold({"1101": frame}, frame["date"].iloc[0], frame["date"].iloc[-1], cash=1_000_000)
    buy = result.fills[0]
    assert buy.price == 150.0 and buy.lots == 6
    assert 1_000_000 + buy.cash >= 0


def test_the_report_states_that_cash_dividends_are_not_credited(tmp_path):
    frame = flat_then_spike(days=5)
    benchmark, gross = buy_and_hold({"1101": frame}, frame["date"].iloc[0], frame["date"].iloc[-1])
    report = write_report([], benchmark, gross, tmp_path, {})
    assert any("cash dividends are not credited" in note for note in report["notes"])
