"""Model loading behind one interface, with two backends and the write-up's LoRA settings.

* **unsloth** — the write-up's own path (``FastLanguageModel.from_pretrained`` + ``get_peft_model``), used
  when CUDA is available and the optional ``[gpu]`` extra is installed. Imported lazily: unsloth refuses
  to import without a GPU.
* **transformers + peft** — everywhere else, with the same LoRA settings. 4/8-bit loading needs CUDA and
  bitsandbytes; without them it is a one-line error instead of a silent full-precision load.

``model_name`` is a hub name, a local folder, or ``packaged:gemma-3-270m`` (see :mod:`stockllm.llm.packaged`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import PRECISIONS
from ..errors import StockLLMError
from .packaged import is_packaged, packaged_model_dir

LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BACKENDS = ("auto", "unsloth", "transformers")
TRAINING_INFO = "training_info.json"


@dataclass
class LoraSettings:
    """The write-up's ``get_peft_model`` arguments (its values are the defaults)."""

    r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    random_state: int = 3407
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGET_MODULES))
    bias: str = "none"
    use_rslora: bool = False

    @classmethod
    def from_config(cls, config: Any) -> "LoraSettings":
        """From a :class:`~stockllm.config.TrainConfig` or an argparse namespace with its fields."""
        return cls(r=config.rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, random_state=config.random_state)


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer, and how it was loaded."""

    model: Any
    tokenizer: Any
    backend: str  # "unsloth" or "transformers"
    base_model: str  # the name the user gave (e.g. packaged:gemma-3-270m)
    info: dict = field(default_factory=dict)  # training_info.json of a trained model dir, else {}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose_backend(requested: str = "auto") -> str:
    """``unsloth`` when asked for or (``auto``) when CUDA and unsloth are both there; else ``transformers``."""
    if requested not in BACKENDS:
        raise StockLLMError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    unsloth_ok = cuda_available() and has_module("unsloth")
    if requested == "unsloth" and not unsloth_ok:
        raise StockLLMError("the unsloth backend needs a CUDA GPU and `pip install .[gpu]`; use --backend transformers")
    if requested == "auto":
        return "unsloth" if unsloth_ok else "transformers"
    return requested


def resolve_model_path(model_name: str) -> str:
    """What ``from_pretrained`` gets: the cached folder of a packaged model, a local folder, or a hub name."""
    if is_packaged(model_name):
        return str(packaged_model_dir(model_name))
    path = Path(model_name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise StockLLMError(f"{path} has no config.json; give a Hugging Face model folder, a hub name, or packaged:gemma-3-270m")
        return str(path)
    return model_name


def check_quantisation(load_in_4bit: bool, load_in_8bit: bool) -> None:
    if load_in_4bit and load_in_8bit:
        raise StockLLMError("--load_in_4bit and --load_in_8bit exclude each other; give at most one")
    if (load_in_4bit or load_in_8bit) and not (cuda_available() and has_module("bitsandbytes")):
        flag = "--load_in_4bit" if load_in_4bit else "--load_in_8bit"
        raise StockLLMError(f"{flag} needs a CUDA GPU and bitsandbytes (`pip install .[gpu]`); drop the flag to load in full precision")


def ensure_pad_token(tokenizer: Any) -> None:
    """Batches need padding; models without a pad token (Llama) pad with their end-of-sequence token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_base(model_name: str, *, max_seq_length: int = 2048, load_in_4bit: bool = False, load_in_8bit: bool = False,
              backend: str = "auto") -> LoadedModel:
    """The base model and tokenizer, ready for :func:`add_lora`."""
    check_quantisation(load_in_4bit, load_in_8bit)
    backend = choose_backend(backend)
    path = resolve_model_path(model_name)
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=path, max_seq_length=max_seq_length, dtype=None, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit
        )
    else:
        model, tokenizer = _load_transformers(path, load_in_4bit, load_in_8bit)
    if not getattr(tokenizer, "chat_template", None):
        raise StockLLMError(f"the tokenizer of {model_name} has no chat template; use an instruct model or packaged:gemma-3-270m")
    ensure_pad_token(tokenizer)
    return LoadedModel(model, tokenizer, backend, model_name)


def _load_transformers(path: str, load_in_4bit: bool, load_in_8bit: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if load_in_4bit or load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit)
        kwargs["device_map"] = {"": 0}
    elif cuda_available():
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["device_map"] = {"": 0}
    else:
        kwargs["dtype"] = torch.float32  # fp32 master weights on CPU; training autocasts to bf16
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise StockLLMError(f"cannot load model {path!r} ({str(exc).splitlines()[0]}); give a local folder or packaged:gemma-3-270m when offline") from None
    return model, tokenizer


def add_lora(loaded: LoadedModel, lora: LoraSettings) -> LoadedModel:
    """Wrap the model with trainable LoRA adapters (the write-up's ``get_peft_model`` call)."""
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        loaded.model = FastLanguageModel.get_peft_model(
            loaded.model, r=lora.r, target_modules=lora.target_modules, lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout, bias=lora.bias, use_gradient_checkpointing="unsloth",
            random_state=lora.random_state, use_rslora=lora.use_rslora, loftq_config=None,
        )
        return loaded
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(loaded.model, "is_loaded_in_4bit", False) or getattr(loaded.model, "is_loaded_in_8bit", False):
        loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=True)
    elif cuda_available():
        loaded.model.gradient_checkpointing_enable()
        loaded.model.enable_input_require_grads()
    torch.manual_seed(lora.random_state)  # the LoRA A matrices are initialised from torch's generator
    config = LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias=lora.bias,
                        target_modules=_present_targets(loaded.model, lora.target_modules), use_rslora=lora.use_rslora,
                        task_type="CAUSAL_LM")
    loaded.model = get_peft_model(loaded.model, config)
    return loaded


def _present_targets(model: Any, wanted: list[str]) -> list[str]:
    """The wanted projection names that exist in ``model`` (all seven in Llama/Gemma/Mistral/Qwen)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    present = [target for target in wanted if target in names]
    if not present:
        raise StockLLMError(f"the model has none of the LoRA target modules {', '.join(wanted)}; use a Llama/Gemma-style decoder model")
    return present


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts — the write-up reports 41,943,040 of 8B (0.52%)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def read_training_info(model_dir: Path | str) -> dict:
    """The model dir's training record; missing, corrupt, not an object or without ``base_model`` is one error line."""
    from .. import store

    path = Path(model_dir) / TRAINING_INFO
    again = f"run `stockllm train --model-dir {model_dir}` again"
    if not path.exists():
        raise StockLLMError(f"{model_dir} is not a trained model dir (no {TRAINING_INFO}); run `stockllm train --model-dir {model_dir}` first")
    info = store.read_json(path, dict, again)
    if not isinstance(info.get("base_model"), str) or not info["base_model"].strip():
        raise StockLLMError(f"{path} names no base_model (the model the adapter was trained on); {again}")
    return info


def load_trained(model_dir: Path | str, backend: str = "auto", *, full_head: bool = False) -> LoadedModel:
    """A trained model dir (adapter + tokenizer + training_info.json) on its base model, ready to generate.

    With the domain head stored in the model dir (and not ``full_head``), the transformers backend's output
    layer scores only the answer tokens (:mod:`stockllm.llm.domain_head`); older model dirs have none and keep
    the full head.
    """
    info = read_training_info(model_dir)
    base = load_base(info["base_model"], max_seq_length=info.get("max_seq_length", 2048),
                     load_in_4bit=info.get("load_in_4bit", False), load_in_8bit=info.get("load_in_8bit", False), backend=backend)
    from peft import PeftModel
    from transformers import AutoTokenizer

    base.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ensure_pad_token(base.tokenizer)
    base.model = PeftModel.from_pretrained(base.model, str(model_dir))
    base.model.eval()
    if base.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(base.model)
    else:
        from .domain_head import DomainHead, load_domain, use_domain_head

        ids = None if full_head else load_domain(model_dir)
        if ids is not None:
            lm = base.model.get_base_model()
            use_domain_head(lm, DomainHead(ids, lm.get_output_embeddings().weight.shape[0]))
    base.info = info
    return base


GENERATION_BACKENDS = ("auto", "transformers", "unsloth", "llama.cpp", "openai")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`~stockllm.config.PRECISIONS` (training and forecasting take the same
    names), else one clear error."""
    if precision not in PRECISIONS:
        raise StockLLMError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def cpu_has_native_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). Without it, bf16 matmuls are emulated:
    measured 7.5× slower than fp32 on an AVX2-only AMD EPYC."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(precision: str) -> Any:
    """The torch dtype the transformers backend forecasts in, or None to keep the model as loaded (``auto``: fp32
    on a CPU, bf16/fp16 on a GPU). ``bfloat16`` on a CPU with native bf16 (AVX512-BF16, AMX) reads prompts about
    1.8× faster, but rounds differently from fp32, so greedy answers differ in a share of forecasts (docs/llm.md);
    without native bf16 it is emulated and slow."""
    import torch

    return {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[check_precision(precision)]


def cast_weights(model: Any, dtype: Any) -> None:
    """Parameters and the domain head's rows to ``dtype``; buffers such as the rotary frequencies stay fp32
    (``model.to(bf16)`` would round them, and positions past a few hundred would rotate wrongly)."""
    from .domain_head import DomainLogits

    for param in model.parameters():
        param.data = param.data.to(dtype)
    head = model.get_output_embeddings()
    if isinstance(head, DomainLogits):
        head.rows = head.rows.to(dtype)


def load_generator(model_dir: Path | str, backend: str = "auto", *, full_head: bool = False, precision: str = "auto",
                   **options: Any):
    """The :class:`~stockllm.llm.generation.Generator` of a trained model dir on the chosen backend:
    ``auto``/``transformers``/``unsloth`` (the model in this process), ``llama.cpp`` (GGUF base + LoRA),
    ``openai`` (an OpenAI-compatible server holding the adapter). ``precision`` is the transformers backend's
    number format (:func:`inference_dtype`); the others keep their own."""
    if backend not in GENERATION_BACKENDS:
        raise StockLLMError(f"unknown backend {backend!r}; choose one of {', '.join(GENERATION_BACKENDS)}")
    dtype = inference_dtype(precision)
    if dtype is not None and backend in ("llama.cpp", "openai"):
        raise StockLLMError(f"--precision {precision} is for the transformers backend; the {backend} backend keeps its model's own format")
    if backend == "llama.cpp":
        from .llamacpp import LlamaCppGenerator

        return LlamaCppGenerator.from_model_dir(model_dir, **options)
    if backend == "openai":
        from .served import OpenAIGenerator

        return OpenAIGenerator.from_model_dir(model_dir, **options)
    from .generation import TransformersGenerator

    loaded = load_trained(model_dir, backend, full_head=full_head)
    if loaded.backend == "transformers" and not (loaded.info.get("load_in_4bit") or loaded.info.get("load_in_8bit")):
        # the adapter folded into the base weights: a step runs 126 matrix products instead of 378 (each LoRA
        # layer adds two thin ones), prompts are read about a quarter faster on a CPU; same numbers up to rounding
        loaded.model = loaded.model.merge_and_unload()
        if dtype is not None:
            cast_weights(loaded.model, dtype)
    elif dtype is not None:
        how = "with unsloth" if loaded.backend == "unsloth" else "in 4/8-bit"
        raise StockLLMError(f"--precision {precision} is for a full-precision transformers model; this one is loaded {how}, "
                            "so drop the flag")
    return TransformersGenerator(loaded, **options)


def settings_dict(lora: LoraSettings) -> dict:
    return asdict(lora)
