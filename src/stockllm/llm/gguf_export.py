"""The GGUF files llama.cpp needs for a trained model dir: the base model and the LoRA adapter.

llama.cpp runs a base GGUF with a GGUF LoRA adapter applied at run time (no merge, so the packaged base
stays the very Q4_K_M file transformers dequantised for training):

* **base** — for ``packaged:gemma-3-270m`` the packaged GGUF itself (:func:`stockllm.llm.packaged.packaged_gguf`);
  for a local Hugging Face Llama folder (the tests' tiny model, or a user's own) an f32/f16 GGUF written here
  with the ``gguf`` package and cached under :func:`stockllm.llm.packaged.cache_root` by the folder's content;
* **adapter** — peft's ``adapter_model.safetensors`` rewritten as a GGUF LoRA (``general.type = adapter``,
  ``adapter.type = lora``, ``adapter.lora.alpha``, tensors ``blk.N.attn_q.weight.lora_a`` / ``.lora_b``),
  written once next to the adapter in the model dir and reused while it is newer than the adapter.

Two layout facts make the numbers match transformers. Hugging Face Llama checkpoints order each attention
head's query/key rows for rotate-half RoPE, llama.cpp's ``llama`` architecture for interleaved pairs, so the
q/k rows (and the q/k LoRA ``B`` rows, which produce those rows) are permuted for that architecture; Gemma
uses rotate-half in both. llama.cpp scales a LoRA product by ``alpha / rank`` like peft; rank-stabilised
LoRA (``alpha / sqrt(rank)``) is written with ``alpha * sqrt(rank)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StockLLMError
from .backends import read_training_info
from .packaged import cache_root, is_packaged, packaged_gguf

ADAPTER_GGUF = "adapter_model.gguf"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# architectures whose HF → llama.cpp tensor layout is known here; True: q/k rows are permuted (see above)
PERMUTES_QK = {"llama": True, "gemma3": False}
CONTROL, NORMAL = 3, 1  # llama.cpp token types


def model_dir_ggufs(model_dir: Path | str) -> tuple[Path, Path]:
    """(base GGUF, adapter GGUF) for a trained model dir, writing whichever is missing or stale."""
    model_dir = Path(model_dir)
    base = base_gguf(read_training_info(model_dir)["base_model"])
    return base, adapter_gguf(model_dir, base)


# --- the base model ----------------------------------------------------------------------------------------

def base_gguf(base_model: str, *, dtype: str = "f32") -> Path:
    """The GGUF of a training base: the packaged file, or a cached export of a local Hugging Face folder."""
    if is_packaged(base_model):
        return packaged_gguf(base_model)
    folder = Path(base_model).expanduser()
    if not (folder / "config.json").exists():
        raise StockLLMError(f"llama.cpp needs the base model {base_model!r} as a GGUF; train on packaged:gemma-3-270m "
                            "or a local Hugging Face folder (it is exported once), not a hub name")
    target = cache_root() / "gguf" / f"{folder.name}-{_folder_digest(folder, dtype)}.gguf"
    if not target.exists():
        export_hf_llama(folder, target, dtype=dtype)
    return target


def _folder_digest(folder: Path, dtype: str) -> str:
    """A short key that changes when the folder's config, tokenizer or weights change."""
    digest = hashlib.sha256(f"{folder.resolve()}|{dtype}".encode())
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(f"{path.name}|{path.stat().st_size}|{path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _read_safetensors(paths: list[Path]) -> dict[str, np.ndarray]:
    """float32 numpy arrays of every tensor (bf16/f16 checkpoints included)."""
    import torch
    from safetensors.torch import load_file

    tensors: dict[str, np.ndarray] = {}
    for path in paths:
        try:
            tensors.update({name: value.to(torch.float32).numpy() for name, value in load_file(str(path)).items()})
        except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
            raise StockLLMError(f"cannot read {path} ({str(exc).splitlines()[0]}); the file is damaged, train again") from None
    return tensors


def _rope_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Per head, Hugging Face's rotate-half row order → llama.cpp's interleaved pairs (rows are outputs)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _rope_theta(config: dict) -> float:
    parameters = config.get("rope_parameters") or {}
    return float(parameters.get("rope_theta", config.get("rope_theta", 10000.0)))


def export_hf_llama(folder: Path, target: Path, *, dtype: str = "f32") -> Path:
    """Write a Llama-architecture Hugging Face folder (byte-level BPE tokenizer) as a GGUF llama.cpp loads."""
    import gguf

    config = json.loads((folder / "config.json").read_text("utf-8"))
    if config.get("model_type") != "llama":
        raise StockLLMError(f"{folder} is a {config.get('model_type')!r} model; the GGUF export handles Llama folders "
                            "(use packaged:gemma-3-270m for Gemma)")
    if (config.get("rope_parameters") or {}).get("rope_type", "default") != "default" or config.get("rope_scaling"):
        raise StockLLMError(f"{folder} uses RoPE scaling, which the GGUF export does not write; use a model without it")
    if dtype not in ("f32", "f16"):
        raise StockLLMError(f"GGUF export dtype must be f32 or f16, not {dtype!r}")
    weights = _read_safetensors(sorted(folder.glob("*.safetensors")))
    if not weights:
        raise StockLLMError(f"{folder} has no *.safetensors weights to export")
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads

    writer = gguf.GGUFWriter(None, "llama")
    writer.add_name(folder.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    _write_bpe_tokenizer(writer, folder, config["vocab_size"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for hf_name, value in weights.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise StockLLMError(f"{folder}: tensor {hf_name} has no llama.cpp counterpart; is this a plain Llama model?")
        if name.endswith("attn_q.weight"):
            value = _rope_rows(value, heads)
        elif name.endswith("attn_k.weight"):
            value = _rope_rows(value, kv_heads)
        writer.add_tensor(name, value.astype(np.float16) if dtype == "f16" and value.ndim == 2 else value)
    _write_atomically(writer, target)
    return target


def _write_bpe_tokenizer(writer: Any, folder: Path, vocab_size: int) -> None:
    """The folder's byte-level BPE vocabulary, merges, special ids and chat template.

    ``add_bos_token`` is written true, as Gemma's and Llama 3's GGUFs have it: a server that renders a text
    prompt without its leading BOS then tokenises it back to the same ids (see :mod:`stockllm.llm.served`)."""
    import gguf

    spec = json.loads((folder / "tokenizer.json").read_text("utf-8"))
    if spec["model"]["type"] != "BPE" or (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise StockLLMError(f"{folder}: the GGUF export handles byte-level BPE tokenizers (GPT-2/Llama 3 style) only")
    vocab = dict(spec["model"]["vocab"])
    special = {token["content"]: token["id"] for token in spec.get("added_tokens", [])}
    vocab.update(special)
    tokens = [f"[PAD{index}]" for index in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for token, index in vocab.items():
        if index < vocab_size:
            tokens[index] = token
            types[index] = gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    special_vocab.add_to_gguf(writer)
    writer.add_add_bos_token(True)


def _write_atomically(writer: Any, target: Path) -> None:
    """Write a prepared GGUFWriter to ``target`` through a temporary file in the same folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer.write_header_to_file(path=Path(tmp))
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the LoRA adapter --------------------------------------------------------------------------------------

def adapter_gguf(model_dir: Path | str, base: Path) -> Path:
    """The model dir's adapter as a GGUF LoRA for ``base``: written once, reused while newer than the adapter."""
    model_dir = Path(model_dir)
    sources = [model_dir / ADAPTER_CONFIG, model_dir / ADAPTER_WEIGHTS]
    missing = [path.name for path in sources if not path.exists()]
    if missing:
        raise StockLLMError(f"{model_dir} has no {' or '.join(missing)}; it is not a trained LoRA model dir (run `stockllm train`)")
    target = model_dir / ADAPTER_GGUF
    if target.exists() and target.stat().st_mtime_ns >= max(path.stat().st_mtime_ns for path in sources):
        return target
    export_adapter(model_dir, base, target)
    return target


def _base_tensors(base: Path) -> tuple[str, dict[str, tuple[int, ...]], dict]:
    """Architecture, tensor shapes (ggml order: inputs first) and metadata fields of a base GGUF."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(base))
        arch = reader.fields["general.architecture"].contents()
    except Exception as exc:  # GGUFReader raises ValueError/KeyError/struct errors on foreign files
        raise StockLLMError(f"{base} is not a readable GGUF model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                            "delete it to have it rebuilt") from None
    return arch, {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}, reader.fields


def export_adapter(model_dir: Path, base: Path, target: Path) -> Path:
    """Rewrite peft's LoRA adapter as a GGUF LoRA whose tensors match ``base``'s names and shapes."""
    import gguf

    config = json.loads((model_dir / ADAPTER_CONFIG).read_text("utf-8"))
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora") or config.get("modules_to_save"):
        raise StockLLMError(f"{model_dir}: only plain LoRA adapters convert to llama.cpp (no DoRA, no modules_to_save)")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise StockLLMError(f"{model_dir}: per-module LoRA ranks or alphas do not convert to llama.cpp's single alpha")
    arch, shapes, fields = _base_tensors(base)
    if arch not in PERMUTES_QK:
        raise StockLLMError(f"{base} is a {arch!r} model; the llama.cpp backend handles {', '.join(PERMUTES_QK)}")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)
    heads = {"attn_q": int(fields[f"{arch}.attention.head_count"].contents()),
             "attn_k": int(fields[f"{arch}.attention.head_count_kv"].contents())}
    layers = int(fields[f"{arch}.block_count"].contents())
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], layers)

    writer = gguf.GGUFWriter(None, arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, value in sorted(_read_safetensors([model_dir / ADAPTER_WEIGHTS]).items()):
        module, _, part = name.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        gguf_name = names.get_name(module)
        if part not in ("A.weight", "B.weight") or gguf_name is None:
            raise StockLLMError(f"{model_dir}: adapter tensor {name} has no llama.cpp counterpart in a {arch!r} model")
        weight = f"{gguf_name}.weight"
        if weight not in shapes:
            raise StockLLMError(f"{model_dir}: the adapter targets {weight}, which {base.name} lacks; the adapter was trained on another base model")
        inputs, outputs = shapes[weight][:2]
        if part == "A.weight":
            expected = (rank, inputs)
        else:
            expected = (outputs, rank)
            if PERMUTES_QK[arch] and gguf_name.rsplit(".", 1)[-1] in heads:
                value = _rope_rows(value, heads[gguf_name.rsplit(".", 1)[-1]])
        if value.shape != expected:
            raise StockLLMError(f"{model_dir}: {name} has shape {value.shape}, {base.name} needs {expected}; "
                                "the adapter was trained on another base model")
        writer.add_tensor(f"{weight}.lora_{part[0].lower()}", np.ascontiguousarray(value, dtype=np.float32))
    _write_atomically(writer, target)
    return target
