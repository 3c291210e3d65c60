"""The fine-tuned LLM as a :class:`~stockllm.forecasters.base.Forecaster`: prompt → generate → parse → validate.

The prompt is built by :func:`stockllm.dataset.history_messages` from the :class:`~stockllm.dataset.DatasetSpec`
stored in the model dir — the same code that wrote the training examples — and rendered with the
tokenizer's chat template (:mod:`stockllm.llm.chat`). The answer's header and its trading dates are supplied
(:mod:`stockllm.llm.scaffold`): the model writes the numbers. Answers are read back with
:func:`stockllm.prompts.parse_answer` and checked with :func:`stockllm.validation.validate_forecast`.

Failures are reported, never papered over: an answer that does not parse is retried (sampled, seeded) a
bounded number of times; when none parses, :class:`ForecastFailed` says why. An answer that parses but
breaks a market rule (a low above the open, a jump past the ±10% limit) is only used when no
attempt gave a valid one, and then carries ``info["valid"] = False`` and the problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .. import prompts
from ..dataset import DatasetSpec, history_messages
from ..errors import StockLLMError
from ..forecasters.base import FORECAST_COLUMNS, Forecast, ForecastRequest, future_dates
from ..universe import resolve
from ..validation import validate_forecast
from .backends import load_generator
from .chat import encode_prompt
from .generation import GenerationRequest, Generator
from .scaffold import answer_scaffold

DEFAULT_ATTEMPTS = 3
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
    """Past days to show for ``horizon``: ``available`` days when that makes a trained window (evaluation asks a
    window's past), else a trained window with that future (shortest past), else the nearest longer one."""
    if available is not None and (available, horizon) in spec.windows:
        return available
    exact = [p for p, f in spec.windows if f == horizon]
    if exact:
        return min(exact)
    longer = sorted((f, p) for p, f in spec.windows if f > horizon)
    return longer[0][1] if longer else max(spec.windows, key=lambda w: (w[1], -w[0]))[0]


@dataclass
class _Job:
    """One forecast in progress: its prompt, calendar, budget and the answers so far."""

    messages: list[dict]
    history: pd.DataFrame
    horizon: int
    request: GenerationRequest
    dates: list[str]  # the calendar's trading days the answer covers
    prefill_text: str  # the answer's start, supplied in the prompt (header and first date)
    tries: list[Attempt] = field(default_factory=list)


class LLMForecaster:
    """Forecaster protocol over a trained model dir (adapter + tokenizer + training_info.json).

    ``predict_batch`` generates the answers of many forecasts together (the backend batches them); a
    forecast whose answers are unusable is retried with seeded sampling, again in a batch with the others.
    """

    def __init__(self, generator: Generator, info: Mapping[str, Any], *, data_dir: Path | str | None = None, samples: int = 1,
                 attempts: int = DEFAULT_ATTEMPTS, seed: int = 3407, name: str = "llm"):
        if samples < 1 or attempts < 1:
            raise StockLLMError(f"samples and attempts must be at least 1 (got samples={samples}, attempts={attempts})")
        self.generator = generator
        self.info = dict(info)
        self.spec = DatasetSpec.from_dict(self.info.get("dataset", {}))
        self.data_dir = data_dir
        self.samples = samples
        self.attempts = attempts
        self.seed = seed
        self.name = name
        self.progress: Callable[[str], None] | None = None  # told "attempt n/N …" at each round (the app shows it)

    @classmethod
    def from_model_dir(cls, path: Path | str, *, backend: str = "auto", full_head: bool = False, precision: str = "auto",
                       **options: Any) -> "LLMForecaster":
        from .backends import read_training_info

        generator = load_generator(path, backend, full_head=full_head, precision=precision)
        return cls(generator, read_training_info(path), **options)

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "LLMForecaster":
        """Nothing to do: the model is fine-tuned beforehand by ``stockllm train``."""
        return self

    def messages(self, history: pd.DataFrame, horizon: int, code: str, context_text: str | None = None,
                 past: int | None = None) -> list[dict]:
        """The user turn for a forecast after the last row of ``history`` (same builder as training); ``past`` is
        the window asked for (default: a trained window for ``horizon``)."""
        days = choose_past(self.spec, horizon, available=past)
        return history_messages(resolve(code), history, days, horizon, self.spec, data_dir=self.data_dir, context_text=context_text)

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None, context_text: str | None = None,
                past: int | None = None) -> Forecast:
        if code is None:
            raise StockLLMError("the LLM forecaster needs the stock code (its prompt names the company); pass code=...")
        return self.forecast_messages(self.messages(history, horizon, code, context_text, past), history, horizon)

    def predict_batch(self, requests: list[ForecastRequest]) -> list[Forecast | Exception]:
        """Forecasts for many requests at once (see :func:`stockllm.forecasters.base.predict_many`); a request
        whose prompt cannot be built or whose answers never parse gives its :class:`StockLLMError`."""
        out: list[Forecast | Exception | None] = [None] * len(requests)
        jobs: dict[int, _Job] = {}
        for index, request in enumerate(requests):
            try:
                messages = self.messages(request.history, request.horizon, request.code, past=request.past)
                jobs[index] = self._job(messages, request.history, request.horizon)
            except StockLLMError as exc:
                out[index] = exc
        for index, result in zip(jobs, self._run(list(jobs.values()))):
            out[index] = result
        return out

    def forecast_messages(self, messages: list[dict], history: pd.DataFrame, horizon: int) -> Forecast:
        """Generate, parse and validate answers to ``messages`` until enough usable ones exist."""
        result = self._run([self._job(messages, history, horizon)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _job(self, messages: list[dict], history: pd.DataFrame, horizon: int) -> _Job:
        tokenizer = self.generator.tokenizer
        budget = answer_budget(tokenizer, history, horizon, self.spec.field_list)
        dates = future_dates(history, horizon)
        scaffold = answer_scaffold(tokenizer, dates, self.spec.field_list)
        request = GenerationRequest(encode_prompt(tokenizer, messages) + list(scaffold.prefill), budget, horizon, scaffold.line_prefixes)
        return _Job(messages, history, horizon, request, dates, scaffold.prefill_text)

    def _run(self, jobs: list[_Job]) -> list[Forecast | Exception]:
        """Rounds of generation over the jobs that still lack ``samples`` valid answers: the first greedy
        (unless several samples are asked), the retries sampled with a per-round seed."""
        fields = self.spec.field_list
        pending = list(jobs)
        for round_ in range(self.attempts):
            if not pending:
                break
            sample = self.samples > 1 or round_ > 0  # greedy is deterministic: retries must sample
            if self.progress:
                self.progress(f"attempt {round_ + 1}/{self.attempts}: writing {len(pending)} answer{'s' if len(pending) > 1 else ''}"
                              f"{' (sampled)' if sample else ''}")
            answers = self.generator.generate([job.request for job in pending], sample=sample, seed=self.seed + round_, samples=self.samples)
            for job, texts in zip(pending, answers):
                previous_close = float(job.history["close"].iloc[-1])
                job.tries.extend(_judge(job.prefill_text + text, fields, job.horizon, previous_close, job.dates) for text in texts)
            pending = [job for job in pending if sum(t.valid for t in job.tries) < self.samples]
        out: list[Forecast | Exception] = []
        for job in jobs:
            try:
                out.append(self._combine(job.tries, job.dates, job.messages))
            except ForecastFailed as exc:
                out.append(exc)
        return out

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
            "messages": messages,
            "backend": self.generator.name,
        }
        return Forecast(frame=frame, model=self.name, raw_text=chosen[0].text, info=info)


def _judge(text: str, fields: list[str], horizon: int, previous_close: float, dates: list[str]) -> Attempt:
    """Parse one answer and check it against the market rules, on the dates and fields the model wrote."""
    parsed = prompts.parse_answer(text, fields, expected_days=horizon)
    if parsed.rows is None:
        return Attempt(text, reason=parsed.reason)
    return Attempt(text, rows=parsed.rows, problems=validate_forecast(parsed.rows, previous_close, dates))


def answer_budget(tokenizer: Any, history: pd.DataFrame, horizon: int, fields: list[str]) -> int:
    """New tokens allowed: 1.5 × the length of an answer made of recent rows, plus slack."""
    rows = history.iloc[[-1] * horizon] if len(history) else history
    example = prompts.assistant_answer(rows, fields) if len(rows) else "x" * 80 * horizon
    return int(1.5 * len(tokenizer(example, add_special_tokens=False)["input_ids"])) + 16


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
