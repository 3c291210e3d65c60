"""``stockllm demo``: the README's main job on the embedded defaults, with no network.

Offline price snapshot → dataset → a short LoRA fine-tune of the packaged Gemma 3 270M on CPU → forecasts
for a few companies → K-line charts and a summary (train/validation loss, how many answers parsed and
passed the market rules). It runs in about ten to fifteen minutes on two busy cores (CPU training of a 270M model is ~10–20 tokens/s there); a few dozen CPU steps teach a small
model the answer format, not the market — the summary says so, and `stockllm evaluate` measures it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import store
from ..config import DEFAULT_MODEL, TrainConfig
from ..universe import default_universe, resolve
from .common import add_data_args, info, output_folder, positive_float, positive_int
from .data import install_offline

DEMO_CODES = ["2330", "2317", "9921"]


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the main job offline on the bundled data (what `make demo` runs)")
    add_data_args(demo, only=["data_dir"])
    demo.add_argument("--out-dir", type=output_folder, default="outputs/demo", help="model dir, checkpoints, charts and summary.json (default: outputs/demo)")
    demo.add_argument("--model-name", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL}, offline)")
    demo.add_argument("--steps", type=positive_int, default=12, help="LoRA training steps (default: 12, about 5 minutes on 2 CPU cores)")
    demo.add_argument("--batch-size", type=positive_int, default=2, help="examples per step (default: 2)")
    demo.add_argument("--learning-rate", type=positive_float, default=5e-4, help="peak learning rate (default: 5e-4, higher than the write-up's 2e-4 for so few steps)")
    demo.add_argument("--windows", default="2:2", help="past:future windows of the demo dataset (default: 2:2; long windows are slow on CPU)")
    demo.add_argument("--forecast", nargs="+", default=DEMO_CODES, metavar="CODE", help=f"companies to forecast (default: {' '.join(DEMO_CODES)})")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..dataset import DatasetSpec, parse_windows
    from ..llm.training import fine_tune

    started = time.monotonic()
    out = Path(args.out_dir)
    companies = default_universe()
    info(f"step 1/4: installing the offline snapshot for the {len(companies)} default companies")
    install_offline(args.data_dir, companies, reason="demo")

    windows = parse_windows(args.windows)
    spec = DatasetSpec(windows=windows, max_seq_length=1024)
    config = TrainConfig(model_name=args.model_name, max_seq_length=1024, model_dir=str(out / "model"), output_dir=str(out / "train"),
                         batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
                         learning_rate=args.learning_rate, optim="adamw_torch")
    info(f"step 2/4: LoRA fine-tune of {args.model_name} for {args.steps} steps on CPU (progress below; TensorBoard: "
         f"tensorboard --logdir={out / 'train' / 'runs'})")
    record = fine_tune(args.data_dir, companies, spec, config, eval_limit=8, say=info)

    info(f"step 3/4: forecasting {', '.join(args.forecast)} from their last stored day")
    forecasts = forecast_companies(config.model_dir, args.data_dir, args.forecast, windows[0], out)

    info("step 4/4: summary")
    summary = {
        "model_dir": config.model_dir,
        "base_model": args.model_name,
        "steps": record["steps"],
        "train_examples": record["examples"]["train"],
        "final_train_loss": record["final_train_loss"],
        "final_val_loss": record["final_val_loss"],
        "train_tokens_per_second": record["tokens_per_second"],
        "forecasts": forecasts,
        "parsed": sum(f["parsed"] for f in forecasts),
        "answers": sum(f["answers"] for f in forecasts),
        "valid": sum(bool(f.get("valid")) for f in forecasts),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    store.atomic_write_json(out / "summary.json", summary)
    print_summary(summary, out)
    return 0


def forecast_companies(model_dir: str, data_dir: str, codes: list[str], window: tuple[int, int], out: Path) -> list[dict]:
    """Forecast each company with the fine-tuned model; a failure is recorded with its reason, not hidden."""
    from ..charts import kline_chart
    from ..llm.forecaster import ForecastFailed
    from ..llm.predictor import StockPredictor

    predictor = StockPredictor(model_dir, data_dir)
    past, future = window
    results = []
    for code in codes:
        company = resolve(code)
        entry: dict = {"code": company.code, "name_zh": company.name_zh}
        try:
            forecast = predictor.inference(company.code, past=past, future=future, context="none")
        except ForecastFailed as failure:
            entry.update(parsed=0, answers=len(failure.attempts), error=str(failure), raw_text=failure.attempts[-1]["text"])
            info(f"  {company.code} {company.name_zh}: no parseable answer ({str(failure)[:120]})")
            results.append(entry)
            continue
        history = store.read_prices(data_dir, company.code).tail(20)
        chart = kline_chart(history, forecast, out / f"{company.code}.png", title=f"{company.code} {company.name_zh}")
        entry.update(parsed=forecast.info["parsed"], answers=len(forecast.info["attempts"]), valid=forecast.info["valid"],
                     problems=forecast.info["problems"], chart=str(chart), raw_text=forecast.raw_text,
                     forecast=forecast.frame.reset_index().to_dict(orient="records"))
        closes = ", ".join(f"{v:g}" for v in forecast.frame["close"])
        info(f"  {company.code} {company.name_zh}: closes {closes} ({'valid' if forecast.info['valid'] else 'breaks market rules'}); chart {chart}")
        results.append(entry)
    return results


def print_summary(summary: dict, out: Path) -> None:
    def num(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    print(f"fine-tuned {summary['base_model']} for {summary['steps']} steps on {summary['train_examples']:,} examples "
          f"({summary['train_tokens_per_second']:.0f} tokens/s): train loss {num(summary['final_train_loss'])}, "
          f"validation loss {num(summary['final_val_loss'])}")
    print(f"{'code':<6}{'name':<8}{'parsed':>8}  {'valid':<6}  forecast closes")
    for f in summary["forecasts"]:
        closes = ", ".join(f"{row['close']:g}" for row in f.get("forecast", [])) or f.get("error", "")[:60]
        print(f"{f['code']:<6}{f['name_zh']:<8}{f['parsed']:>4}/{f['answers']:<3}  {str(f.get('valid', False)):<6}  {closes}")
    print(f"answers parsed: {summary['parsed']}/{summary['answers']}; forecasts passing the market rules: {summary['valid']}/{len(summary['forecasts'])}")
    print(f"charts and summary.json in {out}; {summary['minutes']} minutes in all")
    print("note: a few CPU steps teach a 270M model the answer format, not the market; compare it with the baselines "
          "(`stockllm evaluate`) before trusting any number.")
