"""The ``stockllm`` command: one subcommand per step of the pipeline.

Each subcommand lives in a small module of this package that exposes ``register(subparsers)``; user
errors (:class:`~stockllm.errors.StockLLMError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import StockLLMError
from . import app, data, dataset, demo, evaluate, model, trading
from .common import Parser

MODULES = [data, dataset, model, evaluate, trading, app, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="stockllm",
        description="Forecast Taiwan stock prices (TWSE/TPEx) with a fine-tuned LLM and compare it with baselines.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in MODULES:
        module.register(sub)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed command, turning user errors into one line on stderr."""
    try:
        return int(args.func(args) or 0)
    except StockLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; finished files are kept, re-run to resume", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
