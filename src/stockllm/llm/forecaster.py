"""The fine-tuned LLM as a :class:`~stockllm.forecasters.base.Forecaster`: prompt → generate → parse → validate.

The prompt is built by :func:`stockllm.dataset.history_messages` from the :class:`~stockllm.dataset.DatasetSpec`
stored in the model dir — the same code that wrote the training examples — and rendered with the
tokenizer's chat template (:mod:`stockllm.llm.chat`). Answers are read back with
:func:`stockllm.prompts.parse_answer` and checked with :func:`stockllm.validation.validate_forecast`.

Failures are reported, never papered over: an answer that does not parse is retried (sampled, seeded) a
bounded number of times; when none parses, :class:`ForecastFailed` says why. An answer that parses but
breaks a market rule (a low above the open, a jump past the ±10% limit, a wrong date) is only used when no
attempt gave a valid one, and then carries ``info["valid"] = False`` and the problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import prompts
from ..dataset import DatasetSpec, history_messages
from ..errors import StockLLMError
from .backends import LoadedModel, load_trained
from .chat import encode_prompt, stop_token_ids
from ..universe import resolve
from ..validation import validate_forecast
from ..forecasters.base import FORECAST_COLUMNS, Forecast, future_dates

DEFAULT_ATTEMPTS = 3
SAMPLE_TEMPERATURE = 0.8
INTERVAL = (0.1, 0.9)  # the 80% interval of --samples


class ForecastFailed(StockLLMError):
    """No attempt produced a parseable answer; ``attempts`` holds each raw text and why it failed."""

    def __init__(self, message: str, attempts: list[dict]):
        super().__init__(message)
        self.attempts = attempts


@dataclass
class Attempt:
    """One generated answer and what became of it."""

    text: str
    rows: pd.DataFrame | None = None
    reason: str | None = None  # why it did not parse
    problems: list[str] = field(default_factory=list)  # validation problems when it parsed

    @property
    def valid(self) -> bool:
        return self.rows is not None and not self.problems

    def to_dict(self) -> dict:
        return {"text": self.text, "parsed": self.rows is not None, "reason": self.reason, "problems": self.problems}


def choose_past(spec: DatasetSpec, horizon: int, available: int | None = None) -> int:
    """Past days to show for ``horizon``: all ``available`` days when that makes a trained window (evaluation hands
    a window model exactly its window's past), else a trained window with that future (shortest past), else the
    nearest longer one."""
    if available is not None and (available, horizon) in spec.windows:
        return available
    exact = [p for p, f in spec.windows if f == horizon]
    if exact:
        return min(exact)
    longer = sorted((f, p) for p, f in spec.windows if f > horizon)
    return longer[0][1] if longer else max(spec.windows, key=lambda w: (w[1], -w[0]))[0]


_DAY_LINE = re.compile(r"\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}[^\n]*\n")


def _days_written(tokenizer: Any, prompt_length: int, days: int):
    """A stopping criterion: a sequence is done once it holds ``days`` complete day lines.

    A lightly trained model often keeps writing days after the answer instead of its end-of-turn token;
    those extra tokens cost seconds each on a CPU and are cut off by the parser anyway.
    """
    import torch
    from transformers import StoppingCriteria

    class DaysWritten(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor([len(_DAY_LINE.findall(text)) >= days for text in texts], device=input_ids.device)

    return DaysWritten()


class LLMGenerator:
    """A loaded fine-tuned model that turns chat messages into answer texts."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.stop_ids = stop_token_ids(loaded.tokenizer)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return encode_prompt(self.loaded.tokenizer, messages)

    def generate(self, messages: list[dict], *, max_new_tokens: int, samples: int = 1, sample: bool = False, seed: int = 0,
                 days: int | None = None) -> list[str]:
        """``samples`` answers: greedy (deterministic) unless ``sample``; sampling is seeded.
        With ``days``, a sequence stops once it has written that many day lines."""
        import torch
        from transformers import StoppingCriteriaList

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        device = next(model.parameters()).device
        ids = torch.tensor([self.prompt_ids(messages)], device=device)
        options: dict[str, Any] = {"do_sample": False}
        if sample:
            torch.manual_seed(seed)
            options = {"do_sample": True, "temperature": SAMPLE_TEMPERATURE, "top_p": 0.95, "top_k": 0}
        if days:
            options["stopping_criteria"] = StoppingCriteriaList([_days_written(tokenizer, ids.shape[1], days)])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 num_return_sequences=samples, eos_token_id=self.stop_ids, pad_token_id=tokenizer.pad_token_id,
                                 **options)
        return tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)

    def answer_budget(self, history: pd.DataFrame, horizon: int, fields: list[str]) -> int:
        """New tokens allowed: 1.5 × the length of an answer made of recent rows, plus slack."""
        rows = history.iloc[[-1] * horizon] if len(history) else history
        example = prompts.assistant_answer(rows, fields) if len(rows) else "x" * 80 * horizon
        return int(1.5 * len(self.loaded.tokenizer(example, add_special_tokens=False)["input_ids"])) + 16


class LLMForecaster:
    """Forecaster protocol over a trained model dir (adapter + tokenizer + training_info.json)."""

    def __init__(self, loaded: LoadedModel, *, data_dir: Path | str | None = None, samples: int = 1,
                 attempts: int = DEFAULT_ATTEMPTS, seed: int = 3407, name: str = "llm"):
        if samples < 1 or attempts < 1:
            raise StockLLMError(f"samples and attempts must be at least 1 (got samples={samples}, attempts={attempts})")
        self.generator = LLMGenerator(loaded)
        self.spec = DatasetSpec.from_dict(loaded.info.get("dataset", {}))
        self.data_dir = data_dir
        self.samples = samples
        self.attempts = attempts
        self.seed = seed
        self.name = name

    @classmethod
    def from_model_dir(cls, path: Path | str, **options: Any) -> "LLMForecaster":
        return cls(load_trained(path), **options)

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "LLMForecaster":
        """Nothing to do: the model is fine-tuned beforehand by ``stockllm train``."""
        return self

    def messages(self, history: pd.DataFrame, horizon: int, code: str, context_text: str | None = None) -> list[dict]:
        """The user turn for a forecast after the last row of ``history`` (same builder as training)."""
        past = choose_past(self.spec, horizon, available=len(history))
        return history_messages(resolve(code), history, past, horizon, self.spec, data_dir=self.data_dir, context_text=context_text)

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None, context_text: str | None = None) -> Forecast:
        if code is None:
            raise StockLLMError("the LLM forecaster needs the stock code (its prompt names the company); pass code=...")
        return self.forecast_messages(self.messages(history, horizon, code, context_text), history, horizon)

    def forecast_messages(self, messages: list[dict], history: pd.DataFrame, horizon: int) -> Forecast:
        """Generate, parse and validate answers to ``messages`` until enough usable ones exist."""
        fields = self.spec.field_list
        dates = future_dates(history, horizon)
        previous_close = float(history["close"].iloc[-1])
        budget = self.generator.answer_budget(history, horizon, fields)
        tries: list[Attempt] = []
        for round_ in range(self.attempts):
            sample = self.samples > 1 or round_ > 0  # greedy is deterministic: retries must sample
            texts = self.generator.generate(messages, max_new_tokens=budget, samples=self.samples, sample=sample, seed=self.seed + round_,
                                             days=horizon)
            tries.extend(self._judge(text, fields, horizon, previous_close, dates) for text in texts)
            if sum(t.valid for t in tries) >= self.samples:
                break
        return self._combine(tries, dates, messages)

    @staticmethod
    def _judge(text: str, fields: list[str], horizon: int, previous_close: float, dates: list[str]) -> Attempt:
        parsed = prompts.parse_answer(text, fields, expected_days=horizon)
        if parsed.rows is None:
            return Attempt(text, reason=parsed.reason)
        return Attempt(text, rows=parsed.rows, problems=validate_forecast(parsed.rows, previous_close, dates))

    def _combine(self, tries: list[Attempt], dates: list[str], messages: list[dict]) -> Forecast:
        parsed = [t for t in tries if t.rows is not None]
        if not parsed:
            reasons = "; ".join(sorted({t.reason or "?" for t in tries}))
            raise ForecastFailed(f"the model gave no parseable forecast in {len(tries)} attempts ({reasons}); train longer or check the model dir",
                                 [t.to_dict() for t in tries])
        valid = [t for t in parsed if t.valid]
        chosen = valid[: self.samples] if valid else sorted(parsed, key=lambda t: len(t.problems))[:1]
        frame = _median_frame([t.rows for t in chosen], dates)
        info = {
            "attempts": [t.to_dict() for t in tries],
            "parsed": len(parsed),
            "valid": bool(valid),
            "problems": [] if valid else chosen[0].problems,
            "samples_used": len(chosen),
            "model_dates": chosen[0].rows["date"].tolist(),
            "messages": messages,
        }
        return Forecast(frame=frame, model=self.name, raw_text=chosen[0].text, info=info)


def _median_frame(tables: list[pd.DataFrame], dates: list[str]) -> pd.DataFrame:
    """Per-day median of each column over the answers (one answer: itself), indexed by the calendar's dates;
    with several answers also ``close_lo`` / ``close_hi``, the 80% interval of the close."""
    columns = [c for c in tables[0].columns if c != "date"]
    stack = np.stack([t[columns].to_numpy(dtype=float) for t in tables])
    frame = pd.DataFrame(np.median(stack, axis=0), columns=columns, index=pd.Index(dates, name="date"))
    for column in FORECAST_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    frame = frame[FORECAST_COLUMNS + [c for c in columns if c not in FORECAST_COLUMNS]]
    if len(tables) > 1:
        close = stack[:, :, columns.index("close")]
        frame["close_lo"], frame["close_hi"] = np.quantile(close, INTERVAL[0], axis=0), np.quantile(close, INTERVAL[1], axis=0)
    return frame
