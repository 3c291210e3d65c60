"""Specification: the forecaster supplies an answer's header and trading dates; the model writes the numbers.

The supplied tokens are those the model was trained on (cut from the training tokenisation of a whole
answer), every backend forces each later date when the model ends a line, refuses the end of turn before the
asked lines are written, and stops once they are.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from stockllm import prompts, store
from stockllm.config import TrainConfig
from stockllm.dataset import DatasetSpec
from stockllm.forecasters.base import ForecastRequest, future_dates
from stockllm.llm.forecaster import LLMForecaster
from stockllm.llm.generation import AnswerCursor, GenerationRequest, cut_after_lines
from stockllm.llm.scaffold import answer_scaffold
from stockllm.llm.training import fine_tune
from tiny_llm import build_tiny_llm

DATES = ["2025-01-06", "2025-01-07", "2025-01-08"]
FIELDS = prompts.resolve_fields("seed-example")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "model")


def real_answer() -> str:
    rows = pd.DataFrame({"date": DATES, "open": [139.5, 141.0, 98.7], "high": [144.5, 142.0, 101.0], "low": [137.5, 139.0, 97.55],
                         "close": [143.0, 140.5, 100.0], "capacity": [1208884, 987654, 45]})
    return prompts.assistant_answer(rows, FIELDS)


def contains(ids: list[int], part: tuple[int, ...]) -> bool:
    return any(tuple(ids[i:i + len(part)]) == part for i in range(len(ids) - len(part) + 1))


def test_the_supplied_tokens_are_the_training_tokenisation_of_a_real_answer(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer(real_answer(), add_special_tokens=False)["input_ids"]
    scaffold = answer_scaffold(tokenizer, DATES, FIELDS)
    assert ids[: len(scaffold.prefill)] == list(scaffold.prefill)
    assert scaffold.prefill_text == tokenizer.decode(list(scaffold.prefill))
    assert scaffold.prefill_text.startswith("The next 3 days price is: Date:\n 2025-01-06")
    assert len(scaffold.line_prefixes) == 2
    for day, prefix in zip(DATES[1:], scaffold.line_prefixes):
        assert day in tokenizer.decode(list(prefix)) and contains(ids, prefix)


def test_a_cursor_forces_each_later_date_after_a_newline_and_refuses_to_stop_before_the_last_line():
    cursor = AnswerCursor(GenerationRequest([1], 50, lines=3, line_prefixes=((7, 8), (9,))))
    assert cursor.forced() is None and not cursor.may_stop
    cursor.took(5, " Open: 1.0", 1)
    assert cursor.forced() is None
    cursor.took(6, "\n", 2)
    assert cursor.forced() == 7
    cursor.took(7, " 2025", 3)
    assert cursor.forced() == 8
    cursor.took(8, "-01-07,", 4)
    assert cursor.forced() is None and not cursor.may_stop and not cursor.done
    cursor.took(6, "\n", 5)
    assert cursor.forced() == 9 and cursor.may_stop  # on the last line the model may end its turn
    cursor.took(9, " 2025-01-08,", 6)
    cursor.took(6, "\n", 7)
    assert cursor.done and cursor.may_stop


def test_a_cursor_is_done_at_its_budget_and_a_request_without_lines_may_always_stop():
    cursor = AnswerCursor(GenerationRequest([1], 2))
    assert cursor.may_stop
    cursor.took(5, "1", 1)
    assert not cursor.done
    cursor.took(5, "1", 2)
    assert cursor.done


def test_an_answer_is_cut_after_its_asked_lines():
    assert cut_after_lines("a\nb\nc\n", 2) == "a\nb\n"
    assert cut_after_lines("a\nb", 3) == "a\nb"
    assert cut_after_lines("a\nb\n", None) == "a\nb\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model) -> dict:
    root = tmp_path_factory.mktemp("scaffold")
    store.install_snapshot(root / "data", ["9921"])
    config = TrainConfig(model_name=str(tiny_model), output_dir=str(root / "out"), model_dir=str(root / "model"), max_steps=4,
                         batch_size=4, gradient_accumulation_steps=1, learning_rate=2e-2, report_to="none", max_seq_length=1024)
    fine_tune(root / "data", ["9921"], DatasetSpec(windows=[(2, 1), (5, 3)], max_seq_length=1024), config, eval_limit=2, say=lambda _: None)
    return {"data_dir": root / "data", "model_dir": root / "model"}


def test_every_attempt_writes_the_calendars_dates_and_exactly_the_asked_lines(trained):
    """Even a barely trained model's answers are on the trading days asked, one line each."""
    forecaster = LLMForecaster.from_model_dir(trained["model_dir"], data_dir=trained["data_dir"], attempts=2)
    history = store.read_prices(trained["data_dir"], "9921")
    requests = [ForecastRequest(history.iloc[:end], 3, "9921", past=5) for end in (60, 61, 62, 63)]  # 61→62: over a weekend
    for request, result in zip(requests, forecaster.predict_batch(requests)):
        dates = future_dates(request.history, 3)
        attempts = result.attempts if isinstance(result, Exception) else result.info["attempts"]
        for attempt in attempts:
            days = [line.split(",")[0].strip() for line in attempt["text"].split("\n")[1:] if line]
            assert days and days == dates[: len(days)]  # all of them unless the token budget ran out
            assert attempt["text"].count("\n") <= 4  # the header's newline and at most one per asked day
