"""The parts of an answer that are not a forecast: its header and the trading dates, supplied, not generated.

An answer reads ``"The next 5 days price is: Date:\\n 2025-01-06, Open: 139.5, …\\n 2025-01-07, Open: …"``.
Only the numbers are the model's forecast; the header is fixed and the dates are the trading calendar's
(:func:`stockllm.forecasters.base.future_dates`). A lightly trained model gets them wrong — it writes the next
calendar day (a Saturday) or stops after one day of five — and an answer with a wrong date is unusable however
good its prices. So the forecaster supplies them: the header and the first date end the prompt, and each later
date is forced token by token when the model ends a line (:class:`~stockllm.llm.generation.AnswerCursor`).

The tokens supplied are cut from the tokenisation of a whole answer on those dates (placeholder numbers), the
way :func:`stockllm.llm.chat.encode_example` tokenised the training answers, so the model sees the same token
sequence it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from .. import prompts
from ..store import INT_COLUMNS


@dataclass(frozen=True)
class Scaffold:
    """``prefill``: token ids appended to the prompt (header and first date); ``prefill_text`` their text;
    ``line_prefixes``: the ids that open lines 2, 3, … (their dates)."""

    prefill: tuple[int, ...]
    prefill_text: str
    line_prefixes: tuple[tuple[int, ...], ...]


def answer_scaffold(tokenizer: Any, dates: Sequence[str], fields: Sequence[str]) -> Scaffold:
    """The supplied tokens of an answer for ``dates`` with ``fields`` (``date`` first, as every field set has)."""
    placeholder = pd.DataFrame({f: (list(dates) if f == "date" else [1 if f in INT_COLUMNS else 1.0] * len(dates)) for f in fields})
    text = prompts.assistant_answer(placeholder, fields)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = list(zip(encoded["input_ids"], encoded["offset_mapping"]))
    ends, line_starts, cursor = [], [], 0
    for day in dates:
        at = text.index(day, cursor)
        line_starts.append(text.rindex("\n", 0, at) + 1)
        ends.append(at + len(day) + 1)  # through the comma after the date
        cursor = ends[-1]

    def tokens(start: int, end: int) -> tuple[int, ...]:
        return tuple(token for token, (a, b) in spans if a >= start and b <= end and b > a)

    prefill = tokens(0, ends[0])
    return Scaffold(prefill, tokenizer.decode(list(prefill)), tuple(tokens(line_starts[k], ends[k]) for k in range(1, len(dates))))
