"""GPU throughput, one command: unsloth vs transformers+peft training tokens/s, batched vs served forecasts/s.

    .venv/bin/python bench/gpu_scale.py --model-name /models/Llama-3.2-1B-Instruct [--steps 30] [--forecasts 256]

For a machine with a CUDA GPU, the ``[gpu]`` extra (unsloth) and vLLM (``pip install vllm``); the model is a
1-3B Llama-architecture Hugging Face folder or hub name (e.g. ``unsloth/Llama-3.2-1B-Instruct``).

1. ``stockllm train``'s own :func:`~stockllm.llm.training.fine_tune` on the same companies, windows and steps
   with ``backend="unsloth"`` and with ``backend="transformers"`` (peft): training tokens/s of each.
2. ``--forecasts`` forecasts (5:5 windows, 4 companies) from the transformers run's model dir: batched in this
   process (``TransformersGenerator``) and served by a vLLM server this script starts on 127.0.0.1 with the
   adapter (``--backend openai``, concurrent requests): forecasts/s of each.

Writes the numbers and the card's name to ``--out`` (default ``docs/gpu_throughput.md``) and prints them.
On a machine without CUDA it says so in one line and exits with status 2, before importing anything heavy.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CODES = ["2330", "2317", "2454", "9921"]


def refusal() -> str | None:
    """Why this machine cannot run the measurement, or None."""
    import torch

    if not torch.cuda.is_available():
        return "error: no CUDA GPU here; bench/gpu_scale.py measures GPU training and serving throughput and was not run"
    missing = [name for name in ("unsloth", "vllm") if importlib.util.find_spec(name) is None]
    if missing:
        return f"error: {' and '.join(missing)} not installed; run `pip install -e '.[gpu]' vllm` first"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_vllm(base: str, model_dir: Path, port: int, log: Path, timeout: float = 900) -> subprocess.Popen:
    """``vllm serve BASE --enable-lora --lora-modules stockllm=MODEL_DIR`` on 127.0.0.1, once it answers."""
    import requests

    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", base, "--host", "127.0.0.1",
                               "--port", str(port), "--enable-lora", "--lora-modules", f"stockllm={model_dir}", "--max-lora-rank", "64"],
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vLLM exited with status {server.returncode}; see {log}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(5)
    server.terminate()
    raise RuntimeError(f"vLLM did not answer within {timeout:.0f} s; see {log}")


def forecasts_per_second(model_dir: Path, backend: str, requests_: list) -> tuple[float, int]:
    """(forecasts/s, valid answers) of ``predict_many`` over ``requests_`` on ``backend``."""
    from stockllm.forecasters.base import predict_many
    from stockllm.llm.forecaster import LLMForecaster

    forecaster = LLMForecaster.from_model_dir(model_dir, backend=backend)
    began = time.perf_counter()
    answers = predict_many(forecaster, requests_)
    seconds = time.perf_counter() - began
    return len(requests_) / seconds, sum(not isinstance(a, Exception) and bool(a.info.get("valid")) for a in answers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True, help="1-3B Llama-architecture model: local folder or hub name")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--forecasts", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu_throughput.md")
    args = parser.parse_args()
    problem = refusal()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    import unsloth  # noqa: F401  (patch transformers before anything else imports it)
    import torch

    from stockllm import store
    from stockllm.config import TrainConfig
    from stockllm.dataset import DatasetSpec
    from stockllm.forecasters.base import ForecastRequest
    from stockllm.llm.training import fine_tune
    from stockllm.universe import resolve_code

    card = torch.cuda.get_device_name(0)
    speeds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = scratch / "data"
        store.install_snapshot(data, CODES)
        spec = DatasetSpec(windows=[(5, 5), (20, 5)], val_frac=0.05, test_frac=0.05)
        for backend in ("unsloth", "transformers"):
            config = TrainConfig(model_name=args.model_name, model_dir=str(scratch / f"model-{backend}"), output_dir=str(scratch / backend),
                                 max_steps=args.steps, batch_size=args.batch_size, gradient_accumulation_steps=1, report_to="none")
            record = fine_tune(data, [resolve_code(c) for c in CODES], spec, config, backend=backend, eval_limit=16,
                               say=lambda line, b=backend: print(f"  [{b}] {line}", flush=True))
            speeds[f"training, {backend}"] = record["tokens_per_second"]
            gc.collect()
            torch.cuda.empty_cache()

        model_dir = scratch / "model-transformers"
        per_code = -(-args.forecasts // len(CODES))
        requests_ = [ForecastRequest(frame.iloc[: len(frame) - k], 5, code, 5)
                     for code in CODES for frame in [store.read_prices(data, code)] for k in range(per_code)][: args.forecasts]
        batched, batched_valid = forecasts_per_second(model_dir, "transformers", requests_)
        gc.collect()
        torch.cuda.empty_cache()
        port = free_port()
        server = start_vllm(args.model_name, model_dir, port, scratch / "vllm.log")
        try:
            os.environ["STOCKLLM_OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
            served, served_valid = forecasts_per_second(model_dir, "openai", requests_)
        finally:
            server.terminate()
            server.wait(60)

    ratio_train = speeds["training, unsloth"] / speeds["training, transformers"]
    lines = [
        "# GPU throughput (bench/gpu_scale.py)", "",
        f"Card: **{card}**. Model: `{args.model_name}`, LoRA as `stockllm train`, {args.steps} steps of batch {args.batch_size}, "
        f"windows 5:5 and 20:5 of {', '.join(CODES)}; forecasts: {len(requests_)} 5:5 forecasts of the same companies.", "",
        "| measure | value |", "|---|---|",
        f"| training tokens/s, unsloth | {speeds['training, unsloth']:.0f} |",
        f"| training tokens/s, transformers+peft | {speeds['training, transformers']:.0f} |",
        f"| unsloth / transformers | {ratio_train:.2f}x |",
        f"| forecasts/s, batched in-process (transformers) | {batched:.2f} ({batched_valid} valid) |",
        f"| forecasts/s, served by vLLM (--backend openai) | {served:.2f} ({served_valid} valid) |",
        f"| served / batched | {served / batched:.2f}x |", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/gpu_scale.py --model-name {args.model_name} --steps {args.steps}`.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    store.atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
