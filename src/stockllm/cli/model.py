"""``stockllm train`` and ``stockllm predict``: LoRA fine-tuning and forecasting with the LLM."""

from __future__ import annotations

import argparse

from .common import add_codes_arg, add_data_args, add_dataset_args, add_train_args, not_built


def add_predict_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("forecast")
    group.add_argument("--code", default="2330", help="stock code or name to forecast (default: 2330)")
    group.add_argument("--past", type=int, default=5, help="past trading days shown to the model (default: 5)")
    group.add_argument("--future", type=int, default=5, help="trading days to forecast (default: 5)")
    group.add_argument("--chart", default=None, help="save a K-line chart of past + forecast days to this PNG")
    group.add_argument("--samples", type=int, default=1, help="sampled answers; >1 gives a per-day median and 80%% interval (default: 1)")
    group.add_argument("--json", action="store_true", help="print the forecast as JSON")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="LoRA fine-tune an LLM on the price dataset (unsloth on CUDA, peft+TRL elsewhere)")
    add_data_args(train, only=["data_dir", "company_list_file"])
    add_codes_arg(train)
    add_dataset_args(train)
    add_train_args(train)
    train.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    train.set_defaults(func=run_train)

    predict = sub.add_parser("predict", help="forecast the next trading days of one company with a fine-tuned model")
    add_data_args(predict, only=["data_dir"])
    add_settings_model = add_train_args  # the model options (model dir, base model, quantisation) are the training ones
    add_settings_model(predict)
    add_predict_args(predict)
    predict.set_defaults(func=run_predict)


run_train = not_built("stockllm train", 4)
run_train_writeup = not_built("python main.py --train 1", 4)
run_predict = not_built("stockllm predict", 4)
