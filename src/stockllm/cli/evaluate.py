"""``stockllm evaluate``: walk-forward comparison of the LLM with baselines on held-out time."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .common import add_backend_arg, add_codes_arg, add_data_args, info, output_folder, positive_int

DEFAULT_MODELS = "random_walk,drift,arima,ets,lstm,cnn,bestfour"


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="walk-forward evaluation of forecasters against the random walk",
        description="Forecast every trading day of a held-out period with each model (each sees only data up to "
                    "the day it forecasts from), score the forecasts against what happened, and test each model "
                    "against the random walk. Writes REPORT/report.md, metrics.json, forecasts.csv and PNG plots.")
    add_data_args(evaluate, only=["data_dir", "company_list_file"])
    add_codes_arg(evaluate)
    evaluate.add_argument("--windows", default="1:1,5:5", help="past:future windows in trading days, comma separated; the write-up's four are 1:1,5:5,20:5,60:20 (default: 1:1,5:5)")
    evaluate.add_argument("--models", default=DEFAULT_MODELS,
                          help=f"comma-separated models: random_walk, drift, arima, ets, lstm, cnn, bestfour, llm:DIR (a fine-tuned model dir); random_walk is always added (default: {DEFAULT_MODELS})")
    evaluate.add_argument("--start", default=None, help="first day of the evaluation period, YYYY-MM-DD; models learn only from days before it minus the longest horizon (default: the last 10%% of stored trading days)")
    evaluate.add_argument("--stride", type=positive_int, default=1, help="forecast from every N-th trading day of the period, the same dates for every company and model; e.g. 5 for non-overlapping 5-day forecasts (default: 1, every day)")
    add_backend_arg(evaluate)
    evaluate.add_argument("--engine", choices=["local", "ray"], default="local", help="where the companies are walked: this process, "
                          "or Ray tasks per company × model × window, same results (needs the [scale] extra) (default: local)")
    evaluate.add_argument("--address", default=None, help="with --engine ray: the Ray cluster to join, e.g. auto or ray://HOST:10001 (default: start a local Ray on this machine's cores)")
    evaluate.add_argument("--report", type=output_folder, default="outputs/evaluation", help="report folder (default: outputs/evaluation)")
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engines import make_engine
    from ..evaluate import parse_windows, run_evaluation
    from ..evaluation_report import write_report
    from ..forecasters.registry import parse_model_list
    from ..universe import select_companies

    windows = parse_windows(args.windows)
    specs = parse_model_list(args.models)
    companies = select_companies(args.company_list_file, args.codes, args.data_dir)
    engine = make_engine(args.engine, args.address)
    result, scores = run_evaluation(Path(args.data_dir), companies, windows, specs, args.start, progress=info, stride=args.stride,
                                    backend=args.backend, precision=args.precision, engine=engine)
    command = "stockllm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    paths = write_report(result, scores, Path(args.report), command)
    for line in (paths["report"], paths["metrics"]):
        print(line)
    return 0
