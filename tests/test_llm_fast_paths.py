"""The LLM's fast paths keep its answers: domain head, packed batches, batched generation, time budget.

Each fast path is specified by what it must equal: the domain-head loss is the full model's softmax restricted
to the answer tokens and renormalised; a packed row trains exactly like padded rows; batched greedy answers
are the one-by-one answers; a model dir from before the domain head still loads with the full head.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from stockllm import prompts, store
from stockllm.config import TrainConfig
from stockllm.dataset import DatasetSpec
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import ForecastRequest
from stockllm.llm.backends import LoraSettings, add_lora, load_base, load_generator, load_trained
from stockllm.llm.chat import IGNORE_INDEX, encode_example, encode_prompt, stop_token_ids
from stockllm.llm.domain_head import DOMAIN_FILE, DomainHead, DomainLogits, domain_token_ids, load_domain
from stockllm.llm.forecaster import LLMForecaster
from stockllm.llm.generation import GenerationRequest, TransformersGenerator
from stockllm.llm.training import (LengthGroupedOrder, _right_padded, answer_loss, collate, collate_packed, compile_layers, fine_tune,
                                   parse_duration, train_lora)
from tiny_llm import build_tiny_llm

CODES = ["9921", "2330"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    frame = store.read_price_csv(store.snapshot_dir() / "9921.csv")
    return [{"messages": prompts.messages("巨大", frame.iloc[i - k:i], frame.iloc[i:i + k], "seed-example")}
            for i in range(5, 40) for k in (1, 3)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model) -> dict:
    """A tiny model trained a few steps with the domain head (the default), saved as a model dir."""
    root = tmp_path_factory.mktemp("domain")
    data_dir = root / "data"
    store.install_snapshot(data_dir, CODES)
    spec = DatasetSpec(windows=[(2, 1), (5, 3)], max_seq_length=1024)
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(root / "out"), model_dir=str(root / "model"), max_steps=6,
                         batch_size=4, gradient_accumulation_steps=1, learning_rate=2e-2, report_to="none", max_seq_length=1024)
    record = fine_tune(data_dir, CODES, spec, config, eval_limit=4, say=lambda _: None)
    return {"data_dir": data_dir, "model_dir": root / "model", "record": record}


def test_domain_head_loss_is_the_full_softmax_restricted_to_answer_tokens_and_renormalised(tiny_model, examples):
    loaded = load_base(str(tiny_model))
    encoded = [encode_example(loaded.tokenizer, e["messages"]) for e in examples[:4]]
    batch = collate(encoded, loaded.tokenizer.pad_token_id)
    ids = domain_token_ids((e["labels"] for e in encoded), stop_token_ids(loaded.tokenizer))
    domain = DomainHead(ids, loaded.model.config.vocab_size)
    with torch.no_grad():
        ours = answer_loss(loaded.model, batch, domain=domain)
        logits = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    full = torch.log_softmax(logits[keep].float(), dim=-1)
    restricted = full[:, ids] - torch.logsumexp(full[:, ids], dim=-1, keepdim=True)  # renormalised over the domain
    expected = -restricted.gather(1, domain.targets(targets[keep])[:, None]).mean()
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(ids) < loaded.model.config.vocab_size


def test_an_answer_token_outside_the_domain_is_an_error_not_skipped(tiny_model):
    domain = DomainHead([5, 7, 9], vocab_size=20)
    assert domain.targets(torch.tensor([7, 9, 5])).tolist() == [1, 2, 0]
    with pytest.raises(StockLLMError, match="outside the domain head"):
        domain.targets(torch.tensor([7, 8]))
    with pytest.raises(StockLLMError, match="another base model"):
        DomainHead([5, 25], vocab_size=20)


def test_a_packed_row_trains_exactly_like_padded_rows(tiny_model, examples):
    loaded = load_base(str(tiny_model))
    encoded = [encode_example(loaded.tokenizer, e["messages"]) for e in examples[:5]]
    packed = collate_packed(encoded, loaded.tokenizer.pad_token_id)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        padded_loss = answer_loss(loaded.model, collate(encoded, loaded.tokenizer.pad_token_id))
        packed_loss = answer_loss(loaded.model, packed)
    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)


def test_padding_after_a_rows_last_token_changes_no_loss(tiny_model, examples):
    """Right-padded rows are fed without their mask (causal attention never reaches the padding), so the batch's
    token-summed loss is the sum of each example's loss alone; a mask with padding elsewhere is kept."""
    loaded = load_base(str(tiny_model))
    encoded = [encode_example(loaded.tokenizer, e["messages"]) for e in examples[:4]]
    batch = collate(encoded, loaded.tokenizer.pad_token_id)
    assert len({len(e["input_ids"]) for e in encoded}) > 1 and _right_padded(batch["attention_mask"])
    assert not _right_padded(batch["attention_mask"].flip(1))
    with torch.no_grad():
        together = answer_loss(loaded.model, batch, num_items=1)
        alone = sum(answer_loss(loaded.model, collate([e], loaded.tokenizer.pad_token_id), num_items=1) for e in encoded)
    assert together.item() == pytest.approx(alone.item(), rel=1e-5)


def test_grouped_batches_hold_neighbouring_lengths_in_a_seeded_random_order():
    pick = random.Random(1)
    lengths = [pick.choice([150, 160, 600, 650]) + pick.randrange(7) for _ in range(50)]
    order = list(LengthGroupedOrder(lengths, batch_size=4, seed=3))
    assert sorted(order) == list(range(50))
    batches = [order[start:start + 4] for start in range(0, 50, 4)]
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(low[1] <= high[0] for low, high in zip(spans, spans[1:]))  # no two batches' length ranges overlap
    assert [min(lengths[i] for i in b) for b in batches] != sorted(min(lengths[i] for i in b) for b in batches)  # shuffled
    again = LengthGroupedOrder(lengths, batch_size=4, seed=3)
    assert list(again) == order  # a resumed run sees the same epoch
    again.set_epoch(1)
    assert list(again) != order


@pytest.mark.parametrize("precision, autocast", [("float32", False), ("bfloat16", True)])
def test_training_runs_the_decoder_in_the_chosen_precision(tiny_model, examples, tmp_path, precision, autocast):
    """The trainer autocasts inside ``model.forward``; the answer-only loss goes around it, so it autocasts itself."""
    loaded = add_lora(load_base(str(tiny_model)), LoraSettings())
    seen = []
    loaded.model.get_base_model().get_decoder().layers[0].register_forward_hook(
        lambda module, args, output: seen.append(torch.is_autocast_enabled("cpu")))
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path), max_steps=1, batch_size=2, gradient_accumulation_steps=1,
                         report_to="none", max_seq_length=1024, precision=precision)
    train_lora(loaded, {"train": examples[:4]}, config, say=lambda _: None)
    assert seen and set(seen) == {autocast}


@pytest.mark.slow  # compiling takes about 35 s even for the tiny model
def test_compiled_layers_train_evaluate_and_save(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    store.install_snapshot(data_dir, ["9921"])
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "out"), model_dir=str(tmp_path / "model"), max_steps=2,
                         batch_size=2, gradient_accumulation_steps=1, report_to="none", max_seq_length=1024, compile=True)
    said = []
    record = fine_tune(data_dir, ["9921"], DatasetSpec(windows=[(2, 1)], max_seq_length=1024), config, eval_limit=2, say=said.append)
    assert record["steps"] == 2 and record["train_settings"]["compile"] and record["final_val_loss"] is not None
    assert (tmp_path / "model" / "adapter_model.safetensors").exists() and not any("C++ compiler" in line for line in said)


def test_compile_without_a_cpp_compiler_says_so_and_trains_as_is(tiny_model, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    loaded = load_base(str(tiny_model))
    said = []
    assert not compile_layers(loaded.model, said.append)
    assert said == ["--compile needs a C++ compiler on a CPU (apt-get install g++); training without it"]


def test_the_model_dir_stores_the_domain_head_and_generation_uses_it(trained):
    ids = load_domain(trained["model_dir"])
    assert ids and trained["record"]["output_head"] == f"domain ({len(ids)} tokens)"
    loaded = load_trained(trained["model_dir"])
    lm = loaded.model.get_base_model()
    assert isinstance(lm.get_output_embeddings(), DomainLogits)
    prompt = encode_prompt(loaded.tokenizer, [{"role": "user", "content": "Date: 2025-01-03, Open: 141.5"}])
    answer = TransformersGenerator(loaded).generate([GenerationRequest(prompt, 30)])[0][0]
    written = loaded.tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert set(written) <= set(ids)


def test_a_model_dir_from_before_the_domain_head_loads_with_the_full_head(trained, tmp_path):
    old = tmp_path / "old-model"
    shutil.copytree(trained["model_dir"], old)
    (old / DOMAIN_FILE).unlink()
    loaded = load_trained(old)
    assert not isinstance(loaded.model.get_base_model().get_output_embeddings(), DomainLogits)
    forecaster = LLMForecaster.from_model_dir(old, data_dir=trained["data_dir"], attempts=1)
    history = store.read_prices(trained["data_dir"], "9921").iloc[:40]
    result = forecaster.predict_batch([ForecastRequest(history, 1, "9921", past=2)])[0]
    assert isinstance(result, Exception) or result.horizon == 1
    assert isinstance(load_trained(trained["model_dir"], full_head=True).model.get_base_model().get_output_embeddings(), torch.nn.Linear)


def generation_requests(trained, loaded) -> list:
    """12 forecasters' generation requests (prompt, supplied header and dates) of two prompt lengths."""
    history = store.read_prices(trained["data_dir"], "9921")
    forecaster = LLMForecaster(TransformersGenerator(loaded), loaded.info, data_dir=trained["data_dir"])
    requests = []
    for end, (past, future) in zip(range(30, 42), [(2, 1), (5, 3)] * 6):  # prompts of two lengths, padded together
        messages = forecaster.messages(history.iloc[:end], future, "9921", past=past)
        request = forecaster._job(messages, history.iloc[:end], future).request
        requests.append(dataclasses.replace(request, max_new_tokens=20 + end % 7))
    return requests


def test_batched_answers_equal_one_by_one_answers_and_transformers_own_decoding(trained):
    loaded = load_trained(trained["model_dir"])
    requests = generation_requests(trained, loaded)
    batched = TransformersGenerator(loaded, batch_size=5).generate(requests)
    one_by_one = [TransformersGenerator(loaded, batch_size=1).generate([r])[0] for r in requests]
    assert batched == one_by_one
    # the in-place cache and grouped attention write what transformers' own cache and attention write
    assert TransformersGenerator(loaded, batch_size=5, in_place=False).generate(requests) == batched
    assert (TransformersGenerator(loaded, batch_size=5, in_place=False).generate(requests, sample=True, seed=4)
            == TransformersGenerator(loaded, batch_size=5).generate(requests, sample=True, seed=4))


def test_the_generator_folds_the_adapter_into_the_weights_and_answers_the_same(trained):
    unfolded = load_trained(trained["model_dir"])
    folded = load_generator(trained["model_dir"])
    assert not any("lora" in name for name, _ in folded.loaded.model.named_parameters())
    requests = generation_requests(trained, unfolded)
    assert folded.generate(requests) == TransformersGenerator(unfolded).generate(requests)


def test_bfloat16_forecasting_casts_the_weights_but_not_the_rotary_frequencies_and_still_answers(trained):
    generator = load_generator(trained["model_dir"], precision="bfloat16")
    model = generator.loaded.model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.get_output_embeddings().rows.dtype == torch.bfloat16
    assert all(b.dtype == torch.float32 for name, b in model.named_buffers() if "inv_freq" in name)
    answers = generator.generate(generation_requests(trained, generator.loaded))
    assert all(text[0] for text in answers)
    assert {p.dtype for p in load_generator(trained["model_dir"], precision="float32").loaded.model.parameters()} == {torch.float32}


def test_an_unknown_precision_is_one_clear_error(trained):
    with pytest.raises(StockLLMError, match="unknown precision 'fp8'; choose one of auto, float32, bfloat16"):
        load_generator(trained["model_dir"], precision="fp8")


def test_predict_batch_gives_what_predict_gives_one_at_a_time(trained):
    forecaster = LLMForecaster.from_model_dir(trained["model_dir"], data_dir=trained["data_dir"], attempts=2)
    history = store.read_prices(trained["data_dir"], "9921")
    requests = [ForecastRequest(history.iloc[:end], 1, "9921", past=2) for end in (30, 31, 32)]
    requests.append(ForecastRequest(history.iloc[:1], 3, "9921", past=5))  # too little history: its own error
    batched = forecaster.predict_batch(requests)
    assert isinstance(batched[-1], StockLLMError)
    for request, result in zip(requests[:3], batched):
        try:
            single = forecaster.predict(request.history, request.horizon, code=request.code, past=request.past)
        except StockLLMError as exc:
            assert isinstance(result, StockLLMError) and str(result) == str(exc)
            continue
        assert not isinstance(result, Exception)
        pd.testing.assert_frame_equal(result.frame, single.frame)
        assert result.raw_text == single.raw_text


def test_a_time_budget_stops_training_cleanly_and_saves_the_model(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    store.install_snapshot(data_dir, ["9921"])
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "out"), model_dir=str(tmp_path / "model"), max_steps=500,
                         batch_size=2, gradient_accumulation_steps=1, report_to="none", max_seq_length=1024, time_budget="2s")
    record = fine_tune(data_dir, ["9921"], DatasetSpec(windows=[(2, 1)], max_seq_length=1024), config, eval_limit=2, say=lambda _: None)
    assert record["stopped_by_time_budget"] and 1 <= record["steps"] < 500 and record["planned_steps"] == 500
    assert (tmp_path / "model" / "adapter_model.safetensors").exists() and (tmp_path / "model" / DOMAIN_FILE).exists()


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("1.5h", 5400), ("60", 3600), ("", None)])
def test_time_budgets_read_like_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5m", "0s", "soon", "nanm", "infh"])
def test_a_time_budget_that_is_not_a_positive_duration_is_refused(text):
    with pytest.raises(StockLLMError, match="--time-budget"):
        parse_duration(text)


def test_resume_refuses_a_run_trained_on_other_data(tmp_path):
    from stockllm.llm.training import check_resume_dataset

    run = {"base_model": "m", "dataset": {"windows": [[1, 1]]}, "companies": ["2330"], "data_range": {"train": {"last": "2025-08-29"}}}
    check_resume_dataset(tmp_path, run, resume=False)  # a fresh run records what it trains on
    check_resume_dataset(tmp_path, run, resume=True)  # the same options resume
    other = {**run, "data_range": {"train": {"last": "2025-10-31"}}}
    with pytest.raises(StockLLMError, match="trained on another data_range"):
        check_resume_dataset(tmp_path, other, resume=True)


def test_the_forecaster_reports_each_attempt_to_a_progress_callback(trained):
    forecaster = LLMForecaster.from_model_dir(trained["model_dir"], data_dir=trained["data_dir"], attempts=2)
    said: list[str] = []
    forecaster.progress = said.append
    history = store.read_prices(trained["data_dir"], "9921")
    forecaster.predict_batch([ForecastRequest(history.iloc[:30], 3, "9921", past=5)])
    assert said[0] == "attempt 1/2: writing 1 answer" and all(line.startswith("attempt ") for line in said)
