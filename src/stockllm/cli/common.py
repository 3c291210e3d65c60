"""Shared command-line plumbing: options generated from the settings dataclasses, output helpers.

The write-up's flags are declared once, in :mod:`stockllm.config`; both ``stockllm`` subcommands and
``main.py`` get them from :func:`add_settings_args`, so a default or help text never differs between them.

Argument types (:func:`iso_date`, :func:`positive_int`, :func:`finite_float`, :func:`output_folder`, …)
check a value where argparse reads it, so every command refuses a bad one the same way: one line
``error: …`` and exit status 2 (:class:`Parser`), before anything is loaded or written.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any, Callable

from ..config import PRECISIONS, DataConfig, TrainConfig, field_specs
from ..trading.rules import MAX_CASH

DEFAULT_WINDOWS = "1:1,5:5,20:5,60:20"
FIRST_PRICE_YEAR = 2010
"""The earliest year TWSE's STOCK_DAY serves (TPEx's daily pages go back further, to 2007)."""


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are the project's one line ``error: …`` with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _checked(name: str, check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from ``check`` (value → converted value, ValueError with the reason)."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    convert.__name__ = name  # argparse names the type in its messages
    return convert


def _iso_date(text: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError("not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError("not a calendar date") from None


def _int_in(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    def check(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise ValueError("not a whole number") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {what or 'a whole number'} from {low}" + ("" if high is None else f" to {high}"))
        return value

    return check


def _float_in(low: float | None, high: float | None, low_open: bool) -> Callable[[str], float]:
    def check(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise ValueError(f"must be {'above' if low_open else 'at least'} {low:g}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high:g}")
        return value

    return check


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder: it or one of its existing parents is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else ("is a file, not a folder" if candidate == path else f"lies under {candidate}, which is a file")
    return None


def _folder(text: str) -> str:
    problem = _folder_problem(Path(text))
    if problem:
        raise ValueError(problem + "; give a folder")
    return text


def _output_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise ValueError("is a folder; give a file name")
    problem = _folder_problem(path.parent)
    if problem:
        raise ValueError(f"cannot be written: its folder {path.parent} {problem}")
    return text


def _input_file(text: str) -> str:
    path = Path(text)
    if not path.exists():
        raise ValueError("does not exist")
    if not path.is_file():
        raise ValueError("is not a file")
    return text


def _year(text: str) -> int:
    return _int_in(FIRST_PRICE_YEAR, date.today().year, "a year the exchanges serve,")(text)


iso_date = _checked("date", _iso_date)
positive_int = _checked("positive whole number", _int_in(1))
non_negative_int = _checked("whole number", _int_in(0))
port = _checked("port", _int_in(1, 65535, "a TCP port"))
month = _checked("month", _int_in(1, 12, "a month"))
year = _checked("year", _year)
cash = _checked("NT$ amount", _int_in(0, MAX_CASH, "NT$"))
positive_cash = _checked("NT$ amount", _int_in(1, MAX_CASH, "NT$"))
finite_float = _checked("number", _float_in(None, None, False))
non_negative_float = _checked("number", _float_in(0.0, None, False))
positive_float = _checked("positive number", _float_in(0.0, None, True))
fraction = _checked("fraction", _float_in(0.0, 1.0, True))
folder = _checked("folder", _folder)
output_folder = folder
output_file = _checked("output file", _output_file)
input_file = _checked("file", _input_file)

SETTING_TYPES: dict[str, Callable[[str], Any]] = {
    "data_dir": folder, "company_list_file": input_file, "year": year, "month": month, "choose_stock": non_negative_int,
    "max_seq_length": positive_int, "rank": positive_int, "lora_alpha": positive_int, "batch_size": positive_int,
    "gradient_accumulation_steps": positive_int, "logging_steps": positive_int, "learning_rate": positive_float,
    "num_epochs": positive_float, "lora_dropout": non_negative_float, "weight_decay": non_negative_float,
    "model_dir": folder, "output_dir": folder,
}
"""Checked types of settings fields (by name); other fields keep their default's type."""


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
            kind = SETTING_TYPES.get(name) or (type(default) if default is not None else str)
            group.add_argument(flag, dest=name, type=kind, default=default, choices=meta.get("choices"), help=help_text)


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
    group.add_argument("--stride", type=positive_int, default=1, help="trading days between consecutive window starts (default: 1, the full sliding set)")
    group.add_argument("--top-k-news", type=non_negative_int, default=5, help="headlines placed in a prompt with --context news (default: 5)")
    group.add_argument("--val-start", type=iso_date, default=None, help="first date of the validation split, YYYY-MM-DD (default: by --val-frac)")
    group.add_argument("--test-start", type=iso_date, default=None, help="first date of the test split, YYYY-MM-DD (default: by --test-frac)")
    group.add_argument("--val-frac", type=finite_float, default=0.1, help="fraction of the trading days (over all companies, one shared boundary date) for validation (default: 0.1)")
    group.add_argument("--test-frac", type=finite_float, default=0.1, help="fraction of the trading days (over all companies, one shared boundary date) for test (default: 0.1)")
    group.add_argument("--gap", type=non_negative_int, default=None, help="trading days between splits that no example of the earlier split touches (default: the longest future window)")


def add_backend_arg(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision``: where and how a fine-tuned LLM (``llm:DIR``) generates; baselines ignore them."""
    from ..llm.backends import GENERATION_BACKENDS

    parser.add_argument("--backend", choices=GENERATION_BACKENDS, default="auto",
                        help="where an LLM generates: auto (unsloth on a CUDA GPU, else transformers), transformers, unsloth, "
                             "llama.cpp (GGUF base + LoRA, `pip install .[llamacpp]`), openai (an OpenAI-compatible server: "
                             "STOCKLLM_OPENAI_BASE_URL) (default: auto)")
    if "--precision" in parser._option_string_actions:  # predict and main.py have the training option; then it is shared
        return
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the transformers backend's number format: auto (fp32 on a CPU, bf16/fp16 on a GPU), float32, or "
                             "bfloat16 (faster on CPUs with AVX512-BF16/AMX, but some greedy answers differ from fp32's) (default: auto)")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=1, default=str)
    sys.stdout.write("\n")


def info(message: str) -> None:
    """Progress and explanations go to stderr, so stdout stays machine-readable with --json."""
    print(message, file=sys.stderr, flush=True)

