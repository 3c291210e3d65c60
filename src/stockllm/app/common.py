"""What every tab needs: the app's settings, finding a company by what a user types, and checked inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .. import store
from ..errors import StockLLMError
from ..universe import Company, default_universe, resolve_code
from .jobs import ForecasterPool, JobBoard


@dataclass
class AppContext:
    """Settings and shared state of one running app (one per ``build_app``)."""

    data_dir: Path
    model_dir: Path | None = None
    outputs: Path = Path("outputs")
    exchange_url: str | None = None
    exchange_db: Path = Path("exchange.sqlite")
    pool: ForecasterPool = field(default_factory=ForecasterPool)
    board: JobBoard = field(default_factory=JobBoard)
    local_exchange: Any = None  # the bundled exchange served from this process when no exchange_url is given

    def __post_init__(self) -> None:
        self.data_dir, self.outputs, self.exchange_db = Path(self.data_dir), Path(self.outputs), Path(self.exchange_db)
        self.model_dir = Path(self.model_dir) if self.model_dir else None
        ensure_data(self.data_dir)

    def companies(self) -> list[Company]:
        """The default universe's companies with stored prices, then any other stored code, in the seed's order."""
        stored = store.stored_codes(self.data_dir)
        seeded = [c for c in default_universe() if c.code in stored]
        known = {c.code for c in seeded}
        return seeded + [resolve_code(code) for code in stored if code not in known]


def ensure_data(data_dir: Path) -> list[str]:
    """Stored codes; an empty data dir gets the bundled offline snapshot so the app always has data."""
    codes = store.stored_codes(data_dir)
    if not codes:
        store.install_snapshot(data_dir)
        codes = store.stored_codes(data_dir)
    return codes


def label(company: Company) -> str:
    """How a company is shown and searched in pickers: code, Chinese name, English name and aliases."""
    names = [company.name_zh, company.name_en, *company.aliases]
    return " · ".join([company.code, *[n for n in dict.fromkeys(names) if n]])


def find_company(text: str | None, companies: list[Company]) -> Company:
    """The company a user means by a code, a Chinese or English name, an alias or a picker label.

    Exact matches win over partial ones; an ambiguous or unknown text is refused with what would match.
    """
    query = (text or "").strip()
    if not query:
        raise StockLLMError("no company chosen; type a code (2330), a Chinese name (台積電) or an English name (TSMC)")
    head = query.split(" · ")[0].strip()
    by_code = {c.code: c for c in companies}
    if head in by_code:
        return by_code[head]
    wanted = _fold(query)
    exact = [c for c in companies if wanted in {_fold(n) for n in (c.name_zh, c.name_en, *c.aliases) if n}]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [c for c in companies if wanted in _fold(label(c))]
    if len(partial) == 1:
        return partial[0]
    if partial:
        listing = ", ".join(label(c) for c in partial[:6])
        raise StockLLMError(f"{query!r} matches several companies ({listing}); type more of the name or the code")
    raise StockLLMError(f"no company with stored prices matches {query!r}; type a code such as 2330 or a name such as 台積電 / TSMC "
                        "(the Data tab lists every stored company)")


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def parse_day(text: str | None, what: str) -> date:
    """A ``YYYY-MM-DD`` date typed into ``what``, or a message saying how to write it."""
    value = (text or "").strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise StockLLMError(f"{what} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-02") from None


def positive_cash(value: float | None) -> int:
    """Whole New Taiwan dollars, refusing none, zero and negative amounts."""
    if value is None or not value > 0:
        raise StockLLMError(f"starting cash must be more than NT$0 (got {value}); enter e.g. 1000000")
    return int(round(value))


def session_of(request) -> str:
    """The browser session a Gradio event came from (each tab of a browser is its own session)."""
    return getattr(request, "session_hash", None) or "local"
