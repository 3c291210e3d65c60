"""Interactive Plotly charts for the app: K-lines in Taiwan's colours (red up, green down) and equity curves.

The x axis lists trading days as ``YYYY-MM-DD`` categories, so the year is always on the axis and weekends or
holidays leave no gaps. Backgrounds are transparent and the text mid-grey, readable in light and dark mode.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..forecasters.base import Forecast

TAIWAN_UP, TAIWAN_DOWN = "#d62728", "#2ca02c"
MODEL_COLOURS = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
INK = "#888888"


def _layout(figure: go.Figure, title: str, yaxis: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font={"color": INK},
        margin={"l": 56, "r": 16, "t": 48, "b": 8}, height=480, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0},
        xaxis={"type": "category", "rangeslider": {"visible": False}, "nticks": 8, "tickangle": -30,
               "gridcolor": "rgba(128,128,128,0.2)", "title": None},
        yaxis={"title": yaxis, "gridcolor": "rgba(128,128,128,0.2)", "tickformat": ",~f"},
    )
    return figure


def _candles(frame: pd.DataFrame, dates: list[str], name: str, opacity: float = 1.0) -> go.Candlestick:
    return go.Candlestick(x=dates, open=frame["open"], high=frame["high"], low=frame["low"], close=frame["close"], name=name,
                          increasing={"line": {"color": TAIWAN_UP}, "fillcolor": TAIWAN_UP},
                          decreasing={"line": {"color": TAIWAN_DOWN}, "fillcolor": TAIWAN_DOWN},
                          opacity=opacity)


def forecast_figure(title: str, history: pd.DataFrame, actual: pd.DataFrame, forecasts: list[Forecast]) -> go.Figure:
    """Past candles up to the as-of day, what actually happened after it (fainter candles), and each model's forecast
    close as a dotted line over them (its open/high/low on hover) with its 80% interval as a band when it has one."""
    figure = go.Figure()
    figure.add_trace(_candles(history, list(history["date"]), "history"))
    if len(actual):
        figure.add_trace(_candles(actual, list(actual["date"]), "actual", opacity=0.45))
    for number, forecast in enumerate(forecasts):
        colour, dates, frame = MODEL_COLOURS[number % len(MODEL_COLOURS)], list(forecast.frame.index), forecast.frame
        if forecast.has_interval():
            figure.add_trace(go.Scatter(x=dates + dates[::-1], y=list(frame["close_hi"]) + list(frame["close_lo"])[::-1],
                                        fill="toself", fillcolor=colour, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                        name=f"{forecast.model} 80%", legendgroup=forecast.model))
        figure.add_trace(go.Scatter(x=dates, y=frame["close"], mode="lines+markers", name=f"{forecast.model} forecast",
                                    line={"color": colour, "width": 2, "dash": "dot"}, marker={"size": 7, "color": colour},
                                    customdata=frame[["open", "high", "low"]].to_numpy(), legendgroup=forecast.model,
                                    hovertemplate="%{fullData.name}: open %{customdata[0]:,.2f} high %{customdata[1]:,.2f} "
                                                  "low %{customdata[2]:,.2f} close %{y:,.2f}<extra></extra>"))
    if len(history):
        figure.add_vline(x=len(history) - 0.5, line={"color": INK, "dash": "dash", "width": 1})
        figure.add_annotation(x=len(history) - 0.5, y=1, yref="paper", text=f"as of {history['date'].iloc[-1]}", showarrow=False,
                              xanchor="right", yanchor="bottom", font={"size": 11, "color": INK})
    return _layout(figure, title, "price (NT$)")


def equity_figure(curves: dict[str, pd.Series]) -> go.Figure:
    """Equity in NT$ of each strategy and of buy-and-hold over the backtest's days."""
    figure = go.Figure()
    for number, (name, curve) in enumerate(curves.items()):
        figure.add_trace(go.Scatter(x=list(curve.index), y=list(curve.values), mode="lines", name=name,
                                    line={"color": MODEL_COLOURS[number % len(MODEL_COLOURS)], "width": 2}))
    return _layout(figure, "Equity after fees and tax", "equity (NT$)")
