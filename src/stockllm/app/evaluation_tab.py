"""Evaluation tab: the latest ``stockllm evaluate`` report, and a small evaluation run in the background.

The report is read generically from its ``metrics.json``: every nested object that looks like a table (rows of
named metrics) is shown as one, so tables the evaluation gains later (IC, top-k, …) appear without changes here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..errors import StockLLMError
from ..evaluate import parse_windows, run_evaluation
from ..evaluation_report import write_report
from ..forecasters.registry import BUILDERS
from .common import AppContext, find_company, label
from .jobs import CancelToken, Progress
from .page import cancel_button, error_box, info_box, notice, tab_job

SMALL_RUN = "app/evaluation"
"""Where the tab's own small evaluation writes its report, under the app's outputs folder."""
_COLUMN_KEY = re.compile(r"[\w.:%-]{1,24}")


def find_reports(root: Path) -> list[Path]:
    """Report folders under ``root`` (a ``metrics.json`` with per-window scores), newest first."""
    found = []
    for path in Path(root).glob("**/metrics.json"):
        try:
            if "windows" in json.loads(path.read_text("utf-8")):
                found.append(path.parent)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
    return sorted(found, key=lambda folder: (folder / "metrics.json").stat().st_mtime, reverse=True)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _row(record: dict) -> dict:
    """A record's scalar values, one level of nested metrics flattened (``dm p_value``); sentences-as-keys skipped."""
    row = {}
    for key, value in record.items():
        if _scalar(value):
            row[key] = value
        elif isinstance(value, dict) and all(_COLUMN_KEY.fullmatch(str(k)) for k in value):
            row.update({f"{key} {k}": v for k, v in value.items() if _scalar(v)})
    return row


def _is_table(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, dict) and any(_scalar(x) for x in v.values()) for v in obj.values())


def tables(obj: Any, title: str = "") -> list[tuple[str, pd.DataFrame]]:
    """Every table in a metrics object: a dict of records (rows named by their keys) or a list of records."""
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return [(title, pd.DataFrame([_row(v) for v in obj]))]
    if _is_table(obj):
        frame = pd.DataFrame.from_dict({k: _row(v) for k, v in obj.items()}, orient="index")
        return [(title, frame.dropna(axis=1, how="all").rename_axis("").reset_index())]
    if isinstance(obj, dict):
        return [t for key, value in obj.items() for t in tables(value, f"{title} › {key}" if title else str(key))]
    return []


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else float(f"{value:.4g}")
    return value


KEY_COLUMNS = ("mase", "dm p_value", "dm statistic", "mae", "rmse", "mape", "direction accuracy", "coverage80")
"""The figures a reader looks for first; every other column follows in the report's order."""


def _key_columns_first(frame: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in frame.columns if c == ""] + [c for c in KEY_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def report_view(folder: Path) -> tuple[str, list[tuple[str, pd.DataFrame]], list[str]]:
    """(summary markdown: settings and verdicts, tables, plot paths) of one report folder."""
    metrics = json.loads((Path(folder) / "metrics.json").read_text("utf-8"))
    settings = metrics.get("settings") or {}
    lines = [f"**Report** `{Path(folder).name}` — period {settings.get('start', '?')} → {settings.get('end', '?')}, "
             f"models learn from days before {settings.get('fit_end', '?')}; windows {', '.join(settings.get('windows') or [])}; "
             f"{len(settings.get('companies') or [])} companies."]
    if settings.get("command"):
        lines.append(f"Command: `{settings['command']}`")
    lines += [f"- {verdict}" for verdict in metrics.get("verdict") or []]
    found = tables({k: v for k, v in metrics.items() if k not in ("settings", "verdict")})
    shown = [(title, _key_columns_first(frame).map(_fmt)) for title, frame in found if len(frame)]
    plots = sorted(str(p) for p in Path(folder).glob("*.png"))
    return "\n".join(lines), shown, plots


def small_evaluation(ctx: AppContext, codes: list[str], models: list[str], windows: str, token: CancelToken, progress: Progress) -> Path:
    """Evaluate ``models`` on ``codes`` over the default held-out period; the report goes to ``outputs/app/evaluation``."""
    if not models:
        raise StockLLMError("pick at least one model to evaluate")

    def say(text: str) -> None:
        token.check()  # the evaluation reports between companies: a cancel stops it there
        progress.say(text.strip())

    companies = [find_company(code, ctx.companies()) for code in codes]
    result, scores = run_evaluation(ctx.data_dir, companies, parse_windows(windows), models, progress=say)
    folder = ctx.outputs / SMALL_RUN
    write_report(result, scores, folder, "stockllm app: small evaluation of " + ", ".join(models))
    return folder


# --- the tab -------------------------------------------------------------------------------------------------

MAX_TABLES = 12


def build(ctx: AppContext):
    """The tab's components and events; returns (function, outputs) to run when a page loads (the report list)."""
    companies = ctx.companies()
    labels = [label(c) for c in companies]
    gr.Markdown("Walk-forward evaluation: every model forecasts every day of a held-out period from the days before it; "
                "a relative MAE (rel. MAE) below 1 and a Diebold-Mariano p < 0.05 mean better than the random walk.")
    with gr.Row(equal_height=False):
        reports = gr.Dropdown([], label="report folder (newest first)", elem_id="evaluation-report", scale=3, min_width=240)
        reload = gr.Button("Reload", elem_id="evaluation-reload", scale=0, min_width=100)
    summary = gr.Markdown(elem_id="evaluation-summary")
    frames = [gr.Dataframe(visible=False, interactive=False, wrap=False) for _ in range(MAX_TABLES)]
    gallery = gr.Gallery(label="plots", columns=2, height=520, object_fit="contain", elem_id="evaluation-plots")
    with gr.Accordion("Run a small evaluation in the background", open=True):
        with gr.Row(equal_height=False):
            picks = gr.Dropdown(labels, value=[l for c, l in zip(companies, labels) if c.code in ("2330", "2317")], multiselect=True,
                                label="companies", elem_id="evaluation-companies", scale=2, min_width=240)
            models = gr.Dropdown(list(BUILDERS), value=["random_walk", "drift"], multiselect=True, label="models",
                                 elem_id="evaluation-models", scale=2, min_width=200)
            windows = gr.Textbox("1:1,5:5", label="windows past:future", elem_id="evaluation-windows", min_width=120)
        with gr.Row():
            run = gr.Button("Run evaluation", variant="primary", elem_id="evaluation-run")
            cancel = gr.Button("Cancel", variant="stop", elem_id="evaluation-cancel")
        status = gr.HTML(notice("Runs on the default held-out period (the last 10% of stored days); other tabs stay usable."),
                         elem_id="evaluation-status")

    def show(folder: str | None):
        if not folder:
            empty = [gr.update(visible=False)] * MAX_TABLES
            return (f"No evaluation report under `{ctx.outputs}` yet: run a small one below, or `stockllm evaluate --report {ctx.outputs}/evaluation`.",
                    *empty, [])
        try:
            text, found, plots = report_view(Path(folder))
        except (OSError, json.JSONDecodeError, StockLLMError) as exc:
            return (f"⚠ cannot read the report in {folder}: {exc}", *[gr.update(visible=False)] * MAX_TABLES, [])
        updates = [gr.update(value=frame, label=title, visible=True) for title, frame in found[:MAX_TABLES]]
        updates += [gr.update(visible=False)] * (MAX_TABLES - len(updates))
        if len(found) > MAX_TABLES:
            text += f"\n\n({len(found) - MAX_TABLES} more tables are in metrics.json.)"
        return text, *updates, plots

    def refresh(selected: str | None = None):
        folders = [str(p) for p in find_reports(ctx.outputs)]
        chosen = selected if selected in folders else (folders[0] if folders else None)
        labels = [(str(Path(f).relative_to(ctx.outputs)), f) for f in folders]
        return gr.update(choices=labels, value=chosen), *show(chosen)

    def on_run(selected: list[str], chosen: list[str], text: str, request: gr.Request):
        view = [reports, summary, *frames, gallery]
        skip = [gr.skip()] * len(view)
        try:
            codes = [find_company(s, companies).code for s in selected or []]
            if not codes:
                raise StockLLMError("pick at least one company to evaluate")
            parse_windows(text)
        except StockLLMError as exc:
            yield error_box(str(exc)), *skip
            return
        yield from tab_job(ctx, request, "evaluation",
                           lambda token, progress: small_evaluation(ctx, codes, list(chosen or []), text, token, progress),
                           lambda folder: (info_box(f"evaluation written to {folder}"), *refresh(str(folder))), len(skip))

    view = [reports, summary, *frames, gallery]
    reload.click(refresh, [reports], view, show_progress="hidden")
    reports.input(lambda folder: show(folder), [reports], [summary, *frames, gallery], show_progress="hidden")
    run.click(on_run, [picks, models, windows], [status, *view], concurrency_id="evaluation", concurrency_limit=2, show_progress="hidden")
    cancel_button(ctx, cancel, "evaluation")
    return refresh, view
