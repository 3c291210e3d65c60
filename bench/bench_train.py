"""CPU LoRA training throughput: stockllm's training path vs a default-configured TRL ``SFTTrainer``.

Same model (default: the packaged Gemma 3 270M), same LoRA settings (the write-up's), same examples, same
batch size and number of steps, run one after the other in this process; prints tokens/s of each and the
ratio. Tokens are the non-padding tokens of the examples trained on (identical for both).

    .venv/bin/python bench/bench_train.py --fp32-baseline     # about 12 minutes on 2 AVX2 cores
    .venv/bin/python bench/bench_train.py --windows 5:5 --steps 1  # a week's window: TRL's bf16 step alone takes over 14 minutes here

Both trainers' first step is included (model warm-up costs the same for both). Timings on a shared machine
are noisy; the ratio measured side by side is what to compare. TRL's default is bf16: on a CPU without
native bf16 (AVX2 only) its backward matmuls fall back to PyTorch's reference GEMM, about 5 minutes per
1:1 step here and over 14 minutes per 5:5 step; ``--fp32-baseline`` separates that from the loss.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stockllm import store  # noqa: E402
from stockllm.config import DEFAULT_MODEL, TrainConfig  # noqa: E402
from stockllm.dataset import DatasetSpec, build_dataset  # noqa: E402
from stockllm.llm.backends import LoraSettings, add_lora, cuda_available, load_base  # noqa: E402
from stockllm.llm.chat import encode_example  # noqa: E402
from stockllm.llm.training import precision_flags, progress_callback, train_lora  # noqa: E402


def examples(data_dir: Path, codes: list[str], windows: str, count: int) -> list[dict]:
    store.install_snapshot(data_dir, codes)
    built = build_dataset(data_dir, codes, DatasetSpec(windows=windows, val_frac=0.0, test_frac=0.0))
    return built.splits["train"][-count:]


def _config(model_name: str, steps: int, batch: int, out: Path) -> TrainConfig:
    return TrainConfig(model_name=model_name, output_dir=str(out), max_steps=steps, batch_size=batch, gradient_accumulation_steps=1,
                       report_to="none", optim="adamw_torch", max_seq_length=4096)


def ours(model_name: str, data: list[dict], steps: int, batch: int, out: Path) -> float:
    """stockllm's path: LM head only at answer positions, precision chosen for the hardware."""
    loaded = add_lora(load_base(model_name), LoraSettings())
    result = train_lora(loaded, {"train": data}, _config(model_name, steps, batch, out), say=lambda line: print("  [ours]", line, flush=True))
    return result.seconds


def trl_sft(model_name: str, data: list[dict], steps: int, batch: int, out: Path, **settings) -> float:
    """TRL's ``SFTTrainer`` configured with only what the comparison fixes (batch, steps, length, no saving or
    reporting); every other setting is TRL's default (bf16, gradient checkpointing, chunked LM-head loss)
    unless ``settings`` overrides it."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    loaded = add_lora(load_base(model_name), LoraSettings())
    rows = [encode_example(loaded.tokenizer, e["messages"]) for e in data]  # the same tokens and answer labels as ours
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=steps,
                     max_length=4096, report_to=[], save_strategy="no", use_cpu=not cuda_available(), disable_tqdm=True,
                     logging_steps=1, **settings)
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=loaded.tokenizer,
                         callbacks=[progress_callback(lambda line: print("  [trl]", line, flush=True))])
    start = time.monotonic()
    trainer.train()
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--windows", default="1:1", help="example windows (default 1:1, so TRL's bf16 default finishes in minutes on a CPU)")
    parser.add_argument("--codes", nargs="+", default=["2330", "9921"])
    parser.add_argument("--fp32-baseline", action="store_true", help="also time TRL's defaults with bf16 turned off, to separate precision from the loss")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = examples(scratch / "data", args.codes, args.windows, args.steps * args.batch_size)
        tokenizer = load_base(args.model_name).tokenizer
        encoded = [encode_example(tokenizer, e["messages"]) for e in data]
        tokens = sum(len(e["input_ids"]) for e in encoded)
        answer = sum(sum(label != -100 for label in e["labels"]) for e in encoded)
        print(f"model {args.model_name}; {len(data)} examples ({args.windows}), {tokens} tokens of which {answer} answer tokens; "
              f"{args.steps} steps × batch {args.batch_size}, CPU", flush=True)
        runs = [("stockllm (answer-only head)", lambda: ours(args.model_name, data, args.steps, args.batch_size, scratch / "a"))]
        runs.append(("TRL SFTTrainer (defaults)", lambda: trl_sft(args.model_name, data, args.steps, args.batch_size, scratch / "b")))
        if args.fp32_baseline:
            runs.append(("TRL SFTTrainer (defaults, fp32)", lambda: trl_sft(args.model_name, data, args.steps, args.batch_size, scratch / "c", bf16=False)))
        seconds: dict[str, float | str] = {}
        for name, run in runs:
            print(f"{name} ...", flush=True)
            try:
                seconds[name] = run()
            except Exception as exc:  # a baseline that cannot run here is reported, not hidden
                seconds[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:100]

    precision = "bf16 autocast" if precision_flags()["bf16"] else "fp32 (this CPU has no native bf16)"
    ours_s = seconds[runs[0][0]]
    print(f"\nstockllm precision: {precision}")
    print(f"{'trainer':<34}{'seconds':>10}{'tokens/s':>12}{'ours is':>10}")
    for name, value in seconds.items():
        if isinstance(value, str):
            print(f"{name:<34}  did not run: {value}")
        else:
            print(f"{name:<34}{value:>10.1f}{tokens / value:>12.1f}{value / ours_s:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
