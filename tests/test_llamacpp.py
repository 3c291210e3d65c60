"""The llama.cpp backend on a tiny trained model: GGUF export of base and adapter, the same answers as transformers,
batching, sampling, and one-line errors for a missing llama-cpp-python or damaged files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stockllm import prompts, store
from stockllm.config import TrainConfig
from stockllm.dataset import DatasetSpec
from stockllm.errors import StockLLMError
from stockllm.llm.backends import load_generator, load_trained
from stockllm.llm.chat import encode_prompt
from stockllm.llm.generation import GenerationRequest
from stockllm.llm.scaffold import answer_scaffold
from stockllm.llm.gguf_export import ADAPTER_GGUF, model_dir_ggufs
from stockllm.llm.training import fine_tune
from tiny_llm import build_tiny_llm

CODE = "9921"


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A tiny Llama fine-tuned a few steps at a high learning rate (so the adapter visibly changes the model), in
    fp32 so that it is the same model on every CPU; its exported base GGUF is cached in the module's scratch
    folder, not in ~/.cache."""
    root = tmp_path_factory.mktemp("llamacpp")
    cache = pytest.MonkeyPatch()
    cache.setenv("STOCKLLM_CACHE", str(root / "cache"))
    data_dir = root / "data"
    store.install_snapshot(data_dir, [CODE])
    config = TrainConfig(model_name=str(build_tiny_llm(root / "base")), output_dir=str(root / "out"), model_dir=str(root / "model"),
                         max_steps=6, batch_size=4, gradient_accumulation_steps=1, learning_rate=2e-2, report_to="none",
                         max_seq_length=1024, precision="float32")  # the same weights on every CPU, bf16 or not
    fine_tune(data_dir, [CODE], DatasetSpec(windows=[(2, 1), (5, 5)], max_seq_length=1024), config, eval_limit=2, say=lambda _: None)
    yield root / "model"
    cache.undo()


@pytest.fixture(scope="module")
def reference(trained_dir):
    """The transformers backend of the same model dir (with its domain head): the answers llama.cpp must give."""
    return load_generator(trained_dir, "transformers")


@pytest.fixture(scope="module")
def requests(reference) -> list[GenerationRequest]:
    """Eight real prompts (2:1 and 5:5 windows of the snapshot) with their answers' header and dates supplied,
    each with the answer budget of its horizon."""
    frame = store.read_price_csv(store.snapshot_dir() / f"{CODE}.csv")
    made = []
    for end, (past, days) in zip(range(40, 200, 20), [(2, 1), (5, 5)] * 4):
        ids = encode_prompt(reference.tokenizer, prompts.messages("巨大", frame.iloc[end - past:end], None, "seed-example",
                                                                    future_days=days))
        scaffold = answer_scaffold(reference.tokenizer, frame["date"].iloc[end:end + days].tolist(), prompts.resolve_fields("seed-example"))
        made.append(GenerationRequest(ids + list(scaffold.prefill), 24 + 8 * days, days, scaffold.line_prefixes))
    return made


@pytest.fixture(scope="module")
def generator(trained_dir):
    from stockllm.llm.llamacpp import LlamaCppGenerator

    return LlamaCppGenerator.from_model_dir(trained_dir, batch_size=8, threads=1)  # a tiny model: one thread is fastest


def test_the_adapter_becomes_a_gguf_lora_beside_it_once(trained_dir):
    from gguf import GGUFReader

    base, adapter = model_dir_ggufs(trained_dir)
    assert adapter == trained_dir / ADAPTER_GGUF and base.suffix == ".gguf"
    reader = GGUFReader(str(adapter))
    assert reader.fields["general.type"].contents() == "adapter" and reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.1.ffn_down.weight.lora_b"} <= names
    assert len(names) == 2 * 7 * 2  # A and B for seven projections in two layers
    written = adapter.stat().st_mtime_ns
    assert model_dir_ggufs(trained_dir) == (base, adapter) and adapter.stat().st_mtime_ns == written  # reused, not rewritten


def test_llama_cpp_computes_the_trained_models_logits(trained_dir, requests):
    """Base GGUF + adapter in llama.cpp give transformers' logits; the adapter's own effect is far larger than
    the difference, so a misplaced or unpermuted adapter tensor would show."""
    from llama_cpp import Llama

    base, adapter = model_dir_ggufs(trained_dir)
    loaded = load_trained(trained_dir, "transformers", full_head=True)
    ids = requests[1].prompt_ids
    with torch.inference_mode():
        expected = loaded.model(input_ids=torch.tensor([ids])).logits[0].numpy()
        with loaded.model.disable_adapter():
            untuned = loaded.model(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm = Llama(model_path=str(base), lora_path=str(adapter), n_ctx=1024, logits_all=True, verbose=False)
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    difference, effect = np.abs(got - expected).max(), np.abs(untuned - expected).max()
    assert difference < 2e-3 and effect > 100 * difference


def test_greedy_answers_equal_the_transformers_backend(reference, requests, generator):
    assert generator.generate(requests) == reference.generate(requests)
    undaily = [GenerationRequest(r.prompt_ids, r.max_new_tokens + 16) for r in requests[:4]]  # stop on tokens and budget only
    assert generator.generate(undaily) == reference.generate(undaily)


def test_many_sequences_per_decode_give_the_answers_of_one_at_a_time(trained_dir, requests, generator):
    from stockllm.llm.llamacpp import LlamaCppGenerator

    one_by_one = LlamaCppGenerator.from_model_dir(trained_dir, batch_size=1, threads=1)
    assert generator.generate(requests) == one_by_one.generate(requests)
    assert LlamaCppGenerator.from_model_dir(trained_dir).threads == len(os.sched_getaffinity(0))  # the default: every core


def test_each_answer_keeps_to_its_budget_and_stops_after_its_lines(requests, generator):
    short = [GenerationRequest(r.prompt_ids, max_new_tokens=3 + i) for i, r in enumerate(requests)]
    for request, (text,) in zip(short, generator.generate(short)):
        assert len(generator.tokenizer(text, add_special_tokens=False)["input_ids"]) <= request.max_new_tokens
    for request, (text,) in zip(requests, generator.generate(requests)):
        assert text.count("\n") <= request.lines


def test_sampling_is_seeded_per_request_and_greedy_samples_repeat(requests, generator):
    first = generator.generate(requests[:3], sample=True, seed=5, samples=2)
    assert first == generator.generate(requests[:3], sample=True, seed=5, samples=2)
    assert first[1] == generator.generate(requests[1:2], sample=True, seed=5, samples=2)[0]  # whatever shares the call
    assert first != generator.generate(requests[:3], sample=True, seed=6, samples=2)
    greedy = generator.generate(requests[:2], samples=3)
    assert all(len(texts) == 3 and len(set(texts)) == 1 for texts in greedy)


def test_without_llama_cpp_python_the_backend_says_how_to_install_it(trained_dir, monkeypatch):
    from stockllm.llm.llamacpp import LlamaCppGenerator

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` sees when it is not installed
    with pytest.raises(StockLLMError, match=r"needs llama-cpp-python: `pip install 'stockllm\[llamacpp\]'`") as error:
        LlamaCppGenerator.from_model_dir(trained_dir)
    assert "\n" not in str(error.value)


def test_damaged_gguf_files_are_one_line_errors(trained_dir, generator, tmp_path):
    from stockllm.llm.llamacpp import LlamaCppGenerator

    base, adapter = model_dir_ggufs(trained_dir)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(adapter.read_bytes()[:200])
    with pytest.raises(StockLLMError, match="cannot load the LoRA adapter"):
        LlamaCppGenerator(base, broken, generator.tokenizer)
    with pytest.raises(StockLLMError, match="cannot load .* as a model"):
        LlamaCppGenerator(broken, None, generator.tokenizer)
