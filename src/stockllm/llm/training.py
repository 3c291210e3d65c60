"""LoRA supervised fine-tuning: TRL's ``SFTTrainer`` with the write-up's settings as an ``SFTConfig``.

The examples are tokenised once by :func:`llm.chat.encode_example` (the same prompt text inference
builds) and handed to ``SFTTrainer`` as ``input_ids`` + ``labels``, so TRL trains on exactly the tokens
``predict`` will feed the model. On the transformers backend the loss is computed by
:func:`answer_loss`: the decoder runs on every token, the LM head only at answer positions
(labels != -100) — the token-summed cross-entropy the model's own forward gives, a fraction of the work
for Gemma's 262,144-word vocabulary. TRL's default loss pads those positions up to chunks of 256 and
recomputes the head under checkpointing, and its default bf16 is emulated (slow) on CPUs without native
bf16; ``bench/bench_train.py`` measures the two side by side. Everything else — optimiser, schedule,
gradient accumulation, checkpoints, ``--resume``, TensorBoard under ``<output-dir>/runs``, evaluation on the
validation split — is the stock trainer.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .. import store
from ..errors import StockLLMError
from .backends import (TRAINING_INFO, LoadedModel, check_precision, cpu_has_native_bf16, cuda_available, has_module,
                       trainable_parameters)
from .chat import IGNORE_INDEX, encode_example, stop_token_ids
from .domain_head import DomainHead, domain_loss, domain_token_ids, save_domain

WARMUP_STEPS = 5  # the write-up's warmup


# --- data ------------------------------------------------------------------------------------------------

@dataclass
class EncodedSplit:
    """Token ids of one split; examples longer than the maximum length are left out and counted."""

    examples: list[dict[str, list[int]]]
    dropped_too_long: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


def encode_split(tokenizer: Any, examples: list[dict], max_length: int, limit: int | None = None, seed: int = 3407) -> EncodedSplit:
    """Encode dataset examples (``{"messages": [...], ...}``); ``limit`` keeps a seeded random subset."""
    if limit is not None and len(examples) > limit:
        examples = random.Random(seed).sample(examples, limit)
    encoded, dropped = [], 0
    for example in examples:
        item = encode_example(tokenizer, example["messages"])
        if len(item["input_ids"]) > max_length:
            dropped += 1
            continue
        encoded.append(item)
    return EncodedSplit(encoded, dropped)


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n] = torch.tensor(feature["input_ids"])
        labels[row, :n] = torch.tensor(feature["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_packed(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Padding-free batch: the examples end to end in one row, ``position_ids`` restarting at 0 for each.

    With no attention mask, transformers reads the restarts as sequence boundaries and masks attention
    across them (``masking_utils.find_packed_sequence_indices``). Each example starts with its prompt, whose
    labels are -100, so no token is ever trained to predict the next example.
    """
    ids = torch.tensor([[t for f in features for t in f["input_ids"]]], dtype=torch.long)
    labels = torch.tensor([[t for f in features for t in f["labels"]]], dtype=torch.long)
    positions = torch.tensor([[i for f in features for i in range(len(f["input_ids"]))]], dtype=torch.long)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


class LengthGroupedOrder(torch.utils.data.Sampler):
    """The example order of ``--batching grouped``: each batch holds examples of neighbouring lengths, the batches
    come in random order.

    Transformers' ``LengthGroupedSampler`` sorts only within random "megabatches" of up to 50 batches (3 for a set
    of 48 examples), so every megabatch straddling the short 1:1 and the long 5:5 examples makes a batch that is
    mostly padding; sorting the whole epoch leaves at most one such batch. Equal lengths are ordered at random, and
    epoch ``k`` (:meth:`set_epoch`, called by the trainer) gives the same order in a resumed run.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        order = sorted(rng.sample(range(len(self.lengths)), len(self.lengths)), key=self.lengths.__getitem__)
        full = len(order) - len(order) % self.batch_size
        batches = [order[start:start + self.batch_size] for start in range(0, full, self.batch_size)]
        rng.shuffle(batches)  # a short last batch stays last: anywhere else it would shift every batch after it
        return iter([index for batch in batches for index in batch] + order[full:])


BATCHING = {
    "padded": collate,  # random batches right-padded to their longest example (the trainer's default)
    "grouped": collate,  # batches of neighbouring lengths (LengthGroupedOrder), so little padding is left
    "packed": collate_packed,  # padding-free rows
}


# --- loss ------------------------------------------------------------------------------------------------

def _causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` inside a peft wrapper (LoRA layers are injected in place, so they still run)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_loss(model: Any, batch: dict[str, torch.Tensor], num_items: int | torch.Tensor | None = None,
                domain: DomainHead | None = None) -> torch.Tensor:
    """Token-summed next-token cross-entropy over answer positions, divided by ``num_items`` (default: their count).

    Without ``domain``: equal to the model's own loss (``model(**batch).loss``), but the LM head — the largest
    matmul for big vocabularies — is computed only where a label exists. With ``domain``: the cross-entropy of
    the softmax over the domain tokens only (:func:`stockllm.llm.domain_head.domain_loss`). A batch without
    ``attention_mask`` is a packed one (``position_ids`` mark its sequences).
    """
    lm = _causal_lm(getattr(model, "module", model))  # under DDP / DeepSpeed the trainer hands us their wrapper
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids") if key in batch}
    if "attention_mask" in inputs and _right_padded(inputs["attention_mask"]):
        del inputs["attention_mask"]  # causal attention never reaches the padding after a row's last token
    if hasattr(model, "module"):  # through the wrapper's own forward, or its gradients are never averaged across ranks
        hidden = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
    else:
        hidden = lm.get_decoder()(**inputs, use_cache=False).last_hidden_state  # no cache: packed rows are detected only without one
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    if domain is not None:
        total = domain_loss(lm, domain, hidden[:, :-1][keep], targets[keep])
    else:
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        softcap = getattr(lm.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        total = F.cross_entropy(logits, targets[keep], reduction="sum")
    count = num_items if num_items is not None else keep.sum().clamp(min=1)
    return total / count


def _right_padded(mask: torch.Tensor) -> bool:
    """Whether every row of an attention mask is ones, then zeros (:func:`collate`'s padding).

    Such a mask changes nothing at the real tokens — a causal model's token attends only to the tokens before it,
    all real — so the loss is the same without it, and without it the attention can take its causal fast path
    (the mask hides nothing) instead of reading a mask over the whole square of the batch's length."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def compile_layers(model: Any, say: Callable[[str], None]) -> bool:
    """``--compile``: each decoder layer through ``torch.compile`` (inductor, shapes dynamic so that batches of every
    length share one compilation). Fusing the layers' elementwise work (norms, GELU, rotary, LoRA's adds) made a
    CPU training step 3–18% faster (varying between runs), after a one-time compile of 37–75 s (2 cores, Gemma 3 270M; docs/llm.md).
    Inductor writes C++ for a CPU: without a compiler the layers stay as they are, and that is said."""
    if not cuda_available() and not any(shutil.which(name) for name in (os.environ.get("CXX"), "g++", "c++", "clang++") if name):
        say("--compile needs a C++ compiler on a CPU (apt-get install g++); training without it")
        return False
    for layer in _causal_lm(getattr(model, "module", model)).get_decoder().layers:
        layer.compile(dynamic=True)
    return True


def _trainer_class():
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        """``SFTTrainer`` whose loss computes the LM head only at answer positions (over the ``domain`` tokens
        when set), whose ``grouped`` batches are grouped over the whole epoch (:class:`LengthGroupedOrder`), and
        which counts trained tokens."""

        tokens_seen = 0
        domain: DomainHead | None = None

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return LengthGroupedOrder([len(ids) for ids in dataset["input_ids"]], self.args.per_device_train_batch_size,
                                     self.args.seed if self.args.data_seed is None else self.args.data_seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                mask = inputs.get("attention_mask")
                self.tokens_seen += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            with self.accelerator.autocast():  # the trainer autocasts inside model.forward, which answer_loss goes around
                loss = answer_loss(model, inputs, num_items_in_batch, self.domain)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # the count is over all ranks, DDP averages: as Trainer.compute_loss
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlySFTTrainer


# --- training --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    steps: int
    train_loss: float | None
    val_loss: float | None
    seconds: float
    tokens: int
    train_examples: int
    val_examples: int
    dropped_too_long: int
    optim: str
    trainable_params: int
    total_params: int
    log_history: list[dict] = field(default_factory=list)
    planned_steps: int = 0
    domain_ids: list[int] | None = None
    batching: str = "padded"

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def resolve_optim(optim: str, say: Callable[[str], None]) -> str:
    """``adamw_8bit`` needs bitsandbytes on CUDA; elsewhere ``adamw_torch`` is used, and said."""
    if "8bit" in optim and not (cuda_available() and has_module("bitsandbytes")):
        say(f"--optim {optim} needs CUDA + bitsandbytes; using adamw_torch instead")
        return "adamw_torch"
    return optim


def precision_flags(precision: str = "auto") -> dict[str, bool]:
    """The trainer's ``bf16``/``fp16`` flags for ``--precision``. ``auto``: bf16 autocast where the hardware has it
    (GPUs, x86 CPUs with AVX512-BF16 or AMX: fp32 master weights, bf16 matrix products), fp16 on older GPUs, plain
    fp32 on CPUs that would emulate bf16 (7.5× slower there)."""
    if check_precision(precision) != "auto":
        return {"bf16": precision == "bfloat16", "fp16": False}
    if cuda_available():
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": cpu_has_native_bf16(), "fp16": False}


def parse_duration(text: str) -> float | None:
    """``"90s"``, ``"45m"``, ``"1.5h"`` (a bare number: minutes) → seconds; empty → None (no limit)."""
    text = (text or "").strip().lower()
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "m")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise StockLLMError(f"--time-budget {text!r} is not a positive duration; write e.g. 90s, 45m or 1.5h")
    return seconds


def sft_config(config: Any, *, steps_hint: int, eval_steps: int, optim: str, evaluate: bool = True):
    """TRL's ``SFTConfig`` from the write-up's flags (a ``TrainConfig`` or argparse namespace); ``evaluate``:
    whether there is a validation split to evaluate every ``eval_steps``.

    Gradient checkpointing is left to :func:`stockllm.llm.backends.add_lora` (on for GPUs and quantised models, where
    memory is short; off on CPU, where it would only add a second forward pass).
    """
    from trl import SFTConfig

    report = [] if config.report_to in ("none", "", None) else [config.report_to]
    return SFTConfig(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        warmup_steps=min(WARMUP_STEPS, steps_hint // 10),
        learning_rate=config.learning_rate,
        logging_steps=config.logging_steps,
        optim=optim,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        seed=config.random_state,
        data_seed=config.random_state,
        report_to=report,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        prediction_loss_only=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not cuda_available(),
        max_length=config.max_seq_length,
        gradient_checkpointing=False,
        loss_type="nll",  # the model's own loss where the trainer does not replace it (unsloth's fused one)
        dataset_kwargs={"skip_prepare_dataset": True},  # encode_split already tokenised, labelled and length-checked
        train_sampling_strategy="group_by_length" if batching(config) == "grouped" else "random",
        **precision_flags(getattr(config, "precision", "auto")),
    )


def batching(config: Any) -> str:
    """The ``--batching`` mode, checked (``padded``, ``grouped`` or ``packed``)."""
    mode = getattr(config, "batching", "padded")
    if mode not in BATCHING:
        raise StockLLMError(f"--batching {mode!r} is not one of {', '.join(BATCHING)}")
    return mode


def time_budget_callback(seconds: float, say: Callable[[str], None]):
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Ends training after the step that would otherwise overrun ``seconds`` (the model is then saved as usual)."""

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = time.monotonic() - self.start
            per_step = elapsed / max(state.global_step, 1)
            if elapsed + per_step > seconds and state.global_step < state.max_steps:
                control.should_training_stop = True
                self.stopped_at = state.global_step
                say(f"  time budget of {seconds / 60:.1f} min reached after step {state.global_step}/{state.max_steps}: stopping and saving")

    return TimeBudget()


def progress_callback(say: Callable[[str], None]):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One line per log event on stderr: step, loss, learning rate, elapsed time."""

        def __init__(self) -> None:
            self.start = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            parts = [f"{k} {v:.4g}" for k, v in logs.items() if k in ("loss", "eval_loss", "grad_norm", "learning_rate")]
            if parts:
                say(f"  step {state.global_step}/{state.max_steps}: {', '.join(parts)} ({time.monotonic() - self.start:.0f}s)")

    return Progress()


def train_lora(loaded: LoadedModel, splits: dict[str, list[dict]], config: Any, *, resume: bool = False,
               eval_limit: int | None = 200, say: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune ``loaded.model`` (already LoRA-wrapped) on ``splits['train']``, evaluating on the validation split.

    Unless ``config.full_head``, the loss uses the domain head built from the answers of both splits
    (``TrainResult.domain_ids``; :func:`save_model_dir` stores it beside the adapter).
    """
    from transformers.trainer_utils import get_last_checkpoint

    tokenizer = loaded.tokenizer
    mode = batching(config)
    budget = parse_duration(getattr(config, "time_budget", ""))
    train = encode_split(tokenizer, splits.get("train", []), config.max_seq_length, seed=config.random_state)
    val = encode_split(tokenizer, validation_split(splits), config.max_seq_length, limit=eval_limit, seed=config.random_state)
    if not train.examples:
        raise StockLLMError(f"no training example fits --max-seq-length {config.max_seq_length} ({train.dropped_too_long} too long); raise it or use shorter --windows")
    if train.dropped_too_long or val.dropped_too_long:
        say(f"left out {train.dropped_too_long + val.dropped_too_long} examples longer than --max-seq-length {config.max_seq_length} tokens")
    per_step = config.batch_size * config.gradient_accumulation_steps
    steps = config.max_steps if config.max_steps > 0 else math.ceil(config.num_epochs * len(train.examples) / per_step)
    eval_steps = max(1, steps // 4)
    optim = resolve_optim(config.optim, say)
    checkpoint = None
    if resume:
        checkpoint = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
        if checkpoint is None:
            raise StockLLMError(f"--resume found no checkpoint-* folder in {config.output_dir}; train without --resume first")
        say(f"resuming from {checkpoint}")
    domain_ids = None if config.full_head else domain_token_ids((e["labels"] for e in train.examples + val.examples), stop_token_ids(tokenizer))
    trainable, total = trainable_parameters(loaded.model)
    head = "full output layer" if domain_ids is None else f"domain head of {len(domain_ids)} tokens"
    say(f"training {steps} steps × {per_step} examples on {len(train.examples)} examples ({loaded.backend} backend, {mode} batches, {head}, "
        f"{trainable:,} trainable of {total:,} parameters = {100 * trainable / total:.2f}%)")

    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    # unsloth brings its own fused loss kernels; the answer-only head is for the plain transformers backend
    trainer_cls = SFTTrainer if loaded.backend == "unsloth" else _trainer_class()
    callbacks = [progress_callback(say)]
    if budget is not None:
        callbacks.append(time_budget_callback(budget, say))
    collator = BATCHING[mode]
    trainer = trainer_cls(
        model=loaded.model,
        args=sft_config(config, steps_hint=steps, eval_steps=eval_steps, optim=optim, evaluate=bool(val.examples)),
        train_dataset=Dataset.from_list(train.examples),
        eval_dataset=Dataset.from_list(val.examples) if val.examples else None,
        data_collator=lambda features: collator(features, tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if domain_ids is not None and loaded.backend != "unsloth":
        trainer.domain = DomainHead(domain_ids, _causal_lm(loaded.model).get_output_embeddings().weight.shape[0])
    trainer.remove_callback(PrinterCallback)  # progress goes to stderr through our own callback
    if getattr(config, "compile", False) and loaded.backend != "unsloth":  # unsloth brings its own kernels
        compile_layers(loaded.model, say)
    start = time.monotonic()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - start
    final_evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == trainer.state.global_step]
    val_loss = final_evals[-1] if final_evals else (trainer.evaluate()["eval_loss"] if val.examples else None)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(
        steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else output.training_loss,
        val_loss=val_loss,
        seconds=seconds,
        tokens=getattr(trainer, "tokens_seen", 0),
        train_examples=len(train.examples),
        val_examples=len(val.examples),
        dropped_too_long=train.dropped_too_long + val.dropped_too_long,
        optim=optim,
        trainable_params=trainable,
        total_params=total,
        log_history=trainer.state.log_history,
        planned_steps=steps,
        domain_ids=domain_ids,
        batching=mode,
    )


def validation_split(splits: dict[str, list[dict]]) -> list[dict]:
    """The validation examples, whichever of the usual names the dataset gives them."""
    for name in ("val", "validation", "valid"):
        if name in splits:
            return splits[name]
    return []


def save_model_dir(loaded: LoadedModel, model_dir: Path | str, info: dict, domain_ids: list[int] | None = None) -> Path:
    """Write adapter + tokenizer + ``training_info.json`` (+ the domain head's ids) into a fresh folder, then swap
    it into place."""
    target = Path(model_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    loaded.model.save_pretrained(str(staging))
    loaded.tokenizer.save_pretrained(str(staging))
    store.atomic_write_json(staging / TRAINING_INFO, info)
    if domain_ids is not None:
        save_domain(staging, domain_ids, _causal_lm(loaded.model).get_output_embeddings().weight.shape[0])
    previous = target.with_name(f".{target.name}.old")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return target


# --- the whole fine-tune: dataset → model → train → model dir -------------------------------------------

RUN_RECORD = "stockllm_run.json"


def check_resume_dataset(output_dir: Path, record: dict, resume: bool) -> None:
    """Record what a run in ``output_dir`` trains on; ``--resume`` must continue on exactly that.

    Checkpoints hold weights, not the data they saw: resuming with other windows, fields, companies or split
    dates would save a model dir that claims a data range its weights were not trained on (and evaluation
    trusts that range to keep the model off the days it learned from).
    """
    path = output_dir / RUN_RECORD
    if resume and path.exists():
        before = store.read_json(path, dict, "delete it to resume anyway")
        changed = sorted(key for key in record if json.loads(json.dumps(record[key], default=str)) != before.get(key))
        if changed:
            raise StockLLMError(f"--resume continues a run in {output_dir} trained on another {', '.join(changed)}; "
                                "use the same options as that run, or train without --resume (or in another --output-dir)")
        return
    store.atomic_write_json(path, record)


def fine_tune(data_dir: Path | str, companies: list, spec: Any, config: Any, *, resume: bool = False, backend: str = "auto",
              eval_limit: int | None = None, say: Callable[[str], None] = print) -> dict:
    """Build the dataset of ``spec``, LoRA fine-tune ``config.model_name`` on it and save ``config.model_dir``.

    Returns the ``training_info.json`` record: base model, dataset spec, data range, losses, steps, time.
    """
    from dataclasses import asdict, fields as dataclass_fields

    from .. import __version__
    from ..config import TrainConfig
    from ..dataset import build_dataset
    from .backends import LoraSettings, add_lora, load_base

    say(f"building the dataset for {len(companies)} compan{'y' if len(companies) == 1 else 'ies'} (windows {', '.join(f'{p}:{f}' for p, f in spec.windows)}, fields {spec.fields}, context {spec.context})")
    built = build_dataset(data_dir, companies, spec)
    totals = built.metadata["totals"]
    say(f"  {totals['train']:,} training, {totals['validation']:,} validation, {totals['test']:,} test examples")
    for note in built.metadata["notes"]:
        if "--max-seq-length" in note:
            say(note)
    check_resume_dataset(Path(config.output_dir), {"base_model": config.model_name, "dataset": spec.to_dict(),
                                                   "companies": built.metadata["companies"], "data_range": built.metadata["date_ranges"]}, resume)
    say(f"loading {config.model_name}")
    loaded = add_lora(load_base(config.model_name, max_seq_length=config.max_seq_length, load_in_4bit=config.load_in_4bit,
                                load_in_8bit=config.load_in_8bit, backend=backend), LoraSettings.from_config(config))
    eval_limit = eval_limit if eval_limit is not None else getattr(config, "eval_examples", 200)
    result = train_lora(loaded, built.splits, config, resume=resume, eval_limit=eval_limit, say=say)
    settings = {f.name: getattr(config, f.name) for f in dataclass_fields(TrainConfig)}
    info = {
        "base_model": config.model_name,
        "backend": loaded.backend,
        "max_seq_length": config.max_seq_length,
        "load_in_4bit": config.load_in_4bit,
        "load_in_8bit": config.load_in_8bit,
        "lora": asdict(LoraSettings.from_config(config)),
        "train_settings": {**settings, "optim": result.optim},
        "dataset": spec.to_dict(),
        "companies": built.metadata["companies"],
        "data_range": built.metadata["date_ranges"],
        "split_starts": built.metadata["split_starts"],
        "examples": {"train": result.train_examples, "validation_used": result.val_examples, **{f"{k}_built": v for k, v in totals.items()},
                     "left_out_too_long": result.dropped_too_long},
        "final_train_loss": result.train_loss,
        "final_val_loss": result.val_loss,
        "steps": result.steps,
        "planned_steps": result.planned_steps,
        "stopped_by_time_budget": result.steps < result.planned_steps,
        "batching": result.batching,
        "output_head": "full" if result.domain_ids is None else f"domain ({len(result.domain_ids)} tokens)",
        "seconds": round(result.seconds, 1),
        "train_tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "stockllm_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch / torchrun every rank trains, one saves
        save_model_dir(loaded, config.model_dir, info, result.domain_ids)
        say(f"saved adapter, tokenizer and {TRAINING_INFO} to {config.model_dir}")
    return info
