"""``stockllm app``: the web UI (same calls as the CLI)."""

from __future__ import annotations

import argparse

from .common import not_built


def register(sub: argparse._SubParsersAction) -> None:
    app = sub.add_parser("app", help="web app: companies, charts, forecasts, evaluation and paper trading")
    app.set_defaults(func=not_built("stockllm app", 7))
