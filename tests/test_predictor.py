"""Model dir round-trip, prompts rebuilt exactly as in training, and how answers become forecasts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from stockllm import store
from stockllm.cli import main as cli_main
from stockllm.config import TrainConfig
from stockllm.dataset import DatasetSpec, build_dataset
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import Forecaster
from stockllm.llm.forecaster import ForecastFailed, LLMForecaster, choose_past
from stockllm.llm.backends import load_trained
from stockllm.llm.chat import encode_prompt
from stockllm.llm.training import fine_tune
from stockllm.llm.predictor import StockPredictor, context_text
from tiny_llm import build_tiny_llm

CODES = ["9921", "2330"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny model fine-tuned 2 steps on the snapshot of two companies, saved as a model dir."""
    root = tmp_path_factory.mktemp("trained")
    data_dir = root / "data"
    store.install_snapshot(data_dir, CODES)
    base = build_tiny_llm(root / "base")
    spec = DatasetSpec(windows=[(2, 1), (5, 3)], max_seq_length=1024)
    config = TrainConfig(model_name=str(base), output_dir=str(root / "out"), model_dir=str(root / "model"), max_steps=2,
                         batch_size=2, gradient_accumulation_steps=1, report_to="none", max_seq_length=1024)
    record = fine_tune(data_dir, CODES, spec, config, eval_limit=4, say=lambda _: None)
    return {"data_dir": data_dir, "model_dir": root / "model", "spec": spec, "record": record, "base": base}


def test_model_dir_holds_adapter_tokenizer_and_what_it_was_trained_on(trained):
    model_dir = trained["model_dir"]
    assert (model_dir / "adapter_config.json").exists() and (model_dir / "adapter_model.safetensors").exists()
    assert (model_dir / "tokenizer.json").exists()
    info = json.loads((model_dir / "training_info.json").read_text())
    assert info["base_model"] == str(trained["base"])
    assert info["dataset"] == trained["spec"].to_dict()
    assert info["steps"] == 2 and info["final_train_loss"] > 0 and info["final_val_loss"] > 0
    assert info["data_range"]["train"]["first"] and info["companies"] == CODES
    assert info["lora"]["r"] == 16 and info["train_settings"]["optim"] == "adamw_torch"


def test_adapter_save_load_round_trip_gives_the_same_model(trained):
    loaded = load_trained(trained["model_dir"])
    again = load_trained(trained["model_dir"])
    ids = torch.tensor([encode_prompt(loaded.tokenizer, [{"role": "user", "content": "Date: 2025-01-03, Open: 141.5"}])])
    with torch.no_grad():
        assert torch.allclose(loaded.model(input_ids=ids).logits, again.model(input_ids=ids).logits)
        base_logits = loaded.model.get_base_model()(input_ids=ids).logits
    lora_b = [p for n, p in loaded.model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "the saved adapter holds the trained (non-zero) LoRA B weights"
    assert base_logits.shape == loaded.model(input_ids=ids).logits.shape


def test_predict_rebuilds_the_training_prompt_exactly(trained):
    data_dir, spec = trained["data_dir"], trained["spec"]
    built = build_dataset(data_dir, CODES, spec)
    example = next(e for e in built.splits["test"] if e["code"] == "9921" and e["window"] == "5:3")
    predictor = StockPredictor(trained["model_dir"], data_dir)
    messages = predictor.messages("9921", past=5, future=3, as_of=example["origin"])
    assert messages == example["messages"][:1]
    forecaster = predictor.forecaster
    history = store.read_prices(data_dir, "9921")
    history = history[history["date"] <= example["origin"]]
    job = forecaster._job(messages, history, 3)
    prompt = encode_prompt(forecaster.generator.tokenizer, example["messages"])
    assert job.request.prompt_ids[: len(prompt)] == prompt  # then the answer's supplied header and first date
    supplied = forecaster.generator.tokenizer.decode(job.request.prompt_ids[len(prompt):])
    assert supplied.startswith("The next 3 days price is: Date:\n ")
    # the forecaster interface (history instead of a data dir) builds the same turn
    assert forecaster.messages(history, 3, "9921") == example["messages"][:1]
    assert forecaster.messages(history, 3, "9921", past=5) == example["messages"][:1]


def test_an_untrained_model_is_reported_not_papered_over(trained):
    predictor = StockPredictor(trained["model_dir"], trained["data_dir"], attempts=2)
    with pytest.raises(ForecastFailed) as failure:
        predictor.inference("9921", past=2, future=1)
    assert len(failure.value.attempts) == 2 and "2 attempts" in str(failure.value)
    assert isinstance(predictor.forecaster, Forecaster)


class ScriptedGenerator:
    """Stands in for the model: returns the given answers in turn (the parse/validate/combine logic is under test)."""

    name = "scripted"

    def __init__(self, real, answers: list[str]):
        self.tokenizer, self.answers, self.calls = real.tokenizer, list(answers), []

    def generate(self, requests, *, sample=False, seed=0, samples=1):
        self.calls.append(sample)
        return [[self.answers.pop(0) for _ in range(samples)] for _ in requests]


def answer(rows: list[tuple[str, float]], capacity: int = 1000) -> str:
    lines = "".join(f" {d}, Open: {c}, High: {c + 1}, Low: {c - 1}, Close: {c}, Capacity: {capacity}\n" for d, c in rows)
    return f"The next {len(rows)} days price is: Date:\n{lines}"


@pytest.fixture
def forecaster(trained) -> LLMForecaster:
    return LLMForecaster.from_model_dir(trained["model_dir"], data_dir=trained["data_dir"])


def test_a_malformed_answer_is_retried_with_sampling_then_used(forecaster):
    history = pd.DataFrame({"date": ["2025-01-02", "2025-01-03"], "open": [140.0, 141.5], "high": [143.5, 143.5],
                            "low": [138.0, 138.0], "close": [141.0, 139.0], "capacity": [1000, 1447003]})
    forecaster.generator = ScriptedGenerator(forecaster.generator, ["I think it goes up", answer([("2025-01-06", 140.0)])])
    forecast = forecaster.predict(history, 1, code="9921")
    assert forecaster.generator.calls == [False, True]  # greedy first, then a sampled retry
    assert list(forecast.frame.index) == ["2025-01-06"] and forecast.frame.loc["2025-01-06", "close"] == 140.0
    assert forecast.info["valid"] and forecast.info["parsed"] == 1 and len(forecast.info["attempts"]) == 2


def test_a_rule_breaking_answer_is_kept_only_with_its_problems(forecaster):
    history = pd.DataFrame({"date": ["2025-01-02", "2025-01-03"], "open": [100.0] * 2, "high": [101.0] * 2, "low": [99.0] * 2, "close": [100.0] * 2, "capacity": [10] * 2})
    jump = answer([("2025-01-06", 130.0)])  # +30%: beyond the ±10% limit
    forecaster.generator = ScriptedGenerator(forecaster.generator, [jump] * 3)
    forecast = forecaster.predict(history, 1, code="9921")
    assert not forecast.info["valid"] and any("limit" in p for p in forecast.info["problems"])


def test_samples_give_a_median_and_an_80_percent_interval(trained):
    forecaster = LLMForecaster.from_model_dir(trained["model_dir"], data_dir=trained["data_dir"], samples=5)
    history = pd.DataFrame({"date": ["2025-01-02", "2025-01-03"], "open": [100.0] * 2, "high": [101.0] * 2, "low": [99.0] * 2, "close": [100.0] * 2, "capacity": [10] * 2})
    closes = [96.0, 98.0, 100.0, 102.0, 104.0]
    forecaster.generator = ScriptedGenerator(forecaster.generator, [answer([("2025-01-06", c)]) for c in closes])
    forecast = forecaster.predict(history, 1, code="9921")
    row = forecast.frame.loc["2025-01-06"]
    assert row["close"] == 100.0 and row["close_lo"] == pytest.approx(96.8) and row["close_hi"] == pytest.approx(103.2)
    assert forecast.has_interval() and forecast.info["samples_used"] == 5


def test_choose_past_prefers_a_trained_window_for_the_horizon():
    spec = DatasetSpec(windows=[(1, 1), (5, 5), (20, 5), (60, 20)])
    assert choose_past(spec, 5) == 5 and choose_past(spec, 1) == 1 and choose_past(spec, 10) == 60 and choose_past(spec, 30) == 60


def test_choose_past_shows_all_given_days_when_they_make_a_trained_window():
    spec = DatasetSpec(windows=[(5, 5), (20, 5)])
    assert choose_past(spec, 5, available=20) == 20  # evaluating window 20:5 shows 20 days, not 5
    assert choose_past(spec, 5, available=300) == 5  # a long history that is no trained window: shortest past


def test_context_option_maps_auto_none_and_text():
    assert context_text("") is None and context_text("auto") is None and context_text("none") == ""
    assert context_text("TSMC raised guidance") == "TSMC raised guidance"


def test_predict_cli_prints_json_and_reports_failures_in_one_line(trained, capsys):
    code = cli_main(["predict", "--model-dir", str(trained["model_dir"]), "--data-dir", str(trained["data_dir"]),
                     "--code", "9921", "--past", "2", "--future", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the model gave no parseable forecast")


def test_predict_without_a_trained_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(StockLLMError, match="is not a trained model dir"):
        StockPredictor(tmp_path, tmp_path)


def test_predict_cli_takes_a_precision_and_refuses_it_where_the_backend_keeps_its_own(trained, capsys):
    common = ["predict", "--model-dir", str(trained["model_dir"]), "--data-dir", str(trained["data_dir"]), "--code", "9921",
              "--past", "2", "--future", "1"]
    assert cli_main([*common, "--precision", "bfloat16"]) == 2  # it loads and forecasts in bf16; this tiny model answers nonsense
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: the model gave no parseable forecast")
    assert cli_main([*common, "--precision", "bfloat16", "--backend", "llama.cpp"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --precision bfloat16 is for the transformers backend; the llama.cpp backend keeps its model's own format")
