"""``stockllm app``: the web UI (same calls as the CLI)."""

from __future__ import annotations

import argparse

from .common import add_data_args, info, port


def register(sub: argparse._SubParsersAction) -> None:
    app = sub.add_parser("app", help="web app: forecasts vs what happened, evaluation, backtests, trading, data",
                         description="Serve the web app: compare models' forecasts with what happened, read evaluation "
                                     "reports, backtest, trade on the exchange and refresh data, in the browser.")
    add_data_args(app, only=["data_dir"])
    app.add_argument("--model-dir", default="outputs/model", help="fine-tuned model dir offered as the LLM when it holds a trained model (default: outputs/model)")
    app.add_argument("--outputs", default="outputs", help="folder searched for evaluation reports and holding the app's backtests and order log (default: outputs)")
    app.add_argument("--exchange-url", default=None, help="stock_api base URL to trade on (default: $STOCK_API_URL, else the bundled local exchange)")
    app.add_argument("--exchange-db", default="exchange.sqlite", help="database of the bundled local exchange (default: exchange.sqlite)")
    app.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    app.add_argument("--port", type=port, default=7860, help="port (default: 7860)")
    app.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    import os

    from ..app.ui import build_app, close, serve

    url = args.exchange_url or os.environ.get("STOCK_API_URL")
    ui = build_app(args.data_dir, args.model_dir, outputs=args.outputs, exchange_url=url, exchange_db=args.exchange_db)
    info(f"stockllm app on http://{args.host}:{args.port} (data: {args.data_dir}); Ctrl-C to stop")
    try:
        serve(ui, args.host, args.port)
    finally:
        close(ui)
    return 0
