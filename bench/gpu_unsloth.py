"""GPU path: LoRA training and a forecast with the unsloth backend, beside plain transformers + peft.

Needs a CUDA GPU and the ``[gpu]`` extra (``pip install -e '.[gpu]'``). The model is a local Hugging Face
folder (the hub may be unreachable), e.g. one copied next to the checkout, or the packaged Gemma:

    .venv/bin/python bench/gpu_unsloth.py --model-name /models/Llama-3.2-3B-Instruct --steps 20
    .venv/bin/python bench/gpu_unsloth.py --model-name packaged:gemma-3-270m --load_in_4bit

For each backend, in this one process and on the same examples: load the model (4-bit with
``--load_in_4bit``, as the write-up does), add the write-up's LoRA, train ``--steps`` steps, then forecast
one company from the fine-tuned model; prints training tokens/s of both and their ratio. On a machine
without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True, help="local model folder (or packaged:gemma-3-270m)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--windows", default="5:5,20:5")
    parser.add_argument("--load_in_4bit", action="store_true")
    parser.add_argument("--code", default="2330", help="company to forecast after training")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU here; this script compares unsloth with transformers+peft on a GPU and was not run", file=sys.stderr)
        return 2
    import importlib.util

    if importlib.util.find_spec("unsloth") is None:
        print("error: unsloth is not installed; run `pip install -e '.[gpu]'` first", file=sys.stderr)
        return 2
    import unsloth  # noqa: F401  (patch transformers before anything else imports it)

    from stockllm import store
    from stockllm.config import TrainConfig
    from stockllm.dataset import DatasetSpec, build_dataset
    from stockllm.llm.forecaster import LLMForecaster
    from stockllm.llm.generation import TransformersGenerator
    from stockllm.llm.backends import LoraSettings, add_lora, load_base
    from stockllm.llm.training import train_lora

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        codes = ["2330", "2317", "2454", "9921"]
        store.install_snapshot(scratch / "data", codes)
        spec = DatasetSpec(windows=args.windows, val_frac=0.05, test_frac=0.05)
        splits = build_dataset(scratch / "data", codes, spec).splits
        for backend in ("unsloth", "transformers"):
            print(f"== {backend} ({torch.cuda.get_device_name(0)})", flush=True)
            loaded = add_lora(load_base(args.model_name, max_seq_length=2048, load_in_4bit=args.load_in_4bit, backend=backend), LoraSettings())
            config = TrainConfig(model_name=args.model_name, output_dir=str(scratch / backend), max_steps=args.steps,
                                 batch_size=args.batch_size, gradient_accumulation_steps=1, report_to="none", load_in_4bit=args.load_in_4bit)
            torch.cuda.synchronize()
            result = train_lora(loaded, splits, config, eval_limit=32, say=lambda line, b=backend: print(f"  [{b}] {line}", flush=True))
            torch.cuda.synchronize()
            if backend == "unsloth":
                from unsloth import FastLanguageModel

                FastLanguageModel.for_inference(loaded.model)
            else:
                loaded.model.eval()
            history = store.read_prices(scratch / "data", args.code)
            try:
                forecaster = LLMForecaster(TransformersGenerator(loaded), {"dataset": spec.to_dict()}, data_dir=scratch / "data")
                forecast = forecaster.predict(history, 5, code=args.code)
                outcome = f"forecast closes {', '.join(f'{v:g}' for v in forecast.frame['close'])} (valid: {forecast.info['valid']})"
            except Exception as exc:  # reported, the comparison goes on
                outcome = f"no forecast: {exc}"
            results[backend] = (result.tokens_per_second, result.val_loss, outcome)
            print(f"  {result.tokens_per_second:.0f} tokens/s, val loss {result.val_loss}; {outcome}", flush=True)
            del loaded
            gc.collect()
            torch.cuda.empty_cache()

    print(f"\n{'backend':<16}{'tokens/s':>10}  val loss")
    for backend, (speed, val, _) in results.items():
        print(f"{backend:<16}{speed:>10.0f}  {val}")
    print(f"unsloth / transformers: {results['unsloth'][0] / results['transformers'][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
