"""The web app: the CLI's steps behind a browser UI (Gradio), calling the same functions.

Tabs: companies with their latest stored prices; a forecast of any company by any forecaster (baselines,
LSTM/CNN, or a fine-tuned LLM model dir) drawn as a K-line chart; and a cost-aware backtest. Every handler
is a plain function (``companies_table``, ``forecast_company``, ``backtest_companies``) so tests and the
CLI can call it without a browser; user errors surface in the page as one-line messages.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from . import store
from .charts import kline_chart
from .errors import StockLLMError
from .forecasters.registry import BUILDERS, make_forecaster
from .universe import default_universe, resolve

BASELINE_CHOICES = list(BUILDERS)


def ensure_data(data_dir: Path | str) -> list[str]:
    """Stored codes; an empty data dir gets the bundled offline snapshot so the app always has data."""
    codes = store.stored_codes(data_dir)
    if not codes:
        store.install_snapshot(data_dir)
        codes = store.stored_codes(data_dir)
    return codes


def companies_table(data_dir: Path | str) -> pd.DataFrame:
    """One row per stored company of the universe: code, names, market, last date and close."""
    stored = set(ensure_data(data_dir))
    rows = []
    for company in default_universe():
        if company.code not in stored:
            continue
        last = store.read_prices(data_dir, company.code).iloc[-1]
        rows.append({"code": company.code, "name": company.name_zh, "name_en": company.name_en, "market": company.market,
                     "industry": company.industry, "last date": last["date"], "last close": last["close"]})
    return pd.DataFrame(rows)


def model_choices(model_dir: Path | str | None) -> list[str]:
    """Baselines, plus ``llm:<model_dir>`` when that folder holds a fine-tuned model."""
    choices = list(BASELINE_CHOICES)
    if model_dir and (Path(model_dir) / "training_info.json").exists():
        choices.insert(0, f"llm:{model_dir}")
    return choices


def forecast_company(data_dir: Path | str, code: str, model: str, past: int, horizon: int,
                     chart_dir: Path | str | None = None) -> tuple[pd.DataFrame, Path]:
    """Forecast ``horizon`` trading days of ``code`` with ``model``; (forecast table, K-line PNG of past + forecast)."""
    company = resolve(code)
    history = store.read_prices(data_dir, company.code)
    forecaster = make_forecaster(model)
    forecaster.fit({company.code: history})
    forecast = forecaster.predict(history, int(horizon), code=company.code)
    folder = Path(chart_dir or tempfile.mkdtemp(prefix="stockllm-app-"))
    chart = kline_chart(history.tail(int(past)), forecast, folder / f"{company.code}-{forecast.model}.png",
                        title=f"{company.code} {company.name_zh} — {forecast.model}")
    table = forecast.frame.round(2)
    table["capacity"] = table["capacity"].round().astype("Int64")
    return table.reset_index(), chart


def backtest_companies(data_dir: Path | str, codes: list[str], model: str, start: str, end: str,
                       cash: int = 1_000_000, out_dir: Path | str | None = None) -> tuple[dict, Path]:
    """Backtest ``model`` on ``codes`` between ``start`` and ``end``; (metrics by strategy, equity PNG)."""
    from .trading.backtest import buy_and_hold, run_backtest, write_report

    if not codes:
        raise StockLLMError("pick at least one company to backtest")
    prices = {c.code: store.read_prices(data_dir, c.code) for c in map(resolve, codes)}
    result = run_backtest(prices, make_forecaster(model), start, end, cash=int(cash))
    benchmark, gross = buy_and_hold(prices, start, end, cash=int(cash))
    folder = Path(out_dir or tempfile.mkdtemp(prefix="stockllm-backtest-"))
    report = write_report([result], benchmark, gross, folder, {"model": model, "codes": list(prices), "start": start, "end": end})
    return {"strategy": report["models"], "buy_and_hold": report["buy_and_hold"]}, folder / "equity.png"


def build_app(data_dir: Path | str = "data", model_dir: Path | str | None = "outputs/model"):
    """The Gradio Blocks UI over ``data_dir`` (filled from the snapshot if empty)."""
    import gradio as gr

    ensure_data(data_dir)
    labels = [f"{c.code} {c.name_zh}" for c in default_universe() if c.code in store.stored_codes(data_dir)]
    choices = model_choices(model_dir)

    def guarded(function):
        def handler(*args):
            try:
                return function(*args)
            except StockLLMError as exc:
                raise gr.Error(str(exc)) from None
        return handler

    def on_forecast(label: str, model: str, past: float, horizon: float):
        table, chart = forecast_company(data_dir, label.split()[0], model, int(past), int(horizon))
        return table, str(chart)

    def on_backtest(selected: list[str], model: str, start: str, end: str, cash: float):
        metrics, chart = backtest_companies(data_dir, [s.split()[0] for s in selected], model, start, end, int(cash))
        return metrics, str(chart)

    with gr.Blocks(title="stockllm") as app:
        gr.Markdown("# stockllm — Taiwan stock forecasts\nForecasts by a fine-tuned LLM or baselines, K-line charts, cost-aware backtests.")
        with gr.Tab("Companies"):
            gr.Dataframe(value=companies_table(data_dir), interactive=False)
        with gr.Tab("Forecast"):
            with gr.Row():
                company = gr.Dropdown(labels, value=labels[0] if labels else None, label="company")
                model = gr.Dropdown(choices, value=choices[0], label="model")
                past = gr.Slider(5, 120, value=40, step=1, label="past days shown")
                horizon = gr.Slider(1, 20, value=5, step=1, label="days to forecast")
            run = gr.Button("Forecast", variant="primary")
            table = gr.Dataframe(label="forecast")
            chart = gr.Image(label="K-line: past (filled) and forecast (hollow)", type="filepath")
            run.click(guarded(on_forecast), [company, model, past, horizon], [table, chart])
        with gr.Tab("Backtest"):
            with gr.Row():
                picks = gr.Dropdown(labels, value=labels[:3], multiselect=True, label="companies")
                bt_model = gr.Dropdown(choices, value="drift" if "drift" in choices else choices[0], label="model")
                start = gr.Textbox("2026-01-05", label="start (YYYY-MM-DD)")
                end = gr.Textbox("2026-05-12", label="end (YYYY-MM-DD)")
                cash = gr.Number(1_000_000, label="starting cash (NT$)")
            go = gr.Button("Backtest", variant="primary")
            metrics = gr.JSON(label="metrics (after fees 0.1425% min NT$20 and tax 0.3%)")
            equity = gr.Image(label="equity", type="filepath")
            go.click(guarded(on_backtest), [picks, bt_model, start, end, cash], [metrics, equity])
    return app
