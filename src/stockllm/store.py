"""The local data directory: one price CSV and one news JSON per company, written atomically.

Layout of a data dir::

    <data-dir>/prices/<code>.csv     twstock fields, trading days ascending
    <data-dir>/news/<code>.json      {"name_zh", "name_en", "news_zh": [...], "news_en": [...], "code"}
    <data-dir>/cache/...             source caches (finished months, news replies, request counters)

Every file this package owns is written through :func:`atomic_write_text` (temp file in the same folder +
``os.replace``), so a process killed at any moment leaves either the old file or the new one, never half.

Price rows are checked when read (:func:`read_price_csv`): a negative, zero or infinite price, a high below
the low or a negative volume is refused in one line naming the file, the date and the field — never
passed on as a training answer or a fill price.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import StockLLMError

PRICE_COLUMNS = ["date", "capacity", "turnover", "open", "high", "low", "close", "change", "transaction"]
"""The twstock ``DATATUPLE`` fields, lower case — the write-up's CSV format."""

INT_COLUMNS = ["capacity", "turnover", "transaction"]
FLOAT_COLUMNS = ["open", "high", "low", "close", "change"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
"""Mode of files we write: what ``open()`` would give (mkstemp's private 0600 would surprise users)."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_figure(figure: Any, path: Path, **savefig_options: Any) -> Path:
    """Save a matplotlib ``figure`` to ``path`` atomically (charts, report plots) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        figure.savefig(tmp, **savefig_options)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(figure)
    return path


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON counterpart of :func:`atomic_write_text` (UTF-8, Chinese kept readable)."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def read_json(path: Path, kind: type[dict] | type[list], fix: str) -> Any:
    """The JSON object (``kind=dict``) or list in ``path``; anything else is one :class:`StockLLMError` line.

    Covers every way a hand-edited or half-copied file goes wrong — missing, a folder, not UTF-8, not JSON,
    the wrong shape — and ends the message with ``fix``, what to do about it.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise StockLLMError(f"{path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise StockLLMError(f"{path} is a folder, not a JSON file; {fix}") from None
    except json.JSONDecodeError as exc:
        raise StockLLMError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    except (ValueError, RecursionError, OSError) as exc:  # not UTF-8, absurd numbers or nesting, unreadable
        raise StockLLMError(f"{path} cannot be read as JSON ({type(exc).__name__}); {fix}") from None
    if not isinstance(value, kind):
        raise StockLLMError(f"{path} holds a JSON {type(value).__name__}, not {'an object' if kind is dict else 'a list'}; {fix}")
    return value


def normalise_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with exactly the twstock columns, typed, sorted by date, one row per date.

    Missing columns are added empty (never invented); integer columns use pandas' nullable ``Int64`` so an
    empty ``turnover`` stays empty instead of becoming ``0`` or ``nan`` floats in the CSV.
    """
    frame = frame.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "date" not in frame.columns:
        raise StockLLMError("price table has no 'date' column; expected the twstock header " + ",".join(PRICE_COLUMNS))
    for column in PRICE_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame = frame[PRICE_COLUMNS]
    dates = pd.to_datetime(frame["date"], errors="coerce")
    if dates.isna().any():
        bad = frame["date"][dates.isna()].iloc[0]
        raise StockLLMError(f"date {bad!r} is not a date (row {int(dates.isna().to_numpy().argmax()) + 1}); write YYYY-MM-DD")
    frame["date"] = dates.dt.strftime("%Y-%m-%d")
    for column in INT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame = frame.drop_duplicates(subset="date", keep="last").sort_values("date").reset_index(drop=True)
    return frame


def prices_path(data_dir: Path, code: str) -> Path:
    return Path(data_dir) / "prices" / f"{code}.csv"


def news_path(data_dir: Path, code: str) -> Path:
    return Path(data_dir) / "news" / f"{code}.json"


def write_prices(data_dir: Path, code: str, frame: pd.DataFrame) -> Path:
    """Store a company's price table (normalised) as ``prices/<code>.csv``."""
    path = prices_path(data_dir, code)
    atomic_write_text(path, normalise_prices(frame).to_csv(index=False))
    return path


def read_prices(data_dir: Path, code: str) -> pd.DataFrame:
    """Read ``prices/<code>.csv``; a pandas index column (as the write-up's files have) is accepted."""
    path = prices_path(data_dir, code)
    if not path.exists():
        raise StockLLMError(f"no prices for {code} in {path.parent}; run `stockllm fetch --offline` (or `stockllm fetch`) first")
    return read_price_csv(path)


def read_price_csv(path: Path) -> pd.DataFrame:
    """Read any twstock-format CSV (with or without the leading index column) into the normalised form."""
    try:
        frame = pd.read_csv(path, dtype={"date": str, "Date": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise StockLLMError(f"{path} is not a readable price CSV ({exc.__class__.__name__}); expected header {','.join(PRICE_COLUMNS)}") from None
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed")]]
    try:
        frame = normalise_prices(frame)
    except StockLLMError as exc:
        raise StockLLMError(f"{path}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise StockLLMError(f"{path}: cannot parse price rows ({exc}); expected header {','.join(PRICE_COLUMNS)}") from None
    problem = price_row_problem(frame)
    if problem:
        raise StockLLMError(f"{path}: {problem}; correct or delete that row (or re-run `stockllm fetch`)")
    return frame


def price_row_problem(frame: pd.DataFrame) -> str | None:
    """The first impossible value of a normalised price table as ``"<date> <field> <value> ..."``, or ``None``.

    Empty cells are fine (missing, never invented); present prices must be positive and finite, volumes not
    negative, and a day's high at least its low.
    """
    checks = [(column, "must be a positive finite price", lambda v: ~(v > 0) | (v == math.inf)) for column in ("open", "high", "low", "close")]
    checks += [("change", "must be finite", lambda v: v.abs() == math.inf)]
    checks += [(column, "must not be negative", lambda v: v < 0) for column in INT_COLUMNS]
    for column, rule, broken in checks:
        values = frame[column]
        bad = values.notna() & broken(values).fillna(False).astype(bool)
        if bad.any():
            i = bad.to_numpy().argmax()
            return f"{frame['date'].iloc[i]} {column} {values.iloc[i]} {rule}"
    inverted = (frame["high"] < frame["low"]).fillna(False).to_numpy()
    if inverted.any():
        i = inverted.argmax()
        return f"{frame['date'].iloc[i]} high {frame['high'].iloc[i]} is below low {frame['low'].iloc[i]}"
    return None


def stored_codes(data_dir: Path) -> list[str]:
    """Codes that have a price CSV in ``data_dir``, sorted."""
    folder = Path(data_dir) / "prices"
    return sorted(p.stem for p in folder.glob("*.csv")) if folder.exists() else []


def write_news(data_dir: Path, code: str, record: dict) -> Path:
    path = news_path(data_dir, code)
    atomic_write_json(path, record)
    return path


def read_news(data_dir: Path, code: str) -> dict | None:
    """The stored news record of ``code``, or ``None`` when no news was fetched for it."""
    path = news_path(data_dir, code)
    if not path.exists():
        return None
    return read_json(path, dict, "delete it and re-run `stockllm fetch --news`")


# --- the bundled offline snapshot -------------------------------------------------------------------

def snapshot_dir() -> Path:
    """Folder of the price snapshot shipped with the package (see its PROVENANCE.md)."""
    return Path(str(resources.files("stockllm") / "data" / "snapshot"))


def snapshot_codes() -> list[str]:
    return sorted(p.stem for p in snapshot_dir().glob("*.csv"))


def install_snapshot(data_dir: Path, codes: list[str] | None = None) -> dict[str, tuple[str, str, int]]:
    """Copy snapshot CSVs of ``codes`` (default: all) into ``data_dir/prices``.

    Returns ``{code: (first_date, last_date, rows)}``. Codes the snapshot lacks are skipped (the caller
    reports them); existing files are replaced atomically.
    """
    out: dict[str, tuple[str, str, int]] = {}
    target = Path(data_dir) / "prices"
    target.mkdir(parents=True, exist_ok=True)
    for code in codes if codes is not None else snapshot_codes():
        source = snapshot_dir() / f"{code}.csv"
        if not source.exists():
            continue
        tmp = target / f".{code}.csv.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target / f"{code}.csv")
        frame = pd.read_csv(source, usecols=["date"], dtype=str)
        out[code] = (frame["date"].iloc[0], frame["date"].iloc[-1], len(frame))
    return out
