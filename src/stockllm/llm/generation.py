"""Answer generation behind one small interface, so every backend serves the same forecaster.

A :class:`Generator` turns prompts — token ids made by :func:`stockllm.llm.chat.encode_prompt` with the model
dir's own tokenizer, so every backend sees exactly the prompt the model was trained on — into answer texts.
Backends: :class:`TransformersGenerator` here (batched, KV cache, the domain output head), llama.cpp
(:mod:`stockllm.llm.llamacpp`) and an OpenAI-compatible server (:mod:`stockllm.llm.served`).

The answer's fixed parts are not the model's to write (:mod:`stockllm.llm.scaffold`): its header and first
date end the prompt, and the date that opens every later line is forced token by token when the model ends a
line. A request asks for ``lines`` answer lines; every backend refuses the end-of-turn token before the last of them
(a lightly trained model often stops after one day of five), stops once they are written (it often keeps
writing days), and at ``max_new_tokens``. :class:`AnswerCursor` is that bookkeeping, shared by the backends.
"""

from __future__ import annotations

import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95
DEFAULT_BATCH_SIZE = 32  # rows decoded together: a step reads the weights once for all of them


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer: its token ids, the new-token budget, the answer lines to write (``None``: stop at
    end of turn or budget only) and the token ids forced at the start of lines 2, 3, … (the calendar's dates)."""

    prompt_ids: list[int]
    max_new_tokens: int
    lines: int | None = None
    line_prefixes: tuple[tuple[int, ...], ...] = ()


def cut_after_lines(text: str, lines: int | None) -> str:
    """``text`` up to and including its ``lines``-th newline (all of it when it has fewer or ``lines`` is None)."""
    if not lines:
        return text
    end = -1
    for _ in range(lines):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[: end + 1]


class AnswerCursor:
    """Where one answer stands: lines written, the forced tokens still to come, whether it may or must stop.

    A backend asks :meth:`forced` before choosing a token (a date token to force, or None), masks the stop
    tokens while :attr:`may_stop` is false, and tells :meth:`took` each token it appended with its text.
    """

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.lines = 0
        self.queue: list[int] = []
        self.done = False

    @property
    def may_stop(self) -> bool:
        """The end of turn is refused before the last line: on it, the model may end its answer (it was trained
        to end the last line with a newline and then the end of turn, but often ends straight after the digits)."""
        return not self.request.lines or self.lines >= self.request.lines - 1

    def forced(self) -> int | None:
        return self.queue[0] if self.queue else None

    def took(self, token: int, text: str, length: int) -> None:
        """Record the appended ``token`` (decoded ``text``; ``length`` new tokens so far) and update ``done``."""
        if self.queue and self.queue[0] == token:
            self.queue.pop(0)
        if "\n" in text:
            self.lines += text.count("\n")
            prefixes = self.request.line_prefixes
            if self.request.lines and self.lines >= self.request.lines:
                self.done = True
            elif 0 < self.lines <= len(prefixes):
                self.queue = list(prefixes[self.lines - 1])
        if length >= self.request.max_new_tokens:
            self.done = True


def next_token(cursor: AnswerCursor, logits: np.ndarray, ids: np.ndarray | list[int] | None, stop_columns: Any,
               rng: np.random.Generator | None) -> int:
    """One row's next token, the same way on every backend: the cursor's forced token, else greedy (or sampled
    with ``rng``) over ``logits``, whose column ``i`` is token ``ids[i]`` (``ids`` None: the vocabulary), with
    the end of turn (``stop_columns``) masked while the cursor may not stop."""
    token = cursor.forced()
    if token is not None:
        return token
    if not cursor.may_stop:
        logits = logits.copy()
        logits[stop_columns] = -np.inf
    index = int(np.argmax(logits)) if rng is None else sample_index(logits, rng)
    return int(ids[index]) if ids is not None else index


def answer_rng(seed: int, request: GenerationRequest, copy: int) -> np.random.Generator:
    """The sampling generator of one answer: from the seed, the prompt and the sample number alone."""
    return np.random.default_rng([seed, zlib.crc32(np.asarray(request.prompt_ids, dtype=np.int64).tobytes()), copy])


def sample_index(logits: np.ndarray, rng: np.random.Generator) -> int:
    """Temperature + nucleus (top-p) sampling of one row of logits."""
    scaled = logits.astype(np.float64) / SAMPLE_TEMPERATURE
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    keep = order[: int(np.searchsorted(cumulative, SAMPLE_TOP_P)) + 1]
    return int(rng.choice(keep, p=probs[keep] / probs[keep].sum()))


class Generator(Protocol):
    """What the forecaster needs from a backend.

    ``tokenizer`` is the model dir's Hugging Face tokenizer (prompts and budgets are measured with it).
    ``generate`` answers each request: ``samples`` texts per request, greedy (deterministic) unless
    ``sample``, in which case sampling is seeded by ``seed`` (temperature 0.8, top-p 0.95).
    """

    name: str
    tokenizer: Any

    def generate(self, requests: list[GenerationRequest], *, sample: bool = False, seed: int = 0,
                 samples: int = 1) -> list[list[str]]: ...


class TransformersGenerator:
    """Batched generation with a loaded (LoRA) model: left padding, KV cache, each row steered and stopped on
    its own (:class:`AnswerCursor`) and cut to its own budget.

    Requests are sorted by prompt length and decoded ``batch_size`` at a time, so rows of a batch need little
    padding. The decoding loop is this class's own, not ``generate``'s: with a domain head in the model dir
    (:mod:`stockllm.llm.domain_head`) a step scores a few dozen answer tokens instead of the whole vocabulary
    (262,144 rows for Gemma), so choosing, forcing and sampling a token cost next to nothing beside the model.
    A row's answer depends on its prompt alone (greedy) or on its prompt and seed (sampled), never on the rows
    batched with it. On a CPU, steps run with :mod:`stockllm.llm.decoding`'s in-place cache and grouped attention;
    ``in_place=False`` uses transformers' ``DynamicCache`` and the model's own attention instead (the reference
    they are tested and benchmarked against).
    """

    name = "transformers"

    def __init__(self, loaded: Any, *, batch_size: int = DEFAULT_BATCH_SIZE, in_place: bool = True):
        from .chat import stop_token_ids
        from .domain_head import DomainLogits

        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = max(1, batch_size)
        self.in_place = in_place
        self.stop_ids = set(stop_token_ids(loaded.tokenizer))
        head = loaded.model.get_output_embeddings()
        # the token id of each logit: the domain's ids, or the whole vocabulary (an older model dir's full head)
        self.vocab: list[int] | None = head.ids.tolist() if isinstance(head, DomainLogits) else None
        self.stop_columns = ([i for i, token in enumerate(self.vocab) if token in self.stop_ids] if self.vocab is not None
                             else sorted(self.stop_ids))
        self._texts: dict[int, str] = {}

    def generate(self, requests: list[GenerationRequest], *, sample: bool = False, seed: int = 0,
                 samples: int = 1) -> list[list[str]]:
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt_ids))
        out: list[list[str]] = [[] for _ in requests]
        for first in range(0, len(order), self.batch_size):
            chunk = order[first: first + self.batch_size]
            for index, texts in zip(chunk, self._batch([requests[i] for i in chunk], sample, seed, samples)):
                out[index] = texts
        return out

    def _batch(self, batch: list[GenerationRequest], sample: bool, seed: int, samples: int) -> list[list[str]]:
        import torch

        from .decoding import in_place_decoding

        model, tokenizer = self.loaded.model, self.tokenizer
        device = next(model.parameters()).device
        rows = [r for r in batch for _ in range(samples)]
        rngs = [answer_rng(seed, r, copy) if sample else None for r in batch for copy in range(samples)]
        cursors = [AnswerCursor(r) for r in rows]
        written: list[list[int]] = [[] for _ in rows]
        width = max(len(r.prompt_ids) for r in rows)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # on a GPU the model's own attention kernels (sdpa, flash, unsloth's) are the fast path
        in_place = self.in_place and device.type == "cpu"
        steps = in_place_decoding(model) if in_place else nullcontext(None)  # None: the model makes its DynamicCache
        with torch.inference_mode(), steps as cache:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                        logits_to_keep=1)
            while True:
                chosen = self._choose(out.logits[:, -1].float(), cursors, rngs)
                for row, token in enumerate(chosen):
                    if token is None:
                        continue
                    if token in self.stop_ids:
                        cursors[row].done = True
                        continue
                    written[row].append(token)
                    cursors[row].took(token, self._text(token), len(written[row]))
                if all(cursor.done for cursor in cursors):
                    break
                feed = torch.tensor([[pad if token is None or token in self.stop_ids else token] for token in chosen], device=device)
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1
                out = model(input_ids=feed, attention_mask=mask, position_ids=positions, past_key_values=out.past_key_values,
                            use_cache=True)
        texts = [cut_after_lines(tokenizer.decode(tokens, skip_special_tokens=True), request.lines)
                 for tokens, request in zip(written, rows)]
        return [texts[i * samples: (i + 1) * samples] for i in range(len(batch))]

    def _choose(self, scores: Any, cursors: list[AnswerCursor], rngs: list[np.random.Generator | None]) -> list[int | None]:
        """Each unfinished row's next token (:func:`next_token`); None for a finished row."""
        rows = scores.numpy()
        return [None if cursor.done else next_token(cursor, row, self.vocab, self.stop_columns, rng)
                for cursor, row, rng in zip(cursors, rows, rngs)]

    def _text(self, token: int) -> str:
        """A token's text (cached: the cursors read every appended token)."""
        if token not in self._texts:
            self._texts[token] = self.tokenizer.decode([token])
        return self._texts[token]
