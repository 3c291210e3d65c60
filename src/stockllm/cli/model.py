"""``stockllm train`` and ``stockllm predict``: LoRA fine-tuning and forecasting with the LLM."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_backend_arg, add_codes_arg, add_data_args, add_dataset_args, add_train_args, info, iso_date, output_file, positive_int, print_json


def add_predict_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("forecast")
    group.add_argument("--code", default="2330", help="stock code or name to forecast (default: 2330)")
    group.add_argument("--past", type=positive_int, default=5, help="past trading days shown to the model (default: 5)")
    group.add_argument("--future", type=positive_int, default=5, help="trading days to forecast (default: 5)")
    group.add_argument("--as-of", type=iso_date, default=None, help="last input day YYYY-MM-DD (default: the last stored day)")
    group.add_argument("--chart", type=output_file, default=None, help="save a K-line chart of past + forecast days to this PNG")
    group.add_argument("--samples", type=positive_int, default=1, help="sampled answers; >1 gives a per-day median and 80%% interval (default: 1)")
    group.add_argument("--json", action="store_true", help="print the forecast as JSON")
    add_backend_arg(group)
    if "--context" not in parser._option_string_actions:  # main.py also has the dataset's --context; then it is shared
        group.add_argument("--context", default="auto",
                           help="prompt context: auto (what the model was trained with), none, or a TEXT to place in the prompt (default: auto)")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="LoRA fine-tune an LLM on the price dataset (unsloth on CUDA, peft+transformers elsewhere)")
    add_data_args(train, only=["data_dir", "company_list_file"])
    add_codes_arg(train)
    add_dataset_args(train)
    add_train_args(train)
    train.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    train.add_argument("--backend", choices=["auto", "unsloth", "transformers"], default="auto",
                       help="training backend: auto (unsloth on a CUDA GPU with the [gpu] extra, else transformers + peft), "
                            "unsloth, transformers (also under accelerate launch / DeepSpeed) (default: auto)")
    train.set_defaults(func=run_train)

    predict = sub.add_parser("predict", help="forecast the next trading days of one company with a fine-tuned model")
    add_data_args(predict, only=["data_dir"])
    add_train_args(predict)  # the model options (model dir, base model, quantisation) are the training ones
    add_predict_args(predict)
    predict.set_defaults(func=run_predict)


def train_config(args: argparse.Namespace):
    """The :class:`~stockllm.config.TrainConfig` of parsed options."""
    from dataclasses import fields

    from ..config import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def run_train(args: argparse.Namespace, companies: list | None = None) -> int:
    from ..dataset import spec_from_args
    from ..llm.training import fine_tune
    from ..universe import select_companies

    companies = companies or select_companies(args.company_list_file, args.codes, args.data_dir)
    record = fine_tune(args.data_dir, companies, spec_from_args(args), train_config(args), resume=args.resume,
                       backend=getattr(args, "backend", "auto"), say=info)
    print(f"trained {record['steps']} steps in {record['seconds']:.0f}s ({record['tokens_per_second']:.0f} tokens/s): "
          f"train loss {_num(record['final_train_loss'])}, validation loss {_num(record['final_val_loss'])}; model dir {args.model_dir}")
    print(f"watch the curves with: tensorboard --logdir={Path(args.output_dir) / 'runs'}")
    return 0


def run_train_writeup(args: argparse.Namespace) -> int:
    """``python main.py --train 1``: fetch prices when missing (offline snapshot fallback), pick stocks, train."""
    from .. import store
    from ..universe import select_companies
    from .data import fetch_online

    companies = select_companies(args.company_list_file, args.codes, args.data_dir)
    missing = [c for c in companies if not store.prices_path(args.data_dir, c.code).exists()]
    if missing:
        info(f"no stored prices for {len(missing)} companies: fetching from {args.year}-{args.month:02d}")
        fetch_online(args.data_dir, missing, args.year, args.month)
    if args.choose_stock > 0:
        from ..selection import choose_stocks

        buys, sells = choose_stocks(args.data_dir, companies, args.choose_stock, args.random_state, log=info)
        companies = [company for company, _ in buys + sells]
    return run_train(args, companies)


def predict_context(value: str | None) -> str | None:
    """``--context`` of predict: auto/none/TEXT. In ``main.py`` the option is the dataset's (none, news, …):
    a context kind there means "the context the model was trained with"."""
    from ..dataset import CONTEXTS

    return "auto" if value in CONTEXTS and value != "none" else value


def run_predict(args: argparse.Namespace) -> int:
    from .. import store
    from ..llm.predictor import StockPredictor
    from ..universe import resolve

    store.read_prices(args.data_dir, resolve(args.code).code)  # an unknown code is said before the model loads
    predictor = StockPredictor(args.model_dir, args.data_dir, samples=args.samples, backend=args.backend,
                               precision=args.precision)
    forecast = predictor.inference(args.code, args.past, args.future, predict_context(args.context), as_of=args.as_of)
    meta = forecast.info
    if args.chart:
        from ..charts import kline_chart

        history = store.read_prices(args.data_dir, meta["code"])
        history = history[history["date"] <= meta["as_of"]]
        path = kline_chart(history.tail(max(args.past, 20)), forecast, args.chart, title=f"{meta['code']} {meta['name_zh']}")
        info(f"chart saved to {path}")
    for problem in meta["problems"]:
        info(f"warning: the forecast breaks a market rule: {problem}")
    failed = len(meta["attempts"]) - meta["parsed"]
    if failed:
        info(f"note: {failed} of {len(meta['attempts'])} answers could not be parsed and were discarded")
    if args.json:
        print_json(forecast_record(forecast))
        return 0
    print(f"{meta['code']} {meta['name_zh']}: {args.future} trading days after {meta['as_of']} (model {args.model_dir}, {meta['samples_used']} answer(s))")
    table = forecast.frame.copy()
    table["capacity"] = table["capacity"].round().astype("Int64")  # shares are whole numbers
    print(table.to_string(float_format=lambda v: f"{v:,.2f}"))
    return 0


def forecast_record(forecast) -> dict:
    """A forecast as plain JSON: rows, validity, the raw answer and the prompt."""
    meta = forecast.info
    rows = json.loads(forecast.frame.reset_index().to_json(orient="records"))
    return {"code": meta["code"], "name_zh": meta["name_zh"], "as_of": meta["as_of"], "past": meta["past"], "model": forecast.model,
            "forecast": rows, "valid": meta["valid"], "problems": meta["problems"], "raw_text": forecast.raw_text,
            "attempts": len(meta["attempts"]), "parsed": meta["parsed"], "prompt": meta["messages"][-1]["content"]}


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
