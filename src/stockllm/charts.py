"""K-line (candlestick) charts of past days and a forecast, in Taiwan's colours (red up, green down).

One chart holds both: the real past candles, then the forecast candles drawn hollow (white body,
coloured edge) over a shaded band labelled "forecast", with the 80% close interval as dashed lines when
the forecast has one, and a volume panel. The company's Chinese name needs a CJK font; the first one
matplotlib finds is used, and without one the title falls back to the stock code (never tofu boxes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import store
from .errors import StockLLMError
from .forecasters.base import Forecast

CJK_FONTS = ("Noto Sans CJK TC", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans TC", "WenQuanYi Micro Hei",
             "WenQuanYi Zen Hei", "Microsoft JhengHei", "PingFang TC", "Heiti TC", "AR PL UMing TW", "Arial Unicode MS")
UP, DOWN = "#d62728", "#2ca02c"  # Taiwan: red rises, green falls
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def cjk_font() -> str | None:
    """The name of an installed font that can draw Chinese, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _ohlcv(frame: pd.DataFrame) -> pd.DataFrame:
    """mplfinance's column names, indexed by datetime."""
    table = pd.DataFrame({
        "Open": frame["open"].astype(float), "High": frame["high"].astype(float),
        "Low": frame["low"].astype(float), "Close": frame["close"].astype(float),
        "Volume": pd.to_numeric(frame["capacity"], errors="coerce").astype(float) if "capacity" in frame else float("nan"),
    })
    return table


def price_limits(prices: list[float]) -> tuple[float, float]:
    """The price axis spanning ``prices`` with a 5% margin. mplfinance fits the axis to the candles alone, which
    would cut off an interval line reaching beyond them."""
    low, high = float(min(prices)), float(max(prices))
    pad = 0.05 * (high - low) or 0.01 * abs(high) or 1.0
    return low - pad, high + pad


def kline_chart(history: pd.DataFrame, forecast: Forecast, path: Path | str, title: str = "") -> Path:
    """Save a PNG of ``history`` (store format) followed by ``forecast``; returns the path."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # CJK fonts ship one weight: fine
    import mplfinance as mpf

    if len(history) == 0 or forecast.horizon == 0:
        raise StockLLMError("a chart needs at least one past day and one forecast day")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise StockLLMError(f"charts are saved as PNG; give a file name ending in .png instead of {path.name}")
    past = _ohlcv(history.set_index(pd.to_datetime(history["date"])))
    ahead = _ohlcv(forecast.frame.set_index(pd.to_datetime(forecast.frame.index)))
    table = pd.concat([past, ahead])
    font = cjk_font()
    if _CJK.search(title) and font is None:
        title = _CJK.sub("", title).strip() or "forecast"

    colours = mpf.make_marketcolors(up=UP, down=DOWN, edge="inherit", wick="inherit", volume="inherit")
    hollow = mpf.make_marketcolors(up="white", down="white", edge={"up": UP, "down": DOWN}, wick={"up": UP, "down": DOWN},
                                   volume={"up": "#f4b6b6", "down": "#b6e0b6"})
    rc = {"font.family": [font, "DejaVu Sans"]} if font else {}
    style = mpf.make_mpf_style(base_mpf_style="default", marketcolors=colours, gridstyle=":", rc=rc)
    overrides = [None] * len(past) + [hollow] * len(ahead)
    extra = []
    options: dict = {}
    if forecast.has_interval():
        bounds = forecast.frame[["close_lo", "close_hi"]].to_numpy(dtype=float)
        for column, values in zip(("close_lo", "close_hi"), bounds.T):
            series = pd.Series(float("nan"), index=table.index)
            series.iloc[len(past):] = values
            extra.append(mpf.make_addplot(series, color="#7f7f7f", linestyle="--", width=1))
        options["addplot"] = extra  # mplfinance rejects addplot=None
        options["ylim"] = price_limits([table["Low"].min(), table["High"].max(), bounds.min(), bounds.max()])
    volume = bool(table["Volume"].notna().any())
    fig, axes = mpf.plot(table, type="candle", style=style, volume=volume, **options,
                         marketcolor_overrides=overrides, mco_faceonly=False, returnfig=True, figsize=(10, 6),
                         title=title, ylabel="price (TWD)", ylabel_lower="volume (shares)" if volume else "",
                         datetime_format="%m-%d", xrotation=45, tight_layout=True, warn_too_much_data=10_000)
    for axis in axes[:: 2]:
        axis.axvspan(len(past) - 0.5, len(table) - 0.5, color="#ffdf80", alpha=0.25, zorder=0)
    if volume:  # mplfinance colours volume bars by direction only: fade and hatch the forecast's
        bars = [bar for container in axes[2].containers for bar in container]
        for bar in bars[len(past):]:
            bar.set_alpha(0.4)
            bar.set_hatch("///")
    axes[0].text(len(past) - 0.4, axes[0].get_ylim()[1], " forecast", va="top", ha="left", fontsize=9, color="#8a6d00")
    return store.atomic_save_figure(fig, path, dpi=110)
