"""The ONE place that turns price rows into the write-up's chat text, and generated text back into rows.

Training examples (:mod:`stockllm.dataset`), the predictor and every parser of model output use these
functions, so the text a model is trained on and the text it is asked at inference time cannot drift apart.

The format is the write-up's example (巨大 9921), character for character::

    user:      "Here is past 1 day stock price of 巨大 company.\\n\\n"
               "Date: 2025-01-03, Open: 141.5, High: 143.5, Low: 138.0, Close: 139.0, Capacity: 1447003\\n"
               "Predict the next date price:\\n"
    assistant: "The next 1 day price is: Date:\\n"
               " 2025-01-06, Open: 139.5, High: 144.5, Low: 137.5, Close: 143.0, Capacity: 1208884\\n"

Multi-day windows keep that shape: one line per day, "past N days", "next N days", and the question
becomes "Predict the next N days price:" (the example's "next date" wording is kept for one day only).
Optional context (news headlines, signals) sits between the price lines and the question inside
``<context>`` … ``</context>``; without context the prompt is byte-identical to the example.

Numbers are written so they read back exactly: prices with Python's shortest round-trip form
(``141.5``, ``139.0``, ``37.45``), counts as plain integers (``1447003``), an empty field as nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from datetime import date as _date
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .store import FLOAT_COLUMNS, INT_COLUMNS, PRICE_COLUMNS

FIELD_SETS: dict[str, list[str]] = {
    "seed-example": ["date", "open", "high", "low", "close", "capacity"],
    "all": ["date", "capacity", "turnover", "open", "high", "low", "close", "change", "transaction"],
    "no-capacity": ["date", "turnover", "open", "high", "low", "close", "transaction"],
    "ohlc-transaction": ["date", "open", "high", "low", "close", "transaction"],
}
"""The write-up's three field experiments plus its example's own fields (``seed-example``, the default)."""

DEFAULT_FIELD_SET = "seed-example"

LABELS: dict[str, str] = {column: column.capitalize() for column in PRICE_COLUMNS}
"""How each column is named in the text (``Open``, ``Capacity``…), as in the example."""

CONTEXT_OPEN, CONTEXT_CLOSE = "<context>", "</context>"
USER_LINE_PREFIX, ANSWER_LINE_PREFIX = "Date: ", " "
"""A day's line starts with ``Date: `` in the question and with one space in the answer (the example's quirk)."""


def resolve_fields(fields: str | Sequence[str]) -> list[str]:
    """A field-set name (``"all"``) or an explicit column list, checked; ``date`` must come first."""
    if isinstance(fields, str):
        if fields not in FIELD_SETS:
            raise StockLLMError(f"unknown field set {fields!r}; choose one of: {', '.join(FIELD_SETS)}")
        return list(FIELD_SETS[fields])
    columns = [str(f).strip().lower() for f in fields]
    unknown = [c for c in columns if c not in PRICE_COLUMNS]
    if unknown or not columns or columns[0] != "date" or len(set(columns)) != len(columns):
        raise StockLLMError(f"invalid field list {list(fields)}: give 'date' first, then distinct columns among {', '.join(PRICE_COLUMNS[1:])}")
    return columns


# --- rows -> text ------------------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_column(values: pd.Series, column: str) -> np.ndarray:
    """One column as text for every row at once (vectorised): shortest round-trip floats, plain ints, '' if empty."""
    if column == "date":
        return values.astype(str).to_numpy(dtype=object)
    missing = values.isna().to_numpy()
    if column in INT_COLUMNS:
        numbers = pd.to_numeric(values, errors="coerce").fillna(0).round().astype("int64").to_numpy()
    else:
        numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    text = numbers.astype(str).astype(object)
    text[missing] = ""
    return text


def row_bodies(frame: pd.DataFrame, fields: Sequence[str], formatted: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``"2025-01-03, Open: 141.5, …, Capacity: 1447003"`` for every row of ``frame`` (object array).

    The user turn prefixes each body with ``"Date: "``, the answer with a space — see :func:`user_lines`
    and :func:`answer_lines`. Built column-wise so a whole company history is formatted in one pass;
    ``formatted`` (column → text, filled as columns are formatted) lets builds of several field sets over
    the same table format each column once.
    """
    fields = resolve_fields(fields)
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise StockLLMError(f"price rows lack column(s) {', '.join(missing)} needed by the prompt fields {fields}")
    formatted = {} if formatted is None else formatted
    for column in fields:
        if column not in formatted:
            formatted[column] = format_column(frame[column], column)
    out = formatted["date"]
    for column in fields[1:]:
        out = out + f", {LABELS[column]}: " + formatted[column]
    return out


def user_lines(frame: pd.DataFrame, fields: Sequence[str]) -> np.ndarray:
    return USER_LINE_PREFIX + row_bodies(frame, fields)


def answer_lines(frame: pd.DataFrame, fields: Sequence[str]) -> np.ndarray:
    return ANSWER_LINE_PREFIX + row_bodies(frame, fields)


def context_block(context: str) -> str:
    """The delimited context section; ``""`` for no context so the plain prompt stays byte-identical."""
    context = (context or "").strip()
    if not context:
        return ""
    context = context.replace(CONTEXT_OPEN, "").replace(CONTEXT_CLOSE, "")
    return f"\n{CONTEXT_OPEN}\n{context}\n{CONTEXT_CLOSE}\n\n"


def question(future_days: int) -> str:
    return "Predict the next date price:\n" if future_days == 1 else f"Predict the next {future_days} days price:\n"


@lru_cache(maxsize=4096)
def _wording(name_zh: str, past_days: int, future_days: int) -> tuple[str, str]:
    """(text before the day lines, question after them) — cached: a dataset asks this ~10⁵ times."""
    if past_days < 1:
        raise StockLLMError("a prompt needs at least one past day of prices")
    if future_days < 1:
        raise StockLLMError(f"future days must be at least 1, got {future_days}")
    return f"Here is past {_plural(past_days, 'day')} stock price of {name_zh} company.\n\n", question(future_days)


@lru_cache(maxsize=256)
def _answer_header(days: int) -> str:
    return f"The next {_plural(days, 'day')} price is: Date:\n"


def user_text(name_zh: str, lines: Iterable[str], future_days: int, context: str = "") -> str:
    """The user turn from pre-formatted :func:`user_lines` (the dataset builder's fast path)."""
    lines = lines if isinstance(lines, list) else list(lines)
    head, ask = _wording(name_zh, len(lines), future_days)
    days = "\n".join(lines)
    return f"{head}{days}\n{context_block(context) if context else ''}{ask}"


def answer_text(lines: Iterable[str]) -> str:
    """The assistant turn from pre-formatted :func:`answer_lines`."""
    lines = lines if isinstance(lines, list) else list(lines)
    days = "\n".join(lines)
    return f"{_answer_header(len(lines))}{days}\n"


def user_prompt(name_zh: str, past: pd.DataFrame, future_days: int, fields: str | Sequence[str], context: str = "") -> str:
    """The user turn asking for ``future_days`` days after the rows of ``past``."""
    return user_text(name_zh, user_lines(past, fields), future_days, context)


def assistant_answer(future: pd.DataFrame, fields: str | Sequence[str]) -> str:
    """The assistant turn giving the rows of ``future``."""
    if len(future) == 0:
        raise StockLLMError("an answer needs at least one future day of prices")
    return answer_text(answer_lines(future, fields))


def messages(
    name_zh: str,
    past: pd.DataFrame,
    future: pd.DataFrame | None,
    fields: str | Sequence[str],
    context: str = "",
    *,
    future_days: int | None = None,
) -> list[dict]:
    """Chat turns (``role``/``content``): user + assistant for training, the user turn alone when ``future`` is None.

    With ``future=None`` the number of days to ask for is ``future_days`` (required then).
    """
    if future is None:
        if future_days is None:
            raise StockLLMError("messages() without future rows needs future_days (how many days to predict)")
        return [{"role": "user", "content": user_prompt(name_zh, past, future_days, fields, context)}]
    return [
        {"role": "user", "content": user_prompt(name_zh, past, len(future), fields, context)},
        {"role": "assistant", "content": assistant_answer(future, fields)},
    ]


# --- text -> rows ------------------------------------------------------------------------------------

_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)日?")
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-+]?\.\d+"
_PAIR = re.compile(r"(?P<label>[A-Za-z_]+)(?:\s*[:=]\s*(?P<value>" + _NUMBER + r")?|\s+(?P<bare>" + _NUMBER + r"))")
_ALIASES = {
    **{column: column for column in PRICE_COLUMNS},
    "vol": "capacity", "volume": "capacity", "shares": "capacity",
    "amount": "turnover", "value": "turnover",
    "transactions": "transaction", "trades": "transaction",
    "opening": "open", "closing": "close", "highest": "high", "lowest": "low",
}


@dataclass
class ParsedAnswer:
    """What :func:`parse_answer` read from generated text.

    ``rows`` is a complete table (columns = the fields, ``date`` as ``YYYY-MM-DD``, ascending; exactly
    ``expected_days`` rows when that was given) or ``None`` when the text could not give one; ``reason``
    then says why, in one line. ``partial`` keeps whatever complete rows were found, for diagnostics.
    """

    rows: pd.DataFrame | None
    reason: str | None = None
    partial: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return self.rows is not None


_LARGEST = 1e15
"""Bigger than any TWSE/TPEx price, share count, turnover or trade count; larger numbers are generation noise."""


def _number(text: str, column: str) -> float | int:
    """The value of a number in the answer; raises ValueError when it is beyond any real market figure."""
    value = float(text.replace(",", ""))
    if not abs(value) < _LARGEST:
        raise ValueError(f"{column} {text[:20]} is out of range")
    return int(round(value)) if column in INT_COLUMNS else value


def _typed(records: list[dict], fields: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=fields)
    for column in fields[1:]:
        if column in INT_COLUMNS:
            frame[column] = pd.array(frame[column].tolist(), dtype="Int64")
        elif column in FLOAT_COLUMNS:
            frame[column] = frame[column].astype(float)
    return frame


def parse_answer(text: str, fields: str | Sequence[str], expected_days: int | None = None) -> ParsedAnswer:
    """Read day rows back from an answer, tolerating what small models do to the format.

    Accepted: text before, between and after the rows; days out of order (sorted) or repeated (first
    kept); ``2025/01/06`` dates; thousands separators (``1,208,884``); any case and spacing of labels;
    full-width characters; a few synonyms (``Volume`` for capacity). A row lacking one of the fields is
    dropped. With ``expected_days``, fewer complete days is a failure and extra days are cut off.
    """
    fields = resolve_fields(fields)
    wanted = fields[1:]
    text = unicodedata.normalize("NFKC", text or "")
    dates = list(_DATE.finditer(text))
    if not dates:
        return ParsedAnswer(None, "no date (YYYY-MM-DD) found in the answer")

    records: dict[str, dict] = {}
    incomplete: list[str] = []
    for i, match in enumerate(dates):
        try:
            day = _date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
        except ValueError:
            continue
        end = dates[i + 1].start() if i + 1 < len(dates) else len(text)
        values: dict[str, float | int | None] = {}
        try:
            for pair in _PAIR.finditer(text, match.end(), end):
                column = _ALIASES.get(pair.group("label").lower())
                if column in wanted and column not in values:
                    raw = pair.group("value") or pair.group("bare")
                    values[column] = None if raw is None else _number(raw, column)
        except ValueError as exc:
            incomplete.append(f"{day}: {exc}")
            continue
        lacking = [c for c in wanted if c not in values]
        if lacking:
            incomplete.append(f"{day} lacks {', '.join(lacking)}")
            continue
        records.setdefault(day, {"date": day, **values})

    rows = [records[d] for d in sorted(records)]
    partial = _typed(rows, fields) if rows else None
    problems = "; ".join(incomplete[:3])
    if not rows:
        return ParsedAnswer(None, f"no complete day row in the answer ({problems or 'no fields found'})")
    if expected_days is not None:
        if len(rows) < expected_days:
            detail = f" ({problems})" if problems else ""
            return ParsedAnswer(None, f"found {len(rows)} of {expected_days} days{detail}", partial)
        rows = rows[:expected_days]
    return ParsedAnswer(_typed(rows, fields), None, partial)
