"""Baseline forecasters: what each one predicts, and that every forecast is a possible trading record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockllm import store
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import Forecaster, future_dates
from stockllm.forecasters.baselines import BestFourBaseline, Drift, RandomWalk, StatsForecaster, candles_around, within_limits
from stockllm.forecasters.registry import VALID_SPECS, make_forecaster, parse_model_list, trained_until
from stockllm.market import limit_prices, next_trading_days
from stockllm.validation import validate_forecast


@pytest.fixture(scope="module")
def tsmc() -> pd.DataFrame:
    """Real 2330 prices up to 2026-01-30 (one year and a half of TWSE rows)."""
    frame = store.read_price_csv(store.snapshot_dir() / "2330.csv")
    return frame[(frame["date"] >= "2024-06-01") & (frame["date"] <= "2026-01-30")].reset_index(drop=True)


def geometric(days: int, rate: float, start: str = "2025-01-02") -> pd.DataFrame:
    """A price table whose close grows by ``rate`` per trading day, with small wicks."""
    dates = [start] + [d.isoformat() for d in next_trading_days(start, days - 1)]
    close = 100.0 * (1 + rate) ** np.arange(days)
    return pd.DataFrame({"date": dates, "capacity": 1000, "turnover": pd.NA, "open": close, "high": close * 1.01,
                         "low": close * 0.99, "close": close, "change": pd.NA, "transaction": pd.NA})


def test_random_walk_repeats_the_last_candle_and_volume(tsmc):
    forecast = RandomWalk().predict(tsmc, 3)
    last = tsmc.iloc[-1]
    assert list(forecast.frame.index) == future_dates(tsmc, 3)
    assert (forecast.frame["close"] == last["close"]).all()
    assert (forecast.frame["open"] == last["open"]).all()
    assert (forecast.frame["capacity"] == last["capacity"]).all()


def test_drift_continues_the_average_daily_log_return():
    history = geometric(30, 0.01)
    forecast = Drift().predict(history, 3)
    expected = history["close"].iloc[-1] * 1.01 ** np.arange(1, 4)
    np.testing.assert_allclose(forecast.frame["close"], expected, rtol=1e-9)


@pytest.mark.parametrize("model", [RandomWalk(), Drift(), BestFourBaseline(), StatsForecaster("ets"), StatsForecaster("arima")], ids=lambda m: m.name)
def test_every_baseline_gives_a_valid_forecast_on_real_prices(model, tsmc):
    train = tsmc.iloc[:-40]
    model.fit({"2330": train})
    forecast = model.predict(tsmc, 5, code="2330")
    assert isinstance(model, Forecaster)
    assert forecast.model == model.name and forecast.horizon == 5
    assert validate_forecast(forecast.frame, float(tsmc["close"].iloc[-1]), future_dates(tsmc, 5)) == []


@pytest.mark.parametrize("kind", ["arima", "ets"])
def test_statistical_models_give_80_percent_intervals_around_the_close(kind, tsmc):
    model = StatsForecaster(kind).fit({"2330": tsmc.iloc[:-40]})
    frame = model.predict(tsmc, 5, code="2330").frame
    assert (frame["close_lo"] <= frame["close"]).all() and (frame["close"] <= frame["close_hi"]).all()
    widths = (frame["close_hi"] - frame["close_lo"]).to_numpy()
    assert np.all(np.diff(widths) > 0), "uncertainty grows with the horizon"


def test_statistical_model_reuses_the_parameters_fitted_before_the_period(tsmc):
    model = StatsForecaster("ets").fit({"2330": tsmc.iloc[:-40]})
    fitted = model._models["2330"]
    model.predict(tsmc, 1, code="2330")
    assert model._models["2330"] is fitted
    # a company it was not fitted on is fitted on the history it is given (which ends at the origin)
    assert model.predict(tsmc, 1, code="9999").horizon == 1


def test_statistical_model_refuses_too_short_a_history():
    with pytest.raises(StockLLMError, match="at least 30"):
        StatsForecaster("arima").predict(geometric(10, 0.0), 1)


def test_candles_around_follow_the_recent_candle_shape_and_stay_consistent(tsmc):
    closes = [float(tsmc["close"].iloc[-1]) * f for f in (1.01, 1.02, 0.99)]
    rows = candles_around(tsmc, closes)
    frame = pd.DataFrame(rows, index=future_dates(tsmc, 3))
    assert validate_forecast(frame, float(tsmc["close"].iloc[-1]), future_dates(tsmc, 3)) == []
    np.testing.assert_allclose(rows["close"], closes)


def test_prices_beyond_the_daily_limit_chain_are_clipped_to_it():
    rows = {"open": [100.0, 140.0], "high": [130.0, 150.0], "low": [100.0, 120.0], "close": [125.0, 140.0], "capacity": [1.0, 1.0]}
    within_limits(100.0, rows)
    down1, up1 = limit_prices(100.0)
    assert rows["close"][0] == float(up1) == 110.0
    assert rows["close"][1] == float(limit_prices(110.0)[1]) == 121.0
    assert all(lo <= min(o, c) and max(o, c) <= hi for o, hi, lo, c in zip(rows["open"], rows["high"], rows["low"], rows["close"]))


def test_bestfour_calls_a_direction_and_moves_the_close_that_way(tsmc):
    model = BestFourBaseline()
    for end in range(len(tsmc) - 60, len(tsmc)):
        forecast = model.predict(tsmc.iloc[:end], 2)
        direction = forecast.info["direction"]
        change = forecast.frame["close"].iloc[0] - tsmc["close"].iloc[end - 1]
        assert direction in (-1, 0, 1) and np.sign(change) == direction
    assert model.direction_only


def test_bestfour_refuses_a_history_shorter_than_its_rules_need():
    with pytest.raises(StockLLMError, match="BestFourPoint"):
        BestFourBaseline().predict(geometric(5, 0.0), 1)


@pytest.mark.parametrize("spec", [s for s in VALID_SPECS if not s.startswith("llm:")])
def test_registry_builds_every_named_baseline(spec):
    model = make_forecaster(spec)
    assert model.name == spec
    assert isinstance(model, Forecaster)


def test_registry_rejects_an_unknown_model_in_one_line_listing_valid_ones():
    with pytest.raises(StockLLMError) as err:
        make_forecaster("prophet")
    message = str(err.value)
    assert "\n" not in message and "random_walk" in message and "llm:DIR" in message


def test_registry_requires_a_directory_for_llm():
    with pytest.raises(StockLLMError, match="model directory"):
        make_forecaster("llm:")


def test_model_list_parsing_refuses_empty_and_duplicate_entries():
    assert parse_model_list("random_walk, arima") == ["random_walk", "arima"]
    for bad in ("", " , ", "arima,arima"):
        with pytest.raises(StockLLMError):
            parse_model_list(bad)


def test_a_fine_tuned_model_counts_as_trained_until_the_end_of_its_train_split():
    info = {"data_range": {"train": {"first": "2023-03-01", "last": "2025-11-28"}, "validation": {"first": "2025-12-08", "last": "2026-01-16"},
                           "test": {"first": "2026-01-26", "last": "2026-06-23"}}}
    assert trained_until(info) == "2025-11-28"
    assert trained_until({}) is None
