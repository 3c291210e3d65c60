"""Forecast tab: several models forecast one company from an as-of day, drawn over what actually happened.

Judging a model means comparing it with the days that followed, so the forecast starts from an as-of day in
the past (by default a few weeks back) and the chart draws the real candles after it. The LLM's validity,
attempts, raw answer and prompt (with the news headlines it was given, when it was trained with news) are
shown in a panel of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import store
from ..dataset import DatasetSpec
from ..errors import StockLLMError
from ..forecasters.base import Forecast
from ..forecasters.registry import BUILDERS
from ..universe import Company
from .common import AppContext, find_company, label, parse_day
from .figures import forecast_figure
from .jobs import CancelToken, ModelFailed, Progress
from .page import cancel_button, error_box, info_box, notice, tab_job

DEFAULT_MODELS = ["random_walk", "drift"]
LLM_CHOICE = "llm"
DEFAULT_COMPANY = "2330"
TABLE_COLUMNS = ["model", "date", "open", "high", "low", "close", "close 80% low", "close 80% high", "volume (shares)",
                 "actual close", "error"]


def trained_windows(model_dir: Path | None) -> list[tuple[int, int]] | None:
    """The past:future windows a fine-tuned model dir was trained on, or None when it holds no trained model."""
    info_path = Path(model_dir) / "training_info.json" if model_dir else None
    if info_path is None or not info_path.exists():
        return None
    info = json.loads(info_path.read_text("utf-8"))
    return DatasetSpec.from_dict(info.get("dataset", {})).windows


def model_choices(model_dir: Path | None) -> list[tuple[str, str]]:
    """(label, value) pairs: every baseline, and the fine-tuned LLM (named by its folder, not a server path)."""
    choices = [(name, name) for name in BUILDERS]
    windows = trained_windows(model_dir)
    if windows is not None:
        futures = ", ".join(str(f) for f in sorted({f for _, f in windows}))
        choices.append((f"LLM {Path(model_dir).name} (trained for {futures} days ahead)", LLM_CHOICE))
    return choices


def spec_of(choice: str, model_dir: Path | None) -> str:
    """The registry spec behind a model choice (``llm`` is the app's fine-tuned model dir)."""
    return f"llm:{model_dir}" if choice == LLM_CHOICE else choice


@dataclass
class Comparison:
    """Forecasts of several models for one company and as-of day, with the days around it."""

    company: Company
    as_of: str
    data_as_of: str
    history: pd.DataFrame  # the days shown before (and including) the as-of day
    actual: pd.DataFrame  # what happened after it, up to the horizon
    forecasts: list[Forecast] = field(default_factory=list)
    failures: dict[str, ModelFailed] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def compare(ctx: AppContext, company: Company, choices: list[str], as_of: date, horizon: int, past: int,
            token: CancelToken, progress: Progress) -> Comparison:
    """Forecast ``horizon`` trading days after ``as_of`` with every chosen model; a failing model is reported, not fatal."""
    if not choices:
        raise StockLLMError("pick at least one model to forecast with")
    if not 1 <= horizon <= 60:
        raise StockLLMError(f"days to forecast must be between 1 and 60 (got {horizon})")
    prices = store.read_prices(ctx.data_dir, company.code).dropna(subset=["open", "high", "low", "close"]).reset_index(drop=True)
    upto = prices[prices["date"] <= as_of.isoformat()]
    if len(upto) < 2:
        raise StockLLMError(f"{company.code} has no stored prices up to {as_of} (its data start on {prices['date'].iloc[0]}); pick a later as-of date")
    origin = upto["date"].iloc[-1]
    notes = [] if origin == as_of.isoformat() else [f"{as_of} was not a trading day of {company.code}; forecasting from {origin}, the last one before it"]
    after = prices.iloc[len(upto): len(upto) + horizon]
    result = Comparison(company, origin, prices["date"].iloc[-1], upto.tail(past).reset_index(drop=True), after.reset_index(drop=True), notes=notes)
    windows = trained_windows(ctx.model_dir)
    for number, choice in enumerate(choices, 1):
        token.check()
        spec = spec_of(choice, ctx.model_dir)
        name = LLM_CHOICE if choice == LLM_CHOICE else spec
        progress.say(f"model {number}/{len(choices)}: {name}")
        if choice == LLM_CHOICE and windows and horizon not in {f for _, f in windows}:
            result.notes.append(f"the LLM was trained for {', '.join(str(f) for f in sorted({f for _, f in windows}))} days ahead, "
                                f"not {horizon}: its answer is outside what it learned")
        model = ctx.pool.bound(spec, token, lambda text, n=number, name=name: progress.say(f"model {n}/{len(choices)}: {text}"))
        try:
            model.fit({company.code: upto})
            forecast = model.predict(upto, horizon, code=company.code)
        except ModelFailed as exc:
            result.failures[name] = exc
            continue
        except StockLLMError as exc:
            if token.cancelled:
                raise
            result.failures[name] = ModelFailed(str(exc))
            continue
        forecast.model = name
        result.forecasts.append(forecast)
    return result


def forecast_table(result: Comparison) -> pd.DataFrame:
    """One row per model and forecast day, beside the actual close and the error when that day has happened."""
    actual = dict(zip(result.actual["date"], result.actual["close"]))
    rows = []
    for forecast in result.forecasts:
        frame = forecast.frame
        for day, row in frame.iterrows():
            real = actual.get(day)
            rows.append({
                "model": forecast.model, "date": day,
                **{column: round(float(row[column]), 2) for column in ("open", "high", "low", "close")},
                "close 80% low": round(float(row["close_lo"]), 2) if forecast.has_interval() else None,
                "close 80% high": round(float(row["close_hi"]), 2) if forecast.has_interval() else None,
                "volume (shares)": None if pd.isna(row["capacity"]) else f"{row['capacity']:,.0f}",
                "actual close": real,
                "error": None if real is None else f"{float(row['close']) / real - 1:+.2%}",
            })
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.dropna(axis=1, how="all") if len(table) else table


def summary(result: Comparison) -> str:
    """The headline: which company, from which day, how many real days exist to judge against, and any notes."""
    company = result.company
    judged = f"{len(result.actual)} real day(s) after it drawn for comparison" if len(result.actual) else "no later stored day to compare with yet"
    lines = [f"**{label(company)}** — forecast from **{result.as_of}**; {judged}. Data as of {result.data_as_of}."]
    lines += [f"- note: {n}" for n in result.notes]
    lines += [f"- **{name} failed**: {exc}" for name, exc in result.failures.items()]
    return "\n".join(lines)


def llm_panel(result: Comparison) -> str:
    """Validity, attempts, raw answer and prompt of every model that says how it answered (the LLM)."""
    parts = []
    for forecast in result.forecasts:
        info = forecast.info or {}
        if "attempts" not in info:
            continue
        verdict = "valid" if info.get("valid") else "**invalid**: " + "; ".join(info.get("problems") or [])
        parts.append(f"### {forecast.model}: {verdict}\n{info.get('parsed', 0)} of {len(info['attempts'])} attempts parsed.\n\n"
                     f"Raw answer:\n```text\n{forecast.raw_text or ''}\n```")
        messages = info.get("messages") or []
        if messages:
            parts.append("Prompt (with the news headlines it was given, when it was trained with news):\n```text\n"
                         + "\n\n".join(m.get("content", "") for m in messages) + "\n```")
    for name, failure in result.failures.items():
        if failure.attempts:
            tries = "\n".join(f"{n}. {a.get('reason') or '; '.join(a.get('problems') or []) or 'unusable'}:\n```text\n{a.get('text', '')}\n```"
                              for n, a in enumerate(failure.attempts, 1))
            parts.append(f"### {name}: no usable forecast\n{failure}\n\n{tries}")
    return "\n\n".join(parts) or "No LLM in this comparison. Add the LLM to the models to see its answers here."


def default_as_of(ctx: AppContext, code: str = DEFAULT_COMPANY, days_back: int = 10) -> str:
    """A stored day ``days_back`` trading days before the end, so a first forecast can be judged against reality."""
    codes = store.stored_codes(ctx.data_dir)
    dates = store.read_prices(ctx.data_dir, code if code in codes else codes[0])["date"]
    return dates.iloc[max(len(dates) - 1 - days_back, 0)]


# --- the tab -------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    """The Forecast tab's components and events (inside a ``gr.Blocks``)."""
    companies = ctx.companies()
    labels = [label(c) for c in companies]
    default = next((l for c, l in zip(companies, labels) if c.code == DEFAULT_COMPANY), labels[0])
    with gr.Row(equal_height=False):
        company = gr.Dropdown(labels, value=default, allow_custom_value=True, label="company (code, 中文 or English name)",
                              elem_id="forecast-company", scale=3, min_width=240)
        models = gr.Dropdown(model_choices(ctx.model_dir), value=DEFAULT_MODELS, multiselect=True, label="models",
                             elem_id="forecast-models", scale=3, min_width=240)
    with gr.Row(equal_height=False):
        as_of = gr.Textbox(default_as_of(ctx), label="as of (YYYY-MM-DD): forecast from this day", elem_id="forecast-as-of", min_width=160)
        horizon = gr.Slider(1, 20, value=5, step=1, label="trading days to forecast", elem_id="forecast-horizon", min_width=160)
        past = gr.Slider(10, 250, value=60, step=1, label="past days shown", elem_id="forecast-past", min_width=160)
    with gr.Row():
        run = gr.Button("Forecast", variant="primary", elem_id="forecast-run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="forecast-cancel")
    status = gr.HTML(notice("Pick a company and models, then press Forecast."), elem_id="forecast-status")
    headline = gr.Markdown(elem_id="forecast-summary")
    chart = gr.Plot(label="K-line: history, what actually happened, and each model's forecast", show_label=False, elem_id="forecast-chart")
    table = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS[:6]), label="forecast rows", interactive=False, wrap=False,
                         elem_id="forecast-table", max_height=420)
    with gr.Accordion("LLM: validity, attempts, raw answer and prompt", open=False):
        panel = gr.Markdown(elem_id="forecast-llm")

    outputs = [status, headline, chart, table, panel]

    def on_forecast(text: str, chosen: list[str], day: str, days: float, shown: float, request: gr.Request):
        skip = [gr.skip()] * (len(outputs) - 1)
        try:
            picked, origin = find_company(text, companies), parse_day(day, "as-of date")
        except StockLLMError as exc:
            yield error_box(str(exc)), *skip
            return
        def done(result: Comparison) -> tuple:
            figure = forecast_figure(f"{picked.code} {picked.name_zh} from {result.as_of}", result.history, result.actual, result.forecasts)
            box = (info_box if not result.failures else error_box)(
                f"{len(result.forecasts)} of {len(chosen)} model(s) forecast {int(days)} day(s)"
                + (f"; failed: {', '.join(result.failures)} (see below)" if result.failures else ""))
            return box, summary(result), figure, forecast_table(result), llm_panel(result)

        yield from tab_job(ctx, request, "forecast",
                           lambda token, progress: compare(ctx, picked, list(chosen or []), origin, int(days), int(shown), token, progress),
                           done, len(skip))

    run.click(on_forecast, [company, models, as_of, horizon, past], outputs, concurrency_id="forecast",
              concurrency_limit=8, show_progress="hidden")
    cancel_button(ctx, cancel, "forecast")
