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
DEFAULT_BATCH_SIZE = 16


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
