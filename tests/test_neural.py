"""LSTM and CNN forecasters: leak-free time split, learning a plain pattern, valid forecasts, fast tiny nets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockllm import store
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import future_dates
from stockllm.forecasters.neural import NeuralForecaster, normalise_windows, split_window_starts
from stockllm.market import next_trading_days
from stockllm.validation import validate_forecast


def trending(days: int, rate: float, seed: int) -> pd.DataFrame:
    """Closes rising by ``rate`` a day with a little noise; candles and volume around them."""
    rng = np.random.default_rng(seed)
    dates = ["2024-01-02"] + [d.isoformat() for d in next_trading_days("2024-01-02", days - 1)]
    close = 50.0 * np.exp(np.cumsum(rate + rng.normal(0, 0.001, days)))
    return pd.DataFrame({"date": dates, "capacity": rng.integers(1000, 2000, days), "open": close * 0.998,
                         "high": close * 1.01, "low": close * 0.99, "close": close})


def tiny(kind: str, **options) -> NeuralForecaster:
    return NeuralForecaster(kind, hidden=8, epochs=options.pop("epochs", 3), **options)


@pytest.mark.parametrize("count,span", [(100, 2), (50, 10), (12, 6), (3, 1)])
def test_training_windows_end_before_the_first_validation_input_day(count, span):
    train, val = split_window_starts(count, span, 0.15)
    assert val.stop == count and val.start < count
    if train.stop > 0:
        last_train_day = (train.stop - 1) + span - 1
        assert last_train_day < val.start


def test_window_features_are_relative_to_the_last_input_close_and_ignore_the_future():
    rows = np.array([[10, 11, 9, 10, 100], [10, 12, 10, 11, 300], [11, 13, 11, 12, 200]], dtype=float)
    features = normalise_windows(rows, past=2)
    np.testing.assert_allclose(features[1, :4], np.log([10 / 11, 12 / 11, 10 / 11, 1.0]))
    changed = rows.copy()
    changed[2] *= 5  # a different future changes nothing about the inputs
    np.testing.assert_allclose(normalise_windows(changed, past=2)[:2], features[:2])


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_network_learns_a_steady_uptrend(kind):
    histories = {str(i): trending(160, 0.01, seed=i) for i in range(4)}
    model = tiny(kind, epochs=15, learning_rate=1e-2).fit(histories)
    history = trending(40, 0.01, seed=99)
    forecast = model.predict(history.tail(5), 3)
    ratios = forecast.frame["close"].to_numpy() / history["close"].iloc[-1]
    assert np.all(ratios > 1.0), f"{kind} should continue an uptrend it was trained on, got {ratios}"


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_network_forecasts_are_valid_trading_records_on_real_prices(kind):
    frames = {code: store.read_price_csv(store.snapshot_dir() / f"{code}.csv").tail(260) for code in ("2330", "2317", "9921")}
    model = tiny(kind).fit({code: f.iloc[:-30] for code, f in frames.items()})
    history = frames["2317"].tail(5)
    forecast = model.predict(history, 5, code="2317")
    assert forecast.model == kind
    assert validate_forecast(forecast.frame, float(history["close"].iloc[-1]), future_dates(history, 5)) == []
    assert model.prepare(5, 5).epochs <= 3


def test_training_is_deterministic_for_a_seed():
    histories = {str(i): trending(80, 0.002, seed=i) for i in range(2)}
    history = trending(20, 0.002, seed=7).tail(5)
    first = tiny("cnn").fit(histories).predict(history, 2)
    second = tiny("cnn").fit(histories).predict(history, 2)
    pd.testing.assert_frame_equal(first.frame, second.frame)


def test_predicting_before_fitting_says_to_fit_first():
    with pytest.raises(StockLLMError, match="not been fitted"):
        tiny("lstm").predict(trending(10, 0.0, seed=1), 1)


def test_too_little_training_history_is_a_clear_error():
    model = tiny("lstm").fit({"1": trending(6, 0.0, seed=1)})
    with pytest.raises(StockLLMError, match="too little history"):
        model.prepare(5, 5)


def test_unknown_network_kind_is_refused():
    with pytest.raises(StockLLMError, match="lstm or cnn"):
        NeuralForecaster("gru")
