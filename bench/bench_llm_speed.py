"""The LLM's speed on a CPU, new paths beside today's, in one run: training tokens/s and forecasts/s.

Training (same base model, LoRA settings, examples, batch size and steps; one epoch over a seeded sample of
the 41 companies' 1:1 + 5:5 training examples):

* today's path: random batches padded to their longest example, LM head over the full 262,144-token vocabulary,
  products in fp32 (``--precision float32``: what it ran on every CPU — the trainer's bf16 autocast wraps
  ``model.forward``, which the answer-only loss went around);
* the new path: batches grouped by length over the whole epoch (``--batching grouped``), the domain output head,
  and ``--precision auto`` (bf16 autocast on CPUs that multiply bf16 natively; fp32 elsewhere, where the two
  paths then differ only in batching and head);
* the new path with ``--compile`` (torch.compile'd decoder layers), run twice in one process: the first run pays
  the one-time compile, the second reuses it and shows the steady rate; from the two, the rate over a 60-minute
  run (the issue's training budget) with the compile paid once. The compile cache starts empty (torch keeps one
  on disk, under /tmp, that would otherwise make a repeated bench's first run look compiled already).

Forecasting, for the 41 companies' latest stored day with a 5:5 prompt, greedy, one attempt, with a trained
model dir:

* (a) the path before this work, reproduced here: transformers' ``generate`` one forecast at a time with the
  full output layer, the model writing the whole answer (header and dates included) — on ``--one-by-one``
  companies only, it costs minutes each; the rate is per forecast, so it compares with the others;
* (b) stockllm's batched decoding (``TransformersGenerator`` from ``load_generator``): the domain head, the supplied
  header and dates, the adapter folded into the weights, the in-place KV cache and grouped attention
  (:mod:`stockllm.llm.decoding`);
* (b0) the same batches as the previous version of (b) decoded them: the adapter applied at run time, transformers'
  ``DynamicCache`` and the model's own attention — what this version's changes to (b) gained;
* (b16) as (b) with the weights in bf16 (``precision="bfloat16"``), on CPUs that multiply bf16 natively
  (AVX512-BF16, AMX): faster, but it rounds differently, so some greedy answers differ from (b)'s;
* (c) llama.cpp (``--backend llama.cpp``) on the same requests, when llama-cpp-python is installed.

It also reports how often (a)'s greedy tokens fall outside the domain head's token set (the tokens the
restricted head cannot write), and how often (c) gives (b)'s exact answer. Forecasts/s is the measure a user
feels; tokens/s is printed too, since (a) writes longer answers than (b) (the header and dates).

    .venv/bin/python bench/bench_llm_speed.py --model-dir outputs/llm/model     # 15 to 40 minutes on 2 cores
    .venv/bin/python bench/bench_llm_speed.py                                   # training only, about 10 minutes
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stockllm import store  # noqa: E402
from stockllm.config import DEFAULT_MODEL, TrainConfig  # noqa: E402
from stockllm.dataset import DatasetSpec, build_dataset  # noqa: E402
from stockllm.forecasters.base import ForecastRequest  # noqa: E402
from stockllm.llm.training import precision_flags  # noqa: E402
from stockllm.universe import default_universe  # noqa: E402


def training_examples(data_dir: Path, count: int, seed: int) -> list[dict]:
    codes = [c.code for c in default_universe()]
    built = build_dataset(data_dir, codes, DatasetSpec(windows="1:1,5:5", val_frac=0.0, test_frac=0.0))
    return random.Random(seed).sample(built.splits["train"], count)


def train_rate(model_name: str, data: list[dict], out: Path, **path) -> tuple[float, int]:
    """(seconds, tokens) of one epoch over ``data`` with batch 4 on the given path (``TrainConfig`` fields: ``batching``,
    ``full_head``, ``precision``, ``compile``)."""
    from stockllm.llm.backends import LoraSettings, add_lora, load_base
    from stockllm.llm.training import train_lora

    loaded = add_lora(load_base(model_name), LoraSettings())
    config = TrainConfig(model_name=model_name, output_dir=str(out), max_steps=-1, num_epochs=1, batch_size=4, gradient_accumulation_steps=1,
                         report_to="none", optim="adamw_torch", logging_steps=100, **path)
    result = train_lora(loaded, {"train": data}, config, say=lambda line: None)
    return result.seconds, result.tokens


def requests(data_dir: Path, codes: list[str]) -> list[ForecastRequest]:
    return [ForecastRequest(store.read_prices(data_dir, code).dropna(subset=["close"]), 5, code, past=5) for code in codes]


def forecast_rate(forecaster, batch: list[ForecastRequest]) -> tuple[float, list[str]]:
    """(forecasts/s, the greedy answer text of each request — parsed or not)."""
    began = time.perf_counter()
    results = forecaster.predict_batch(batch)
    rate = len(batch) / (time.perf_counter() - began)
    return rate, [r.attempts[0]["text"] if isinstance(r, Exception) and hasattr(r, "attempts") else getattr(r, "raw_text", "") for r in results]


def before_rate(forecaster, batch: list[ForecastRequest]) -> tuple[float, list[str]]:
    """(a): ``generate`` one request at a time on ``forecaster``'s full-head model, the model writing the whole
    answer from the plain prompt, stopped by the end of turn or the answer budget, as forecasts were made before."""
    import torch

    from stockllm.llm.chat import encode_prompt, stop_token_ids
    from stockllm.llm.forecaster import answer_budget

    loaded, tokenizer = forecaster.generator.loaded, forecaster.generator.tokenizer
    stops = stop_token_ids(tokenizer)
    texts = []
    began = time.perf_counter()
    for request in batch:
        ids = encode_prompt(tokenizer, forecaster.messages(request.history, request.horizon, request.code, past=request.past))
        budget = answer_budget(tokenizer, request.history, request.horizon, forecaster.spec.field_list)
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=budget, do_sample=False,
                                        eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        texts.append(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))
    return len(batch) / (time.perf_counter() - began), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="a trained model dir (stockllm train) for the forecasting comparison; "
                                                          "without it only training is compared")
    parser.add_argument("--model-name", default=DEFAULT_MODEL, help="base model for the training comparison")
    parser.add_argument("--train-examples", type=int, default=48, help="examples each training path runs over (default: 48)")
    parser.add_argument("--one-by-one", type=int, default=3, help="companies forecast one at a time with the full head (default: 3)")
    parser.add_argument("--skip-training", action="store_true", help="only the forecasting comparison")
    args = parser.parse_args()

    from stockllm.llm.backends import cpu_has_native_bf16, load_generator
    from stockllm.llm.domain_head import load_domain
    from stockllm.llm.forecaster import LLMForecaster
    from stockllm.llm.generation import TransformersGenerator

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(scratch) / "inductor")  # a cold compile, as on a fresh machine
        data_dir = Path(scratch) / "data"
        store.install_snapshot(data_dir)
        if not args.skip_training:
            data = training_examples(data_dir, args.train_examples, seed=3407)
            old_s, old_tokens = train_rate(args.model_name, data, Path(scratch) / "old", batching="padded", full_head=True, precision="float32")
            new_s, new_tokens = train_rate(args.model_name, data, Path(scratch) / "new", batching="grouped", full_head=False)
            first_s, _ = train_rate(args.model_name, data, Path(scratch) / "c1", batching="grouped", full_head=False, compile=True)
            steady_s, steady_tokens = train_rate(args.model_name, data, Path(scratch) / "c2", batching="grouped", full_head=False, compile=True)
            assert old_tokens == new_tokens == steady_tokens
            precision = "bf16 autocast" if precision_flags()["bf16"] else "fp32"
            hour, compile_s = 3600.0, first_s - steady_s
            print(f"training, {len(data)} examples (1:1 + 5:5), {new_tokens:,} tokens, batch 4, one epoch:")
            print(f"  today's path (padded, full head, fp32)        {old_s:7.1f} s  {old_tokens / old_s:7.1f} tokens/s")
            print(f"  new path (grouped, domain head, {precision})  {new_s:7.1f} s  {new_tokens / new_s:7.1f} tokens/s  = {old_s / new_s:.2f}x")
            print(f"  new path + --compile, first run               {first_s:7.1f} s  {new_tokens / first_s:7.1f} tokens/s  = {old_s / first_s:.2f}x"
                  f"  (one-time compile about {compile_s:.0f} s)")
            print(f"  new path + --compile, compiled                {steady_s:7.1f} s  {new_tokens / steady_s:7.1f} tokens/s  = {old_s / steady_s:.2f}x")
            print(f"  over a 60-minute run, compile paid once: {(hour - compile_s) / steady_s * steady_tokens / hour:7.1f} tokens/s"
                  f"  = {(hour - compile_s) / hour * old_s / steady_s:.2f}x today's")

        if args.model_dir is None:
            return
        codes = [c.code for c in default_universe()]
        everything = requests(data_dir, codes)
        info_dir = Path(args.model_dir)
        from stockllm.llm.backends import load_trained, read_training_info

        info = read_training_info(info_dir)
        full = LLMForecaster(TransformersGenerator(load_trained(info_dir, full_head=True), batch_size=1), info, attempts=1)
        rate_a, answers_a = before_rate(full, everything[: args.one_by_one])
        domain = set(load_domain(info_dir) or [])
        tokenizer = full.generator.tokenizer
        written = [t for text in answers_a for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
        outside = sum(t not in domain for t in written)
        print(f"forecasting the 41 companies' latest day, 5:5 prompts, greedy, one attempt ({info['base_model']}):")
        print(f"  (a)'s first answer: {answers_a[0]!r}")
        def token_rate(rate: float, texts: list[str]) -> float:
            """Generated tokens/s: answers differ in length between paths, so forecasts/s alone would mislead."""
            return rate * sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / max(len(texts), 1)

        print(f"  (a) one by one, full head ({args.one_by_one} companies)   {rate_a:7.3f} forecasts/s  {token_rate(rate_a, answers_a):7.1f} tokens/s")
        print(f"      greedy tokens outside the domain head's {len(domain)} tokens: {outside} of {len(written)}")
        batched = LLMForecaster(load_generator(info_dir), info, attempts=1)
        rate_b, answers_b = forecast_rate(batched, everything)
        print(f"  (b) batched, domain head (41)            {rate_b:7.3f} forecasts/s  {token_rate(rate_b, answers_b):7.1f} tokens/s "
              f"= {rate_b / rate_a:5.1f}x (a) in forecasts/s, {token_rate(rate_b, answers_b) / token_rate(rate_a, answers_a):5.1f}x in tokens/s")
        before = LLMForecaster(TransformersGenerator(load_trained(info_dir), in_place=False), info, attempts=1)
        rate_b0, answers_b0 = forecast_rate(before, everything)
        print(f"  (b0) as (b), adapter at run time, transformers' cache (41)  {rate_b0:7.3f} forecasts/s: (b) is {rate_b / rate_b0:4.2f}x; "
              f"same answer as (b): {sum(x == y for x, y in zip(answers_b, answers_b0))}/{len(answers_b)}")
        if cpu_has_native_bf16():
            bf16 = LLMForecaster(load_generator(info_dir, precision="bfloat16"), info, attempts=1)
            rate_16, answers_16 = forecast_rate(bf16, everything)
            print(f"  (b16) as (b), weights in bf16 (41)       {rate_16:7.3f} forecasts/s  {token_rate(rate_16, answers_16):7.1f} tokens/s "
                  f"= {rate_16 / rate_a:5.1f}x (a) in forecasts/s; same answer as (b): "
                  f"{sum(x == y for x, y in zip(answers_b, answers_16))}/{len(answers_b)}")
        else:
            print("  (b16) bf16 weights: not run (this CPU has no native bf16)")
        try:
            llama = LLMForecaster(load_generator(info_dir, "llama.cpp"), info, attempts=1)
        except Exception as exc:  # noqa: BLE001 - the bench reports why the third backend is missing
            print(f"  (c) llama.cpp: not run ({exc})")
            return
        rate_c, answers_c = forecast_rate(llama, everything)
        same_c = sum(b == c for b, c in zip(answers_b, answers_c))
        print(f"  (c) llama.cpp (41)                       {rate_c:7.3f} forecasts/s  {token_rate(rate_c, answers_c):7.1f} tokens/s "
              f"= {rate_c / rate_a:5.1f}x (a) in forecasts/s, {token_rate(rate_c, answers_c) / token_rate(rate_a, answers_a):5.1f}x in tokens/s; "
              f"same answer as (b): {same_c}/{len(answers_b)}")


if __name__ == "__main__":
    main()
