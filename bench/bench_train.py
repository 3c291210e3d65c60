"""CPU LoRA training throughput: stockllm's training path vs a default-configured TRL ``SFTTrainer``.

Same model (default: the packaged Gemma 3 270M), same LoRA settings (the write-up's), same examples, same
batch size and number of steps, run one after the other in this process; prints tokens/s of each and the
ratio. Tokens are the non-padding tokens of the examples trained on (identical for both).

    .venv/bin/python bench/bench_train.py                 # ~5 minutes on 2 cores
    .venv/bin/python bench/bench_train.py --steps 4 --batch-size 2 --windows 20:5

Both trainers' first step is included (model warm-up costs the same for both). Timings on a shared machine
are noisy; the ratio measured side by side is what to compare.
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
from stockllm.llm_backends import LoraSettings, add_lora, cuda_available, load_base  # noqa: E402
from stockllm.llm_chat import encode_example  # noqa: E402
from stockllm.llm_training import collate, precision_flags, train_lora, training_arguments  # noqa: E402


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


def full_vocab(model_name: str, data: list[dict], steps: int, batch: int, out: Path, bf16: bool) -> float:
    """A plain ``transformers.Trainer`` with the model's own loss (full-vocabulary logits at every position)."""
    from transformers import Trainer

    loaded = add_lora(load_base(model_name), LoraSettings())
    tokenizer = loaded.tokenizer
    args = training_arguments(_config(model_name, steps, batch, out), steps_hint=steps, eval_steps=steps, optim="adamw_torch",
                              eval_strategy="no", save_strategy="no", bf16=bf16)
    trainer = Trainer(model=loaded.model, args=args, train_dataset=[encode_example(tokenizer, e["messages"]) for e in data],
                      data_collator=lambda f: collate(f, tokenizer.pad_token_id))
    start = time.monotonic()
    trainer.train()
    return time.monotonic() - start


def trl_default(model_name: str, data: list[dict], steps: int, batch: int, out: Path) -> float:
    """TRL's ``SFTTrainer`` with its defaults (bf16, fused LM-head loss), prompt-completion data."""
    import importlib.util

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if importlib.util.find_spec("triton") is None or not cuda_available():
        raise RuntimeError("TRL 1.15's default loss is a fused LM head written in Triton (GPU only); it cannot train on this CPU")
    loaded = add_lora(load_base(model_name), LoraSettings())
    rows = [{"prompt": e["messages"][:-1], "completion": e["messages"][-1:]} for e in data]
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=steps,
                     report_to=[], optim="adamw_torch", max_length=4096, logging_steps=1, save_strategy="no", use_cpu=True,
                     seed=3407, data_seed=3407)
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=loaded.tokenizer)
    start = time.monotonic()
    trainer.train()
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--windows", default="5:5", help="example windows (default 5:5: a week of prices → the next week)")
    parser.add_argument("--codes", nargs="+", default=["2330", "9921"])
    parser.add_argument("--bf16-baseline", action="store_true", help="also time the full-vocabulary Trainer in bf16 (slow where bf16 is emulated)")
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
        runs.append(("TRL SFTTrainer (defaults)", lambda: trl_default(args.model_name, data, args.steps, args.batch_size, scratch / "b")))
        runs.append(("Trainer, full vocab, fp32", lambda: full_vocab(args.model_name, data, args.steps, args.batch_size, scratch / "c", False)))
        if args.bf16_baseline:
            runs.append(("Trainer, full vocab, bf16", lambda: full_vocab(args.model_name, data, args.steps, args.batch_size, scratch / "d", True)))
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
    print(f"{'trainer':<30}{'seconds':>10}{'tokens/s':>12}{'ours is':>10}")
    for name, value in seconds.items():
        if isinstance(value, str):
            print(f"{name:<30}  did not run: {value}")
        else:
            print(f"{name:<30}{value:>10.1f}{tokens / value:>12.1f}{value / ours_s:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
