"""Answer generation behind one small interface, so every backend serves the same forecaster.

A :class:`Generator` turns prompts — token ids made by :func:`stockllm.llm.chat.encode_prompt` with the model
dir's own tokenizer, so every backend sees exactly the prompt the model was trained on — into answer texts.
Backends: :class:`TransformersGenerator` here (batched, KV cache, the domain output head), llama.cpp
(:mod:`stockllm.llm.llamacpp`) and an OpenAI-compatible server (:mod:`stockllm.llm.served`).

Every backend stops a sequence at the end-of-turn token, at ``max_new_tokens``, or once it has written
``days`` complete day lines: a lightly trained model often keeps writing days after its answer, and those
tokens cost time and are cut off by the parser anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

DAY_LINE = re.compile(r"\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}[^\n]*\n")
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95
DEFAULT_BATCH_SIZE = 32  # rows decoded together: a step reads the weights once for all of them


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer: its token ids, the new-token budget, and the day lines after which it is done."""

    prompt_ids: list[int]
    max_new_tokens: int
    days: int | None = None


def days_written(text: str) -> int:
    """Complete day lines (a date, then the rest of the line up to its newline) in ``text``."""
    return len(DAY_LINE.findall(text))


def cut_after_days(text: str, days: int | None) -> str:
    """``text`` up to the end of its ``days``-th day line (all of it when it has fewer or ``days`` is None)."""
    if not days:
        return text
    for number, match in enumerate(DAY_LINE.finditer(text), 1):
        if number == days:
            return text[: match.end()]
    return text


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


def _days_stop(tokenizer: Any, prompt_width: int, days: list[int | None]):
    """A per-row stopping criterion: row ``i`` is done once its answer holds ``days[i]`` complete day lines."""
    import torch
    from transformers import StoppingCriteria

    class DaysWritten(StoppingCriteria):
        """Counts a row's day lines only when its newest token ends a line (re-reading every answer at every
        step would cost more than the step itself for a small model)."""

        def __init__(self) -> None:
            self.done = [False] * len(days)

        def __call__(self, input_ids, scores, **kwargs):
            newest = tokenizer.batch_decode(input_ids[:, -1:], skip_special_tokens=True)
            for row, (piece, want) in enumerate(zip(newest, days)):
                if want and not self.done[row] and "\n" in piece:
                    text = tokenizer.decode(input_ids[row, prompt_width:], skip_special_tokens=True)
                    self.done[row] = days_written(text) >= want
            return torch.tensor(self.done, device=input_ids.device)

    return DaysWritten()


class TransformersGenerator:
    """Batched generation with a loaded (LoRA) model: left padding, KV cache, a per-row stop.

    Requests are sorted by prompt length and generated ``batch_size`` at a time, so rows of a batch need
    little padding; each row stops on its own (end of turn, its day count) and is cut to its own token budget,
    which makes greedy answers the same as one-by-one generation. With a domain head in the model dir
    (:mod:`stockllm.llm.domain_head`) the output layer scores only the answer tokens.
    """

    name = "transformers"

    def __init__(self, loaded: Any, *, batch_size: int = DEFAULT_BATCH_SIZE):
        from .chat import stop_token_ids

        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = max(1, batch_size)
        self.stop_ids = stop_token_ids(loaded.tokenizer)

    def generate(self, requests: list[GenerationRequest], *, sample: bool = False, seed: int = 0,
                 samples: int = 1) -> list[list[str]]:
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt_ids))
        out: list[list[str]] = [[] for _ in requests]
        for first in range(0, len(order), self.batch_size):
            chunk = order[first: first + self.batch_size]
            for index, texts in zip(chunk, self._batch([requests[i] for i in chunk], sample, seed + first, samples)):
                out[index] = texts
        return out

    def _batch(self, batch: list[GenerationRequest], sample: bool, seed: int, samples: int) -> list[list[str]]:
        import torch
        from transformers import StoppingCriteriaList

        model, tokenizer = self.loaded.model, self.tokenizer
        device = next(model.parameters()).device
        width = max(len(r.prompt_ids) for r in batch)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch], device=device)
        days = [r.days for r in batch for _ in range(samples)]
        options: dict[str, Any] = {"do_sample": False}
        if sample:
            torch.manual_seed(seed)
            options = {"do_sample": True, "temperature": SAMPLE_TEMPERATURE, "top_p": SAMPLE_TOP_P, "top_k": 0}
        with torch.inference_mode():
            generated = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max(r.max_new_tokens for r in batch),
                num_return_sequences=samples, eos_token_id=self.stop_ids, pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([_days_stop(tokenizer, width, days)]), **options,
            )
        answers = generated[:, width:]
        texts = []
        for row, request in enumerate(r for r in batch for _ in range(samples)):
            tokens = answers[row, : request.max_new_tokens].tolist()
            texts.append(cut_after_days(tokenizer.decode(tokens, skip_special_tokens=True), request.days))
        return [texts[i * samples: (i + 1) * samples] for i in range(len(batch))]
