"""The write-up's entry point: ``python main.py --train 1 --company-list-file F`` (or ``--train 0`` to forecast).

A thin shim over the ``stockllm`` commands: ``--train 1`` collects data when missing, builds the dataset and
fine-tunes (``stockllm train``); ``--train 0`` forecasts with the fine-tuned model (``stockllm predict``).
Every argument of the write-up is accepted with its spelling; ``python main.py --help`` lists their defaults.
"""

from __future__ import annotations

import argparse
import sys

from stockllm.cli import run
from stockllm.cli.common import Parser, add_data_args, add_dataset_args, add_train_args
from stockllm.cli.model import add_predict_args


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description="Stock price prediction with an LLM fine-tuned with LoRA (the write-up's main.py).")
    parser.add_argument("--train", type=int, choices=[0, 1], default=1, help="1: train, 0: inference (default: 1)")
    add_data_args(parser)
    add_train_args(parser)
    add_dataset_args(parser)
    add_predict_args(parser)
    parser.add_argument("--resume", action="store_true", help="resume training from the last checkpoint in --output-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from stockllm.cli import model

    args.codes = None
    args.func = model.run_train_writeup if args.train == 1 else model.run_predict
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
