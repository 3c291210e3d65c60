"""Shared command-line plumbing: options generated from the settings dataclasses, output helpers.

The write-up's flags are declared once, in :mod:`stockllm.config`; both ``stockllm`` subcommands and
``main.py`` get them from :func:`add_settings_args`, so a default or help text never differs between them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import DataConfig, TrainConfig, field_specs

DEFAULT_WINDOWS = "1:1,5:5,20:5,60:20"


def add_settings_args(parser: argparse.ArgumentParser, cls: type, only: list[str] | None = None) -> None:
    """Add one option per field of settings dataclass ``cls`` (``--field-name``, or its ``flag``)."""
    group = parser.add_argument_group(cls.__doc__.splitlines()[0] if cls.__doc__ else cls.__name__)
    for name, default, meta in field_specs(cls):
        if only is not None and name not in only:
            continue
        flag = meta.get("flag") or "--" + name.replace("_", "-")
        help_text = f"{meta['help']} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action="store_true", default=default, help=help_text)
        else:
            kind = type(default) if default is not None else str
            group.add_argument(flag, dest=name, type=kind, default=default, help=help_text)


def add_data_args(parser: argparse.ArgumentParser, only: list[str] | None = None) -> None:
    add_settings_args(parser, DataConfig, only)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    add_settings_args(parser, TrainConfig)


def add_codes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codes", nargs="+", metavar="CODE", help="stock codes or names to use instead of the company list, or `all` for every company stored in the data dir (default: the company list)")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """Options that shape training examples; shared by ``build``, ``train`` and ``main.py``."""
    group = parser.add_argument_group("dataset")
    group.add_argument("--windows", default=DEFAULT_WINDOWS, help=f"past:future windows in trading days, comma separated (default: {DEFAULT_WINDOWS})")
    group.add_argument("--fields", default="seed-example", help="field set: seed-example, all, no-capacity, ohlc-transaction (default: seed-example)")
    group.add_argument("--context", default="none", help="extra prompt context: none, news, signals, news+signals (default: none)")
    group.add_argument("--stride", type=int, default=1, help="trading days between consecutive window starts (default: 1, the full sliding set)")
    group.add_argument("--top-k-news", type=int, default=5, help="headlines placed in a prompt with --context news (default: 5)")
    group.add_argument("--val-start", default=None, help="first date of the validation split, YYYY-MM-DD (default: by --val-frac)")
    group.add_argument("--test-start", default=None, help="first date of the test split, YYYY-MM-DD (default: by --test-frac)")
    group.add_argument("--val-frac", type=float, default=0.1, help="fraction of the trading days (over all companies, one shared boundary date) for validation (default: 0.1)")
    group.add_argument("--test-frac", type=float, default=0.1, help="fraction of the trading days (over all companies, one shared boundary date) for test (default: 0.1)")
    group.add_argument("--gap", type=int, default=None, help="trading days between splits that no example of the earlier split touches (default: the longest future window)")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=1, default=str)
    sys.stdout.write("\n")


def info(message: str) -> None:
    """Progress and explanations go to stderr, so stdout stays machine-readable with --json."""
    print(message, file=sys.stderr, flush=True)

