"""``stockllm app``: the web UI (same calls as the CLI)."""

from __future__ import annotations

import argparse

from .common import add_data_args, info


def register(sub: argparse._SubParsersAction) -> None:
    app = sub.add_parser("app", help="web app: companies, K-line forecasts by any model, backtests")
    add_data_args(app, only=["data_dir"])
    app.add_argument("--model-dir", default="outputs/model", help="fine-tuned model dir offered as llm:DIR when present (default: outputs/model)")
    app.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    app.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    app.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from ..app import build_app

    info(f"stockllm app on http://{args.host}:{args.port} (data: {args.data_dir}); Ctrl-C to stop")
    build_app(args.data_dir, args.model_dir).launch(server_name=args.host, server_port=args.port)
    return 0
