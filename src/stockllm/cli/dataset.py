"""``stockllm build``: chat-format fine-tuning sets (train / validation / test JSONL)."""

from __future__ import annotations

import argparse

from .common import add_codes_arg, add_data_args, add_dataset_args, not_built


def register(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build", help="build the fine-tuning dataset (four windows, field sets, optional news context)")
    add_data_args(build, only=["data_dir", "company_list_file"])
    add_codes_arg(build)
    add_dataset_args(build)
    build.add_argument("--out", default="outputs/dataset", help="output folder for train/validation/test JSONL (default: outputs/dataset)")
    build.set_defaults(func=not_built("stockllm build", 3))
