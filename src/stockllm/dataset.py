"""Fine-tuning examples: price windows × a field set × optional context → chat turns, split without leakage.

One builder serves training and inference: :func:`build_dataset` makes every example with the same
helpers (:class:`_Company` rows formatted once by :mod:`stockllm.prompts`, :func:`_context`,
:func:`_user_turn`) that :func:`history_messages` / :func:`inference_messages` use for a single forecast,
so a model is always asked in exactly the words it was trained on. The model directory stores
:meth:`DatasetSpec.to_dict` to rebuild that wording.

Design notes
------------
* **Windows** are counted in the company's stored trading rows. A window is skipped (and counted) when
  one of its rows lacks a value of the field set (halted days, empty cells), when its date was
  duplicated in the CSV, or when the trading calendar says days are missing between two of its rows.
* **Splits** are chronological with boundary dates shared by all companies (so one company's test days
  are never another's training days) and an embargo of ``gap`` rows (default: the longest horizon):
  training examples end ``gap`` rows before the validation start; validation examples may read those
  rows as input but predict only from the validation start on; the same between validation and test.
  Hence no target day of one split is an input or target day of another.
* **News** for a window whose last input day is D: only articles published on or before D in Taipei
  time (an article at 2025-01-03T20:00Z is 2025-01-04 in Taipei, so it is not D = 2025-01-03's news),
  at most ``news_lookback_days`` old, ranked by mentions of the company in title/description, then by
  recency; the top ``top_k_news`` headlines that fit the token budget.
* **Length**: a whole example (prompt + answer + chat-template overhead) must fit ``max_seq_length``.
  Tokens are counted by a tokenizer function when one is given, else approximated from characters
  (:func:`approx_tokens`). Examples whose prices alone do not fit are skipped and counted.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import secrets
import shutil
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields as dataclass_fields
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import prompts, store
from .errors import StockLLMError
from .market import HOLIDAYS
from .signals import best_four_point
from .universe import Company, resolve

TokenCounter = Callable[[str], int]

CONTEXTS = ("none", "news", "signals", "news+signals")
DEFAULT_WINDOWS: list[tuple[int, int]] = [(1, 1), (5, 5), (20, 5), (60, 20)]
SPLITS = ("train", "validation", "test")

TOKENS_PER_CHAR = 0.8
"""Default token estimate per character, measured on the packaged Gemma 3 tokenizer (which splits every
digit): the 87-character 9921 price line is 68 tokens, a Chinese headline of 42 characters 33 tokens.
Llama 3 needs about half as many for price lines, so the estimate errs on the long side."""

TEMPLATE_OVERHEAD_TOKENS = 48
"""Tokens the chat template adds around the turns (role headers, Llama 3.1's default system date lines)."""

_HEADLINE_CHARS = 120
_CALENDAR = (min(HOLIDAYS), max(HOLIDAYS))
"""Dates the trading calendar knows closures for; gaps outside it cannot be told from holidays."""
_HOLIDAYS64 = np.array(sorted(HOLIDAYS), dtype="datetime64[D]")


def approx_tokens(text: str) -> int:
    """Token estimate without a tokenizer (see :data:`TOKENS_PER_CHAR`)."""
    return _chars_to_tokens(len(text))


def _chars_to_tokens(chars):
    return np.ceil(np.asarray(chars) * TOKENS_PER_CHAR).astype(int) if np.ndim(chars) else math.ceil(chars * TOKENS_PER_CHAR)


# --- the spec -------------------------------------------------------------------------------------------

def parse_windows(text: str | Iterable) -> list[tuple[int, int]]:
    """``"1:1,5:5,20:5,60:20"`` (or a list of pairs) → ``[(1, 1), (5, 5), (20, 5), (60, 20)]``, checked."""
    example = "e.g. --windows 1:1,5:5,20:5,60:20"
    items = [part.strip() for part in text.split(",")] if isinstance(text, str) else list(text)
    windows: list[tuple[int, int]] = []
    for item in items:
        try:
            past, future = (int(x) for x in (item.split(":") if isinstance(item, str) else item))
        except (ValueError, TypeError):
            raise StockLLMError(f"invalid window {item!r}: write PAST:FUTURE in trading days, {example}") from None
        if past < 1 or future < 1:
            raise StockLLMError(f"invalid window {item!r}: past and future must be at least 1 trading day, {example}")
        if (past, future) in windows:
            raise StockLLMError(f"window {past}:{future} is given twice in --windows; list each once, {example}")
        windows.append((past, future))
    if not windows:
        raise StockLLMError(f"no window given; {example}")
    return windows


def _check_date(value: str | None, option: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise StockLLMError(f"{option} {value!r} is not a date; write YYYY-MM-DD, e.g. {option} 2026-01-02") from None


@dataclass
class DatasetSpec:
    """Everything that decides the text of an example; stored with a trained model to rebuild its prompts."""

    windows: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_WINDOWS))
    fields: str = prompts.DEFAULT_FIELD_SET
    context: str = "none"
    stride: int = 1
    top_k_news: int = 5
    max_seq_length: int = 6144  # a 60:20 example is up to ~5,300 Gemma tokens (one token per digit)
    val_start: str | None = None
    test_start: str | None = None
    val_frac: float = 0.1
    test_frac: float = 0.1
    gap: int | None = None
    news_lookback_days: int = 30

    def __post_init__(self) -> None:
        self.windows = parse_windows(self.windows)
        prompts.resolve_fields(self.fields)
        if self.context not in CONTEXTS:
            raise StockLLMError(f"unknown context {self.context!r}; choose one of: {', '.join(CONTEXTS)}")
        for name, low in (("stride", 1), ("top_k_news", 0), ("max_seq_length", 64), ("news_lookback_days", 1)):
            if int(getattr(self, name)) < low:
                raise StockLLMError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if self.gap is not None and self.gap < 0:
            raise StockLLMError(f"--gap must be 0 or more trading days, got {self.gap}")
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise StockLLMError(f"--val-frac {self.val_frac} and --test-frac {self.test_frac} must each be in [0, 1) and sum below 1")
        self.val_start = _check_date(self.val_start, "--val-start")
        self.test_start = _check_date(self.test_start, "--test-start")
        if self.val_start and self.test_start and self.val_start > self.test_start:
            raise StockLLMError(f"--val-start {self.val_start} is after --test-start {self.test_start}; validation must come before test")

    @property
    def field_list(self) -> list[str]:
        return prompts.resolve_fields(self.fields)

    @property
    def embargo(self) -> int:
        """Rows between splits: ``gap`` or, by default, the longest horizon among the windows."""
        return self.gap if self.gap is not None else max(f for _, f in self.windows)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["windows"] = [list(w) for w in self.windows]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "DatasetSpec":
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        known = {f.name for f in dataclass_fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def spec_from_args(args) -> DatasetSpec:
    """The spec from the options of :func:`stockllm.cli.common.add_dataset_args` (plus ``--max-seq-length``)."""
    defaults = DatasetSpec()
    return DatasetSpec(**{
        f.name: getattr(args, f.name, getattr(defaults, f.name)) for f in dataclass_fields(DatasetSpec)
    })


# --- one company, prepared once ----------------------------------------------------------------------

@dataclass
class _Company:
    """A company's rows formatted once; every example is a slice of these arrays."""

    company: Company
    dates: np.ndarray            # YYYY-MM-DD strings
    history: pd.DataFrame        # the stored table (for signals)
    user_lines: list[str]        # "Date: 2025-01-03, Open: …"
    answer_lines: list[str]      # " 2025-01-03, Open: …"
    line_chars: np.ndarray       # cumulative length of user lines, with a leading 0
    bad: np.ndarray              # cumulative count of unusable rows (empty field / duplicated date), leading 0
    gaps: np.ndarray             # cumulative count of "trading days missing after row i", leading 0
    news: list[tuple[str, float, int, str]] | None = None  # (Taipei date, timestamp, score, headline line)
    signals: dict[int, str] = field(default_factory=dict)   # BestFourPoint line per origin row, computed once

    @property
    def n(self) -> int:
        return len(self.dates)


def _missing_after(dates: np.ndarray) -> np.ndarray:
    """Trading days the calendar expects strictly between each row and the next (0 outside its knowledge)."""
    if len(dates) < 2:
        return np.zeros(len(dates), dtype=int)
    days = dates.astype("datetime64[D]")
    missing = np.busday_count(days[:-1] + 1, days[1:], holidays=_HOLIDAYS64)
    lo, hi = (np.datetime64(d.isoformat()) for d in _CALENDAR)
    missing[(days[:-1] < lo) | (days[1:] > hi)] = 0
    return np.append(np.maximum(missing, 0), 0)


def _duplicated_dates(path: Path, kept_rows: int) -> list[str]:
    """Dates that appear more than once in the CSV (the store keeps the last copy; we trust neither)."""
    with open(path, "rb") as handle:
        lines = sum(1 for line in handle if line.strip()) - 1
    if lines == kept_rows:
        return []
    raw = pd.read_csv(path, dtype=str)
    column = next((c for c in raw.columns if str(c).strip().lower() == "date"), None)
    if column is None:
        return []
    parsed = pd.to_datetime(raw[column], errors="coerce").dt.strftime("%Y-%m-%d")
    return sorted(parsed[parsed.duplicated(keep=False)].dropna().unique())


def _prepare(company: Company, frame: pd.DataFrame, fields: list[str], duplicated: Sequence[str] = (), formatted: dict | None = None) -> tuple[_Company, list[str]]:
    """Format ``frame`` for ``fields`` and find its unusable rows; returns the notes to report."""
    notes: list[str] = []
    dates = frame["date"].to_numpy(dtype=str)
    empty = frame[fields[1:]].isna().any(axis=1).to_numpy()
    if empty.any():
        days = dates[empty]
        notes.append(f"{company.code}: {len(days)} day(s) with empty {'/'.join(fields[1:])} values (e.g. halted), first {days[0]}")
    unusable = empty | np.isin(dates, list(duplicated))
    if len(duplicated):
        notes.append(f"{company.code}: duplicate dates in the CSV ({', '.join(duplicated[:3])}{'…' if len(duplicated) > 3 else ''}); windows over them skipped")
    missing = _missing_after(dates)
    if missing.any():
        where = np.flatnonzero(missing)
        notes.append(f"{company.code}: {int(missing.sum())} trading day(s) missing in {len(where)} gap(s), first after {dates[where[0]]}")
    bodies = prompts.row_bodies(frame, fields, formatted)
    users = (prompts.USER_LINE_PREFIX + bodies).tolist()
    return _Company(
        company=company,
        dates=dates,
        history=frame,
        user_lines=users,
        answer_lines=(prompts.ANSWER_LINE_PREFIX + bodies).tolist(),
        line_chars=np.concatenate([[0], np.cumsum([len(x) for x in users])]),
        bad=np.concatenate([[0], np.cumsum(unusable)]),
        gaps=np.concatenate([[0], np.cumsum(missing > 0)]),
    ), notes


# --- context -----------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    return " ".join(str(text or "").split())


def _load_news(record: dict | None, company: Company) -> list[tuple[str, float, int, str]]:
    """Articles as (Taipei publication date, timestamp, relevance score, headline line); undated ones dropped."""
    if not record:
        return []
    names = list(dict.fromkeys(n for n in (company.name_zh, record.get("name_zh"), company.name_en, record.get("name_en"), company.code) if n))
    out, seen = [], set()
    for article in [*record.get("news_zh", []), *record.get("news_en", [])]:
        title = _clean(article.get("title"))
        stamp = pd.to_datetime(article.get("publishedAt"), utc=True, errors="coerce")
        if not title or pd.isna(stamp) or title in seen:
            continue
        seen.add(title)
        description = _clean(article.get("description"))
        score = 2 * any(n.lower() in title.lower() for n in names) + any(n.lower() in description.lower() for n in names)
        source = article.get("source")
        source = _clean(source.get("name") if isinstance(source, dict) else source)
        day = stamp.tz_convert("Asia/Taipei").strftime("%Y-%m-%d")
        headline = title if len(title) <= _HEADLINE_CHARS else title[: _HEADLINE_CHARS - 1] + "…"
        out.append((day, stamp.timestamp(), score, f"- {day} {headline}" + (f" ({source})" if source else "")))
    return out


def ranked_news(news: list[tuple[str, float, int, str]], as_of: str, lookback_days: int) -> list[str]:
    """Headline lines published on or before ``as_of`` (Taipei date) and at most ``lookback_days`` old, best first."""
    earliest = (date.fromisoformat(as_of) - timedelta(days=lookback_days)).isoformat()
    usable = [item for item in news if earliest <= item[0] <= as_of]
    usable.sort(key=lambda item: (-item[2], -item[1]))
    return [item[3] for item in usable]


def _signal_line(prepared: _Company, origin: int) -> str:
    """twstock's BestFourPoint of the origin day, from rows up to it only."""
    if origin not in prepared.signals:
        signal = best_four_point(prepared.history.iloc[max(0, origin - 29): origin + 1])
        prepared.signals[origin] = f"BestFourPoint on {prepared.dates[origin]}: " + (signal.describe() if signal else "not enough history")
    return prepared.signals[origin]


def _context(prepared: _Company, origin: int, spec: DatasetSpec, budget: int, count: TokenCounter) -> str:
    """The context text for a window ending at row ``origin``, within ``budget`` tokens (by ``count``)."""
    if spec.context == "none":
        return ""
    lines: list[str] = []
    used = count(prompts.context_block("x")) - count("x")
    signal = _signal_line(prepared, origin) if "signals" in spec.context else None
    if signal:
        used += count(signal) + 1
    if "news" in spec.context:
        day = prepared.dates[origin]
        header = f"News up to {day} (most relevant first):"
        used += count(header) + 1
        for headline in ranked_news(prepared.news or [], day, spec.news_lookback_days)[: spec.top_k_news]:
            cost = count(headline) + 1
            if used + cost > budget:
                break
            lines.append(headline)
            used += cost
        lines = [header, *lines] if lines else [f"News up to {day}: none"]
    if signal:
        lines.append(signal)
    text = "\n".join(lines)
    return text if count(prompts.context_block(text)) <= budget else ""


# --- one example -------------------------------------------------------------------------------------

def _window_problem(prepared: _Company, start: np.ndarray, length: int) -> np.ndarray:
    """Per window start: '' if usable, else the reason it is skipped (vectorised over ``start``)."""
    end = start + length
    reasons = np.full(len(start), "", dtype=object)
    reasons[prepared.gaps[end - 1] - prepared.gaps[start] > 0] = "missing_days"
    reasons[prepared.bad[end] - prepared.bad[start] > 0] = "missing_values"
    return reasons


def _answer_estimate(prepared: _Company, start: int, past: int, future: int) -> str:
    """A stand-in answer as long as the past days suggest, for budgeting context before the answer is known."""
    longest = max(prepared.answer_lines[start: start + past], key=len)
    return prompts.answer_text([longest + "0" * 4] * future)


def _room(prepared: _Company, start: int, past: int, future: int, spec: DatasetSpec, count: TokenCounter, plain: str) -> int:
    """Tokens left for context once the plain prompt and an answer of the expected length are counted."""
    return spec.max_seq_length - TEMPLATE_OVERHEAD_TOKENS - count(plain) - count(_answer_estimate(prepared, start, past, future))


def _user_turn(prepared: _Company, start: int, past: int, future: int, spec: DatasetSpec, count: TokenCounter, context_text: str | None) -> str:
    """The user turn for rows ``start … start+past-1`` with the spec's context (or ``context_text``)."""
    lines = prepared.user_lines[start: start + past]
    plain = prompts.user_text(prepared.company.name_zh, lines, future)
    if context_text is None:
        if spec.context == "none":
            return plain
        context_text = _context(prepared, start + past - 1, spec, _room(prepared, start, past, future, spec, count, plain), count)
    return prompts.user_text(prepared.company.name_zh, lines, future, context_text) if context_text else plain


# --- the dataset -------------------------------------------------------------------------------------

@dataclass
class BuiltDataset:
    """Examples per split (``{"messages", "code", "origin", "window"}``), metadata and skipped companies."""

    splits: dict[str, list[dict]]
    metadata: dict
    skipped: list[dict]

    def summary(self) -> str:
        """Counts per split and window, as a small table (what ``stockllm build`` prints)."""
        counts = self.metadata["counts"]
        windows = [w for w in self.metadata["windows"]]
        width = max(len("window"), *(len(w) for w in windows))
        columns = [*SPLITS, "skipped", "unused"]
        lines = [f"{'window':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
        totals = Counter()
        for w in windows:
            reasons = self.metadata["skipped_windows"].get(w, {})
            row = {s: counts[s].get(w, 0) for s in SPLITS}
            row["unused"] = reasons.get("between_splits", 0)
            row["skipped"] = sum(reasons.values()) - row["unused"]
            totals.update(row)
            lines.append(f"{w:<{width}}  " + "  ".join(f"{row[c]:>10,}" for c in columns))
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[c]:>10,}" for c in columns))
        lines.append("skipped: windows over bad rows or too long for --max-seq-length; unused: windows crossing a split boundary or its gap")
        return "\n".join(lines)


def _companies(items: Iterable[Company | str]) -> list[Company]:
    return [item if isinstance(item, Company) else resolve(item) for item in items]


def _boundaries(all_dates: np.ndarray, spec: DatasetSpec) -> tuple[str, str]:
    """(validation start, test start) dates: given, or at the fractions of all trading dates in the set."""
    days = np.unique(all_dates)
    n = len(days)

    def at(position: int) -> str:
        return days[position] if position < n else "9999-12-31"

    test = spec.test_start or at(n - round(n * spec.test_frac))
    if spec.val_start:
        val = spec.val_start
    else:
        t = int(np.searchsorted(days, test))
        val = at(max(0, t - round(n * spec.val_frac))) if spec.val_frac else test
    return val, test


@dataclass(frozen=True)
class _Stored:
    """A price file as read (never modified afterwards) and its columns as prompt text, formatted on demand."""

    frame: pd.DataFrame
    duplicated: list[str]
    formatted: dict[str, np.ndarray]


@lru_cache(maxsize=256)
def _read_stored(path: str, _version: tuple[int, int, int]) -> _Stored:
    """Read once per file version (path + inode/mtime/size): building several field sets re-reads nothing."""
    frame = store.read_price_csv(Path(path))
    return _Stored(frame, _duplicated_dates(Path(path), len(frame)), {})


def _load(data_dir: Path, company: Company, fields: list[str]) -> tuple[_Stored | None, str | None]:
    """(the stored prices, or the reason the company cannot be used)."""
    path = store.prices_path(data_dir, company.code)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None, "no price file"
    try:
        stored = _read_stored(str(path), (stat.st_ino, stat.st_mtime_ns, stat.st_size))
    except StockLLMError as exc:
        return None, f"unreadable price file ({exc})"
    lacking = [c for c in fields[1:] if stored.frame[c].isna().all()]
    if lacking:
        return None, "no " + ", ".join(lacking) + " values"
    return stored, None


def build_dataset(data_dir: Path | str, companies: Iterable[Company | str], spec: DatasetSpec, count_tokens: TokenCounter | None = None) -> BuiltDataset:
    """Every example of ``spec`` for ``companies`` from the prices (and news) in ``data_dir``.

    ``count_tokens`` (e.g. ``lambda t: len(tokenizer(t).input_ids)``) replaces the character estimate
    for the length limit; it is then called per example (slower). Raises :class:`StockLLMError` when no
    company has the field set's columns or no example results.
    """
    with _no_gc():
        return _build(Path(data_dir), _companies(companies), spec, count_tokens)


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: the ~10⁵ small dicts of a build trigger costly full collections
    (about half the build time) although they form no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(data_dir: Path, companies: list[Company], spec: DatasetSpec, count_tokens: TokenCounter | None) -> BuiltDataset:
    fields = spec.field_list
    count = count_tokens or approx_tokens
    skipped: list[dict] = []
    loaded: list[tuple[Company, _Stored]] = []
    for company in companies:
        stored, reason = _load(data_dir, company, fields)
        if reason:
            skipped.append({"code": company.code, "name": company.name_zh, "reason": reason})
        else:
            loaded.append((company, stored))
    if not loaded and all(s["reason"] == "no price file" for s in skipped):
        raise StockLLMError(f"no stored prices for these companies in {data_dir}; run `stockllm fetch --data-dir {data_dir}` "
                            "(add --offline for the bundled snapshot) or point --data-dir at your data")
    if not loaded:
        reasons = "; ".join(sorted({s["reason"] for s in skipped}))
        raise StockLLMError(f"no company can be used with --fields {spec.fields} ({reasons}); choose a field set these companies have (e.g. --fields seed-example) or fetch their full TWSE prices")

    val_start, test_start = (str(d) for d in _boundaries(np.concatenate([stored.frame["date"].to_numpy(dtype=str) for _, stored in loaded]), spec))
    if val_start > test_start:
        raise StockLLMError(f"validation would start ({val_start}) after the test split ({test_start}); give --test-start too or a later --val-start")
    gap = spec.embargo
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    counts = {s: Counter() for s in SPLITS}
    skipped_windows: dict[str, Counter] = defaultdict(Counter)
    spans: dict[str, list[str]] = {s: [] for s in SPLITS}
    notes: list[str] = []
    use_news = "news" in spec.context
    longest: dict[str, int] = {}
    without_news: list[str] = []

    for company, stored in loaded:
        prepared, company_notes = _prepare(company, stored.frame, fields, stored.duplicated, stored.formatted)
        notes.extend(company_notes)
        if use_news:
            record = store.read_news(data_dir, company.code)
            prepared.news = _load_news(record, company)
            if record is None:
                without_news.append(company.code)
        v, t = (int(np.searchsorted(prepared.dates, d)) for d in (val_start, test_start))
        for past, future in spec.windows:
            name, length = f"{past}:{future}", past + future
            if prepared.n < length:
                skipped_windows[name]["too_few_rows"] += 1
                notes.append(f"{company.code}: {prepared.n} rows, fewer than the {length} window {name} needs")
                continue
            starts = np.arange(0, prepared.n - length + 1, spec.stride)
            problems = _window_problem(prepared, starts, length)
            if count_tokens is None:  # vectorised length check with the character estimate
                chars = prepared.line_chars[starts + length] - prepared.line_chars[starts]
                fixed = len(prompts.user_text(company.name_zh, ["x"] * past, future)) - past + len(prompts.answer_text(["x"] * future)) - future
                tokens = _chars_to_tokens(chars - (len(prompts.USER_LINE_PREFIX) - len(prompts.ANSWER_LINE_PREFIX)) * future + fixed) + TEMPLATE_OVERHEAD_TOKENS
                long = (problems == "") & (tokens > spec.max_seq_length)
                problems[long] = "too_long"
                if long.any():
                    longest[name] = max(longest.get(name, 0), int(tokens[long].max()))
            # Rows before a split start that only the later split may read; none when that split is empty.
            cut_v, cut_t = (x - gap if x < prepared.n else prepared.n for x in (v, t))
            split = np.full(len(starts), "", dtype=object)
            split[starts + length <= cut_v] = "train"
            split[(starts >= cut_v) & (starts + past >= v) & (starts + length <= cut_t)] = "validation"
            split[(starts >= cut_t) & (starts + past >= t)] = "test"
            for reason, n in Counter(problems[problems != ""]).items():
                skipped_windows[name][reason] += n
            unassigned = int(((problems == "") & (split == "")).sum())
            if unassigned:
                skipped_windows[name]["between_splits"] += unassigned
            keep = problems == ""
            code, dates = company.code, prepared.dates.tolist()
            for split_name in SPLITS:
                out, kept = splits[split_name], []
                for start in starts[keep & (split == split_name)].tolist():
                    user = _user_turn(prepared, start, past, future, spec, count, None)
                    answer = prompts.answer_text(prepared.answer_lines[start + past: start + length])
                    if count_tokens is not None and count(user) + count(answer) + TEMPLATE_OVERHEAD_TOKENS > spec.max_seq_length:
                        skipped_windows[name]["too_long"] += 1
                        continue
                    out.append({
                        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                        "code": code,
                        "origin": dates[start + past - 1],
                        "window": name,
                    })
                    kept.append(start)
                if kept:
                    counts[split_name][name] += len(kept)
                    spans[split_name].extend((dates[kept[0]], dates[kept[-1] + length - 1]))

    if use_news and without_news:
        notes.append(f"no news file for {len(without_news)} of {len(loaded)} companies ({', '.join(without_news[:5])}{'…' if len(without_news) > 5 else ''}); their prompts say 'News … none' (run `stockllm fetch --news`)")
    for name, tokens in longest.items():
        dropped = skipped_windows[name]["too_long"]
        kept_total = sum(counts[split_name][name] for split_name in counts)
        loud = "WARNING: " if dropped > kept_total else ""  # fewer than half of the window's examples are left
        notes.append(f"{loud}window {name}: {dropped:,} of {dropped + kept_total:,} examples longer than --max-seq-length {spec.max_seq_length} "
                     f"(up to ~{tokens:,} tokens) skipped; raise --max-seq-length to keep them")
    total = sum(len(v) for v in splits.values())
    window_names = [f"{p}:{f}" for p, f in spec.windows]
    metadata = {
        "spec": spec.to_dict(),
        "fields": fields,
        "windows": window_names,
        "context": spec.context,
        "companies": [c.code for c, _ in loaded],
        "split_starts": {"validation": val_start, "test": test_start, "gap_rows": gap},
        "date_ranges": {s: {"first": min(spans[s], default=None), "last": max(spans[s], default=None)} for s in SPLITS},
        "counts": {s: {w: counts[s].get(w, 0) for w in window_names} for s in SPLITS},
        "totals": {s: len(splits[s]) for s in SPLITS},
        "skipped_companies": skipped,
        "skipped_windows": {w: dict(skipped_windows[w]) for w in window_names if skipped_windows[w]},
        "skipped_total": sum(n for w in skipped_windows.values() for reason, n in w.items() if reason != "between_splits"),
        "notes": notes,
        "token_count": "tokenizer" if count_tokens else f"estimate: {TOKENS_PER_CHAR} tokens per character + {TEMPLATE_OVERHEAD_TOKENS} template tokens",
    }
    if total == 0:
        reasons = ", ".join(f"{w}: {dict(c)}" for w, c in skipped_windows.items()) or "no windows fit the data"
        raise StockLLMError(f"no examples could be built ({reasons}); use shorter --windows, a larger --max-seq-length or more data")
    return BuiltDataset(splits=splits, metadata=metadata, skipped=skipped)


DATASET_FILES = frozenset({"metadata.json", *(f"{split}.jsonl" for split in SPLITS)})


def _is_leftover(name: str) -> bool:
    """A temporary file or folder of a killed write (``.<name>.<random>.tmp`` / ``.old``)."""
    return name.startswith(".") and name.endswith((".tmp", ".old"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that :func:`write_dataset` must not replace: a file, or a folder holding more
    than a dataset (``--out outputs`` would otherwise swap away the models beside it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StockLLMError(f"{out_dir} is a file; give --out a folder for the dataset")
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in DATASET_FILES and not _is_leftover(p.name))
        if foreign:
            raise StockLLMError(f"{out_dir} holds files that are not part of a dataset ({', '.join(foreign[:3])}); give --out a new or empty folder")


def write_dataset(built: BuiltDataset, out_dir: Path | str) -> dict[str, Path]:
    """``<split>.jsonl`` per non-empty split plus ``metadata.json``, swapped into ``out_dir`` as a whole.

    The files are written into a temporary sibling folder that then replaces ``out_dir``, so a build killed
    at any moment leaves the old dataset or the new one — never new training examples beside old
    validation ones (killed between the two renames it leaves neither, and the next build starts clean).
    Leftovers of killed builds are removed first. ``out_dir`` must be new, empty or an earlier dataset: a
    folder holding anything else is refused rather than replaced. An empty split gets no file (``datasets``
    refuses empty JSON files); ``metadata["files"]`` names the files and ``metadata["sha256"]`` their
    checksums, which :func:`load_written` verifies.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*"):
        if _is_leftover(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        files = {}
        for split, examples in built.splits.items():
            if examples:
                files[split] = f"{split}.jsonl"
                store.atomic_write_text(staging / files[split], "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
        built.metadata["files"] = files
        built.metadata["sha256"] = {name: _sha256(staging / name) for name in files.values()}
        store.atomic_write_json(staging / "metadata.json", built.metadata)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(4)}.old"
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {split: out_dir / name for split, name in files.items()} | {"metadata": out_dir / "metadata.json"}


def load_written(out_dir: Path | str, cache_dir: Path | str | None = None):
    """The splits written by :func:`write_dataset` as a ``datasets.DatasetDict`` (the trainer's input).

    Every file is checked against the checksums in ``metadata.json``, so a folder mixing two builds (or a
    split edited by hand) is refused instead of silently trained on.
    """
    from datasets import load_dataset

    out_dir = Path(out_dir)
    again = f"run `stockllm build --out {out_dir}`"
    if not (out_dir / "metadata.json").exists():
        raise StockLLMError(f"{out_dir} holds no dataset written by `stockllm build`; {again} first")
    meta = store.read_json(out_dir / "metadata.json", dict, again)
    files, sums = meta.get("files"), meta.get("sha256")
    if not isinstance(files, dict) or not isinstance(sums, dict):
        raise StockLLMError(f"{out_dir}/metadata.json lists no files with checksums (an older or foreign build); {again} again")
    for name in files.values():
        path = out_dir / str(name)
        if not path.is_file() or _sha256(path) != sums.get(name):
            raise StockLLMError(f"{path} is not the file {out_dir}/metadata.json describes (a mix of two builds, or edited); {again} again")
    return load_dataset("json", data_files={split: str(out_dir / name) for split, name in files.items()}, cache_dir=None if cache_dir is None else str(cache_dir))


# --- inference ---------------------------------------------------------------------------------------

def history_messages(
    company: Company | str,
    history: pd.DataFrame,
    past: int,
    future: int,
    spec: DatasetSpec,
    *,
    data_dir: Path | str | None = None,
    context_text: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[dict]:
    """The user turn asking for ``future`` days after the last row of ``history`` (its last ``past`` rows shown).

    Built by the same helpers as every training example. ``context_text`` overrides the automatic
    context (``""`` for none); otherwise ``spec.context`` decides, reading news from ``data_dir``.
    """
    company = _companies([company])[0]
    fields = spec.field_list
    frame = store.normalise_prices(history)
    lacking = [c for c in fields[1:] if frame[c].isna().all()]
    if lacking:
        raise StockLLMError(f"{company.code} has no {', '.join(lacking)} values but the model uses --fields {spec.fields}; use a model trained with a field set these prices have (e.g. seed-example)")
    if past < 1 or future < 1:
        raise StockLLMError(f"past and future must be at least 1 trading day (got past={past}, future={future})")
    if len(frame) < past:
        raise StockLLMError(f"{company.code} has {len(frame)} stored days up to {frame['date'].iloc[-1] if len(frame) else 'the given date'}, fewer than past={past}; use a smaller past or fetch more prices")
    # Only the shown days and BestFourPoint's 30-day look-back matter; formatting years of rows per call would not.
    prepared, _ = _prepare(company, frame.iloc[-(past + 30):].reset_index(drop=True), fields)
    start = prepared.n - past
    problem = _window_problem(prepared, np.array([start]), past)[0]
    if problem:
        what = "has days with empty values (e.g. a halted day)" if problem == "missing_values" else "spans trading days missing from the stored prices"
        raise StockLLMError(f"{company.code}'s last {past} days up to {prepared.dates[-1]} {what}; choose another as-of date or a shorter past, or re-fetch the prices")
    if context_text is None and "news" in spec.context:
        if data_dir is None:
            raise StockLLMError("news context needs the data directory with news/<code>.json; pass data_dir or context_text")
        prepared.news = _load_news(store.read_news(Path(data_dir), company.code), company)
    count = count_tokens or approx_tokens
    plain = prompts.user_text(company.name_zh, prepared.user_lines[start:], future)
    if _room(prepared, start, past, future, spec, count, plain) < 0:
        raise StockLLMError(f"a {past}-day prompt for a {future}-day answer does not fit --max-seq-length {spec.max_seq_length}; use a shorter past/future or a longer max length")
    return [{"role": "user", "content": _user_turn(prepared, start, past, future, spec, count, context_text)}]


def inference_messages(
    data_dir: Path | str,
    company: Company | str,
    past: int,
    future: int,
    spec: DatasetSpec,
    as_of: str | None = None,
    context_text: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[dict]:
    """The user turn for a forecast from stored prices: last input day ``as_of`` (default: the last stored day).

    When ``as_of`` is not a trading day, the last stored day before it is used.
    """
    company = _companies([company])[0]
    frame = store.read_prices(Path(data_dir), company.code)
    if as_of is not None:
        as_of = _check_date(as_of, "--as-of")
        frame = frame[frame["date"] <= as_of]
        if frame.empty:
            raise StockLLMError(f"no stored prices of {company.code} on or before {as_of}; choose a later date or fetch older prices")
    return history_messages(company, frame, past, future, spec, data_dir=data_dir, context_text=context_text, count_tokens=count_tokens)
