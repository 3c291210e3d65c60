"""The llama.cpp backend: a trained model dir run by llama.cpp (``llama-cpp-python``) on its GGUF files.

The base GGUF and the adapter converted to a GGUF LoRA (:mod:`stockllm.llm.gguf_export`) are loaded once; the
adapter is applied at run time, so the packaged model runs on the same Q4_K_M weights transformers
dequantised for training. Prompts arrive as the token ids of :func:`stockllm.llm.chat.encode_prompt` and are
fed as they are (never re-tokenised), and answers are decoded with the model dir's own tokenizer, so the
forecaster parses exactly what the transformers backend would give it.

Many sequences share each ``llama_decode`` call through llama.cpp's low-level batch API: every prompt (times
``samples`` when sampling) is a sequence with its own id in one context, prompts are prefilled together and
then each step decodes one new token for every unfinished sequence. Each sequence stops on its own: at a stop
token, at its ``max_new_tokens``, or once it has written its ``days`` complete day lines. Greedy decoding
takes the arg-max over the model dir's domain head (:mod:`stockllm.llm.domain_head`) when it has one, as the
transformers backend does; sampling (temperature, top-p) is seeded by the seed, the prompt and the sample
number, so a forecast does not depend on which other prompts shared its call.

Threads default to the machine's cores. llama.cpp's threads wait for each other at every operation, so on
cores other work keeps busy fewer threads are faster (a tiny model with ``threads=1`` decoded 30x faster
than with 2 on this project's loaded 2-core machine).
"""

from __future__ import annotations

import ctypes
import logging
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StockLLMError
from .chat import stop_token_ids
from .domain_head import load_domain
from .generation import DEFAULT_BATCH_SIZE, AnswerCursor, GenerationRequest, answer_rng, cut_after_lines, next_token
from .gguf_export import model_dir_ggufs

CONTEXT_STEP = 256  # per-sequence context is rounded up to this, so similar requests reuse one context
DECODE_TOKENS = 512  # tokens per llama_decode call while prefilling


def llama_cpp_module():
    """``llama_cpp``, or a one-line error saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise StockLLMError("the llama.cpp backend needs llama-cpp-python: `pip install 'stockllm[llamacpp]'` "
                            "(it compiles llama.cpp, several minutes); or use --backend transformers") from None
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp logs every tensor it loads
    return llama_cpp


def machine_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Sequence:
    """One answer being written: its request, cursor, tokens so far and, when sampling, its own generator."""

    def __init__(self, index: int, request: GenerationRequest, rng: np.random.Generator | None):
        self.index = index
        self.request = request
        self.cursor = AnswerCursor(request)
        self.rng = rng
        self.tokens: list[int] = []

    @property
    def done(self) -> bool:
        return self.cursor.done

    @property
    def position(self) -> int:
        """Position of the newest token (the one fed next)."""
        return len(self.request.prompt_ids) + len(self.tokens) - 1


class LlamaCppGenerator:
    """A :class:`~stockllm.llm.generation.Generator` on llama.cpp: base GGUF + GGUF LoRA adapter."""

    name = "llama.cpp"

    def __init__(self, base: Path, adapter: Path | None, tokenizer: Any, *, domain: list[int] | None = None,
                 threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise StockLLMError(f"batch size must be at least 1 (got {batch_size})")
        self.llama = llama_cpp_module()
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_token_ids(tokenizer))
        self.threads = threads or machine_cores()
        self.batch_size = batch_size
        self.base, self.adapter = Path(base), Path(adapter) if adapter else None
        self.llama.llama_backend_init()
        params = self.llama.llama_model_default_params()
        self.model = self.llama.llama_model_load_from_file(str(base).encode(), params)
        if not self.model:
            raise StockLLMError(f"llama.cpp cannot load {base} as a model; delete it to have it rebuilt, or check the file")
        self._owned: list[tuple[str, Any]] = []  # contexts and batches to free before the model (adapters go with it)
        self._finalizer = weakref.finalize(self, _free, self.llama, self.model, self._owned)
        self._lora = None
        if adapter is not None:
            self._lora = self.llama.llama_adapter_lora_init(self.model, str(adapter).encode())
            if not self._lora:
                raise StockLLMError(f"llama.cpp cannot load the LoRA adapter {adapter} for {Path(base).name}; "
                                    "delete it to have it converted again")
        self.n_vocab = self.llama.llama_vocab_n_tokens(self.llama.llama_model_get_vocab(self.model))
        if len(tokenizer) > self.n_vocab:
            raise StockLLMError(f"{Path(base).name} has {self.n_vocab} tokens but the model dir's tokenizer {len(tokenizer)}; "
                                "the GGUF is not this model dir's base model")
        self.allowed = np.array(domain if domain else range(self.n_vocab), dtype=np.int64)
        self._stop_mask = np.isin(self.allowed, sorted(self.stop_ids))  # where end of turn sits in the logits row
        if self.allowed.max() >= self.n_vocab:
            raise StockLLMError(f"the domain head names token {self.allowed.max()}, beyond {Path(base).name}'s {self.n_vocab} tokens")
        self._context: Any = None
        self._context_shape = (0, 0)  # (sequences, tokens per sequence) the current context holds
        self._batch = self.llama.llama_batch_init(DECODE_TOKENS, 0, 1)
        self._owned.append(("batch", self._batch))

    @classmethod
    def from_model_dir(cls, model_dir: Path | str, *, threads: int | None = None,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> "LlamaCppGenerator":
        """The model dir's base and adapter as GGUFs (converted once, see :mod:`stockllm.llm.gguf_export`),
        its tokenizer, and its domain head when it has one. ``threads``: the machine's cores unless given."""
        from transformers import AutoTokenizer

        llama_cpp_module()  # fail fast, before any conversion, when llama-cpp-python is missing
        base, adapter = model_dir_ggufs(model_dir)
        return cls(base, adapter, AutoTokenizer.from_pretrained(str(model_dir)), domain=load_domain(model_dir),
                   threads=threads, batch_size=batch_size)

    # --- the context --------------------------------------------------------------------------------------

    def _ensure_context(self, sequences: int, tokens: int) -> Any:
        """A context with a KV cache for ``sequences`` sequences of ``tokens`` each, reused while large enough."""
        per_sequence = -(-tokens // CONTEXT_STEP) * CONTEXT_STEP
        held_sequences, held_tokens = self._context_shape
        if self._context is not None and held_sequences >= sequences and held_tokens >= per_sequence:
            self.llama.llama_memory_clear(self.llama.llama_get_memory(self._context), True)
            return self._context
        self._drop_context()
        sequences, per_sequence = max(sequences, held_sequences), max(per_sequence, held_tokens)
        params = self.llama.llama_context_default_params()
        params.n_ctx = sequences * per_sequence
        params.n_batch = params.n_ubatch = DECODE_TOKENS
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = False  # each sequence attends over its own cache only
        params.no_perf = True
        context = self.llama.llama_init_from_model(self.model, params)
        if not context:
            raise StockLLMError(f"llama.cpp could not create a context for {sequences} sequences of {per_sequence} tokens; "
                                "lower --batch-size")
        if self._lora:
            adapters = (self.llama.llama_adapter_lora_p_ctypes * 1)(self._lora)
            if self.llama.llama_set_adapters_lora(context, adapters, 1, (ctypes.c_float * 1)(1.0)) != 0:
                self.llama.llama_free(context)
                raise StockLLMError(f"llama.cpp could not apply the LoRA adapter {self.adapter}")
        self._context, self._context_shape = context, (sequences, per_sequence)
        self._owned.append(("context", context))
        return context

    def _drop_context(self) -> None:
        if self._context is not None:
            self._owned.remove(("context", self._context))
            self.llama.llama_free(self._context)
            self._context, self._context_shape = None, (0, 0)

    # --- generation ---------------------------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest], *, sample: bool = False, seed: int = 0,
                 samples: int = 1) -> list[list[str]]:
        """``samples`` answers per request: greedy unless ``sample`` (seeded per request and sample)."""
        if samples < 1:
            raise StockLLMError(f"samples must be at least 1 (got {samples})")
        for request in requests:
            if not request.prompt_ids:
                raise StockLLMError("a generation request has an empty prompt")
            if max(request.prompt_ids) >= self.n_vocab or min(request.prompt_ids) < 0:
                raise StockLLMError(f"a prompt holds token ids outside {self.base.name}'s {self.n_vocab} tokens")
        copies = samples if sample else 1  # greedy answers of one prompt are all the same
        sequences = [_Sequence(index, request, answer_rng(seed, request, copy) if sample else None)
                     for index, request in enumerate(requests) for copy in range(copies)]
        for start in range(0, len(sequences), self.batch_size):
            self._run(sequences[start:start + self.batch_size])
        answers: list[list[str]] = [[] for _ in requests]
        for sequence in sequences:
            text = self.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
            answers[sequence.index].append(cut_after_lines(text, sequence.request.lines))
        return [texts * samples if not sample else texts for texts in answers]

    def _run(self, sequences: list[_Sequence]) -> None:
        """Prefill every prompt of this group, then decode one token per unfinished sequence until all are done."""
        longest = max(len(s.request.prompt_ids) + s.request.max_new_tokens for s in sequences)
        context = self._ensure_context(len(sequences), longest)
        pending = [(seq, token, position, position == len(s.request.prompt_ids) - 1)
                   for seq, s in enumerate(sequences) for position, token in enumerate(s.request.prompt_ids)]
        while pending:
            self._decode(context, sequences, pending[:DECODE_TOKENS])
            pending = pending[DECODE_TOKENS:]
        while True:
            step = [(seq, s.tokens[-1], s.position, True) for seq, s in enumerate(sequences) if not s.done]
            if not step:
                return
            for start in range(0, len(step), DECODE_TOKENS):
                self._decode(context, sequences, step[start:start + DECODE_TOKENS])

    def _decode(self, context: Any, sequences: list[_Sequence], items: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode call over ``items`` (sequence, token, position, wants logits); then each sequence
        whose logits came back takes its next token."""
        batch = self._batch
        for i, (seq, token, position, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, 1, logits
            batch.seq_id[i][0] = seq
        batch.n_tokens = len(items)
        status = self.llama.llama_decode(context, batch)
        if status != 0:
            raise StockLLMError(f"llama.cpp failed to decode a batch (status {status}); lower --batch-size or the answer budget")
        for i, (seq, _, _, logits) in enumerate(items):
            if logits:
                row = np.ctypeslib.as_array(self.llama.llama_get_logits_ith(context, i), shape=(self.n_vocab,))
                self._advance(sequences[seq], row[self.allowed])

    def _advance(self, sequence: _Sequence, logits: np.ndarray) -> None:
        """Choose ``sequence``'s next token from its (domain) logits, steered by its cursor (a forced date
        token; no end of turn before the asked lines)."""
        cursor = sequence.cursor
        token = next_token(cursor, logits, self.allowed, self._stop_mask, sequence.rng)
        if token in self.stop_ids:
            cursor.done = True
            return
        sequence.tokens.append(token)
        cursor.took(token, self.tokenizer.decode([token]), len(sequence.tokens))


def _free(llama: Any, model: Any, owned: list) -> None:
    """Release llama.cpp's memory: contexts and the batch first, then the model (its adapters go with it)."""
    for kind, handle in reversed(owned):
        if kind == "context":
            llama.llama_free(handle)
        else:
            llama.llama_batch_free(handle)
    llama.llama_model_free(model)
