"""``stockllm evaluate``: walk-forward comparison of the LLM with baselines on held-out time."""

from __future__ import annotations

import argparse

from .common import add_codes_arg, add_data_args, not_built


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="walk-forward evaluation of forecasters against the random walk")
    add_data_args(evaluate, only=["data_dir", "company_list_file"])
    add_codes_arg(evaluate)
    evaluate.add_argument("--windows", default="1:1,5:5", help="past:future windows (default: 1:1,5:5)")
    evaluate.add_argument("--models", default="random_walk,drift,arima,ets,lstm,cnn", help="comma-separated models; llm:DIR for a fine-tuned model")
    evaluate.add_argument("--start", default=None, help="first forecast origin YYYY-MM-DD (default: the last 20%% of the data)")
    evaluate.add_argument("--report", default="outputs/evaluation", help="report folder (default: outputs/evaluation)")
    evaluate.set_defaults(func=not_built("stockllm evaluate", 5))
