"""The Gradio page: one tab per module, wired to an :class:`~.common.AppContext`, and how it is served."""

from __future__ import annotations

from pathlib import Path

from . import backtest_tab, data_tab, evaluation_tab, forecast_tab, trading_tab
from ..threaded_server import ThreadedServer
from .common import AppContext
from .page import CSS

TITLE = "stockllm — Taiwan stock forecasts"
RELAYOUT = "() => { setTimeout(() => window.dispatchEvent(new Event('resize')), 50); }"
"""Plotly sizes a chart when drawn; one drawn in a hidden tab is re-fitted to its width when the tab is shown."""


def build_app(data_dir: Path | str = "data", model_dir: Path | str | None = "outputs/model", *, outputs: Path | str = "outputs",
              exchange_url: str | None = None, exchange_db: Path | str = "exchange.sqlite"):
    """The Blocks UI over ``data_dir`` (filled from the bundled snapshot when empty); ``ui.stockllm`` holds its context."""
    import gradio as gr

    ctx = AppContext(Path(data_dir), Path(model_dir) if model_dir else None, Path(outputs), exchange_url, Path(exchange_db))
    with gr.Blocks(title="stockllm", delete_cache=(3600, 3600)) as ui:
        gr.Markdown(f"# {TITLE}\nCompare forecasts by a fine-tuned LLM and baselines with what really happened, "
                    "backtest them with Taiwan's fees and tax, and trade on the exchange.")
        with gr.Tab("Forecast", id="forecast") as forecast:
            forecast_tab.build(ctx)
        with gr.Tab("Evaluation", id="evaluation") as evaluation:
            load_reports, report_view = evaluation_tab.build(ctx)
        with gr.Tab("Backtest", id="backtest") as backtest:
            backtest_tab.build(ctx)
        with gr.Tab("Trading", id="trading") as trading:
            trading_tab.build(ctx)
        with gr.Tab("Data", id="data") as data:
            load_data, data_view = data_tab.build(ctx)
        for tab in (forecast, evaluation, backtest, trading, data):
            tab.select(None, None, None, js=RELAYOUT, queue=False)
        ui.load(load_reports, None, report_view, show_progress="hidden")
        ui.load(load_data, None, data_view, show_progress="hidden")
    ui.queue(default_concurrency_limit=4)
    ui.stockllm = ctx
    return ui


def asgi(ui):
    """The page as an ASGI app (``ui`` mounted on FastAPI with the app's CSS, files under ``outputs`` downloadable)."""
    import gradio as gr
    from fastapi import FastAPI

    return gr.mount_gradio_app(FastAPI(), ui, path="", css=CSS, footer_links=[], show_error=False,
                               allowed_paths=[str(ui.stockllm.outputs.resolve())])


def serve(ui, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve ``ui`` until interrupted (``stockllm app``)."""
    import uvicorn

    uvicorn.run(asgi(ui), host=host, port=port, log_level="warning")


class Background(ThreadedServer):
    """``ui`` served from a thread on a free port (tests, screenshots): ``with Background(ui) as url: ...``."""

    def __init__(self, ui, host: str = "127.0.0.1"):
        super().__init__(asgi(ui), host=host, what="the web app's server", name="stockllm-app")
        self.ui = ui

    def __enter__(self) -> str:
        return super().__enter__() + "/"

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        close(self.ui)


def close(ui) -> None:
    """End ``ui``'s worker processes and the local exchange it started."""
    ui.stockllm.pool.close()
    trading_tab.stop_exchange(ui.stockllm)
