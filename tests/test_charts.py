"""K-line charts: one PNG with past and forecast candles, Taiwan colours, CJK title or a soft fallback."""

from __future__ import annotations

import pytest
from PIL import Image

from stockllm import store
from stockllm.charts import DOWN, UP, cjk_font, kline_chart, price_limits
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import make_forecast


@pytest.fixture
def history():
    return store.read_price_csv(store.snapshot_dir() / "9921.csv").tail(15).reset_index(drop=True)


def forecast_of(history, interval: bool = False):
    close = float(history["close"].iloc[-1])
    closes = [close * 1.01, close * 0.99, close]
    rows = {"open": [close] * 3, "high": [c * 1.02 for c in closes], "low": [c * 0.97 for c in closes], "close": closes,
            "capacity": [1_000_000] * 3}
    if interval:
        rows.update(close_lo=[c * 0.98 for c in closes], close_hi=[c * 1.02 for c in closes])
    return make_forecast(history, rows, "llm")


def test_chart_is_a_png_with_red_up_and_green_down_candles(history, tmp_path):
    path = kline_chart(history, forecast_of(history, interval=True), tmp_path / "9921.png", title="9921 巨大")
    image = Image.open(path).convert("RGB")
    assert image.format is None or path.suffix == ".png"
    colours = {image.getpixel((x, y)) for x in range(0, image.width, 2) for y in range(0, image.height, 2)}
    assert tuple(int(UP[i:i + 2], 16) for i in (1, 3, 5)) in colours
    assert tuple(int(DOWN[i:i + 2], 16) for i in (1, 3, 5)) in colours
    assert not list(tmp_path.glob(".*.png")), "no temporary file is left behind"


def test_the_price_axis_spans_an_interval_wider_than_the_candles():
    low, high = price_limits([95.0, 105.0, 80.0, 130.0])
    assert low < 80.0 and high > 130.0 and high - low == pytest.approx(50.0 * 1.1)
    assert price_limits([100.0, 100.0]) == (99.0, 101.0)  # a flat line still gets an axis


def test_title_without_a_cjk_font_falls_back_to_the_code(history, tmp_path, monkeypatch):
    import stockllm.charts as charts

    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    assert kline_chart(history, forecast_of(history), tmp_path / "a.png", title="9921 巨大").exists()


def test_a_cjk_font_is_found_when_one_is_installed():
    font = cjk_font()
    if font is None:
        pytest.skip("no CJK font on this machine (make install adds one)")
    assert isinstance(font, str)


def test_chart_needs_a_png_name(history, tmp_path):
    with pytest.raises(StockLLMError, match="PNG"):
        kline_chart(history, forecast_of(history), tmp_path / "a.jpg")
