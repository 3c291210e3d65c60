"""The page's shared look: status boxes that stay until the next action, and CSS for phones and dark mode."""

from __future__ import annotations

import html

import gradio as gr

from .common import session_of
from .jobs import run_job

CSS = """
.stockllm-status { padding: 0.6em 0.9em; border-radius: 6px; border: 1px solid; margin: 0.2em 0; line-height: 1.4; }
.stockllm-status.note { border-color: rgba(128,128,128,0.4); }
.stockllm-status.busy { border-color: #1f77b4; background: rgba(31,119,180,0.10); }
.stockllm-status.ok { border-color: #2ca02c; background: rgba(44,160,44,0.10); }
.stockllm-status.error { border-color: #d62728; background: rgba(214,39,40,0.12); font-weight: 600; }
.stockllm-status.error::before { content: "⚠ "; }
.js-plotly-plot, .plot-container { max-width: 100%; }
@media (max-width: 480px) {
  .gradio-container { padding: 4px !important; }
  .stockllm-status { font-size: 0.95em; }
  .tab-container button, button[role="tab"] { padding: 4px 8px !important; }
}
"""


def _box(kind: str, text: str) -> str:
    return f'<div class="stockllm-status {kind}" role="status">{html.escape(text)}</div>'


def notice(text: str) -> str:
    """A neutral hint (what to do next)."""
    return _box("note", text)


def info_box(text: str) -> str:
    """A finished job's outcome."""
    return _box("ok", text)


def error_box(text: str) -> str:
    """A problem in one readable line; it stays on the page until the next action replaces it."""
    return _box("error", text)


def status_box(kind: str, text: str) -> str:
    """The box for one :func:`~stockllm.app.jobs.run_job` event: progress, cancelled or error."""
    return {"progress": lambda t: _box("busy", t), "cancelled": lambda t: _box("note", t.capitalize()), "error": error_box}[kind](text)


def tab_job(ctx, request, tab: str, work, done, waiting: int):
    """Run ``work(token, progress)`` as this session's job of ``tab``, yielding the tab's outputs: a status box (and
    ``waiting`` untouched outputs) while it runs or when it fails, ``done(result)`` when it finishes."""
    session = session_of(request)
    token = ctx.board.start(session, tab)
    try:
        for kind, payload in run_job(lambda progress: work(token, progress), token):
            yield done(payload) if kind == "done" else (status_box(kind, payload), *[gr.skip()] * waiting)
    finally:
        ctx.board.finish(session, tab, token)


def cancel_button(ctx, button, tab: str) -> None:
    """Wire ``button`` to cancel this session's job of ``tab`` (outside the queue, so it acts while the job runs)."""
    def cancel(request: gr.Request) -> None:
        ctx.board.cancel(session_of(request), tab)

    button.click(cancel, None, None, queue=False)
