"""llama.cpp vs transformers on one trained model dir: the same greedy forecasts, and how fast each makes them.

For every stored company's latest day and each window (default 5:5 and 1:1) the forecaster builds the prompt
once; each backend then answers all of them greedily in one ``predict_batch`` (one attempt, no sampled retries,
so both backends do exactly the same work). Printed per window and overall: how often llama.cpp's answer text
equals transformers', how often the parsed forecasts are equal, each backend's answers parsed, forecasts/s
(model loading excluded, GGUF conversion included in neither), and the speed ratio.

    .venv/bin/python bench/compare_backends.py --model-dir outputs/model --data-dir data
    .venv/bin/python bench/compare_backends.py --model-dir outputs/model --data-dir data --windows 5:5 --threads 2

The packaged Gemma runs in llama.cpp on its own Q4_K_M weights (with the adapter in f32), transformers on the
same weights dequantised to f32: small numeric differences can flip a near-tied greedy token, after which
the answers differ; the equality rate measures how often that happens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stockllm import store  # noqa: E402
from stockllm.dataset import parse_windows  # noqa: E402
from stockllm.forecasters.base import ForecastRequest  # noqa: E402
from stockllm.llm.backends import load_generator, read_training_info  # noqa: E402
from stockllm.llm.forecaster import LLMForecaster  # noqa: E402

BACKENDS = ("transformers", "llama.cpp")


def forecast_requests(data_dir: Path, window: tuple[int, int]) -> list[ForecastRequest]:
    """One request per stored company: its whole history, forecast from its latest day."""
    past, future = window
    return [ForecastRequest(store.read_prices(data_dir, code), future, code, past) for code in store.stored_codes(data_dir)]


def greedy_texts(results: list) -> list[str | None]:
    """The greedy answer of each forecast (a failed forecast keeps its attempt's text too)."""
    texts = []
    for result in results:
        attempts = result.info["attempts"] if hasattr(result, "info") else getattr(result, "attempts", [])
        texts.append(attempts[0]["text"] if attempts else None)
    return texts


def frames(results: list) -> list:
    return [result.frame.round(4).to_dict() if hasattr(result, "frame") else None for result in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--windows", default="5:5,1:1")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per batch, both backends")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the machine's cores)")
    args = parser.parse_args()

    info = read_training_info(args.model_dir)
    windows = parse_windows(args.windows)
    results: dict[str, dict[tuple[int, int], list]] = {backend: {} for backend in BACKENDS}
    seconds: dict[str, float] = {backend: 0.0 for backend in BACKENDS}
    for backend in BACKENDS:
        options = {"batch_size": args.batch_size} | ({"threads": args.threads} if backend == "llama.cpp" and args.threads else {})
        started = time.perf_counter()
        forecaster = LLMForecaster(load_generator(args.model_dir, backend, **options), info, data_dir=args.data_dir, attempts=1)
        print(f"{backend}: loaded in {time.perf_counter() - started:.1f} s", flush=True)
        for window in windows:
            requests = forecast_requests(args.data_dir, window)
            started = time.perf_counter()
            results[backend][window] = forecaster.predict_batch(requests)
            elapsed = time.perf_counter() - started
            seconds[backend] += elapsed
            print(f"  {window[0]}:{window[1]}  {len(requests)} forecasts in {elapsed:.1f} s = {len(requests) / elapsed:.3f} forecasts/s", flush=True)

    print(f"\nmodel dir {args.model_dir} (base {info.get('base_model')}), {args.data_dir}, batch size {args.batch_size}")
    total_equal = total_same_forecast = total = 0
    for window in windows:
        ours, theirs = results["llama.cpp"][window], results["transformers"][window]
        equal = sum(a == b and a is not None for a, b in zip(greedy_texts(ours), greedy_texts(theirs)))
        same = sum(a == b and a is not None for a, b in zip(frames(ours), frames(theirs)))
        parsed = {backend: sum(hasattr(r, "frame") for r in results[backend][window]) for backend in BACKENDS}
        total_equal, total_same_forecast, total = total_equal + equal, total_same_forecast + same, total + len(ours)
        print(f"{window[0]}:{window[1]}: greedy text equal {equal}/{len(ours)} = {equal / len(ours):.1%}; "
              f"forecast equal {same}/{len(ours)}; parsed transformers {parsed['transformers']}, llama.cpp {parsed['llama.cpp']}")
    rate = {backend: total / seconds[backend] for backend in BACKENDS}
    print(f"all: greedy text equal {total_equal}/{total} = {total_equal / total:.1%}; forecast equal {total_same_forecast}/{total}")
    print(f"forecasts/s: transformers {rate['transformers']:.3f}, llama.cpp {rate['llama.cpp']:.3f}; "
          f"llama.cpp / transformers = {rate['llama.cpp'] / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
