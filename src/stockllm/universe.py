"""Which companies: the write-up's 41-company default universe and name/code resolution.

Resolution is offline: it uses the code lists the ``twstock`` package ships (TWSE 上市 and TPEx 上櫃
common stocks), plus the aliases the write-up itself uses (日月光 → 3711 日月光投控, 益登科技 → 3048 益登).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import StockLLMError

MARKETS = {"上市": "TWSE", "上櫃": "TPEx"}


@dataclass(frozen=True)
class Company:
    """A listed company as the rest of the package sees it."""

    code: str
    name_zh: str
    market: str  # "TWSE" or "TPEx"
    industry: str = ""
    name_en: str = ""
    aliases: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        record = asdict(self)
        record["aliases"] = list(self.aliases)
        return record


@lru_cache(maxsize=1)
def _seed() -> tuple[dict, ...]:
    text = (resources.files("stockllm") / "data" / "seed_companies.json").read_text("utf-8")
    return tuple(json.loads(text))


@lru_cache(maxsize=1)
def _listed() -> dict[str, Company]:
    """All common stocks twstock knows, by code (TWSE and TPEx), enriched with the seed's English names."""
    import twstock  # imported lazily: it reads two CSVs of ~46k rows

    seed = {entry["code"]: entry for entry in _seed()}
    listed: dict[str, Company] = {}
    for code, info in twstock.codes.items():
        if info.type != "股票" or info.market not in MARKETS:
            continue
        extra = seed.get(code, {})
        listed[code] = Company(
            code=code,
            name_zh=info.name,
            market=MARKETS[info.market],
            industry=info.group or "",
            name_en=extra.get("name_en", ""),
            aliases=tuple(extra.get("aliases", ())),
        )
    return listed


def listed_companies(market: str | None = None) -> list[Company]:
    """Every listed common stock twstock knows (of ``market``, ``"TWSE"`` or ``"TPEx"``, when given), by code."""
    return [company for _, company in sorted(_listed().items()) if market is None or company.market == market]


def default_universe() -> list[Company]:
    """The write-up's 41 listed companies (33 TWSE, 8 TPEx), in the seed's order."""
    return [resolve_code(entry["code"]) for entry in _seed()]


def resolve_code(code: str | int) -> Company:
    """The company listed under ``code`` (``2330`` and ``"2330"`` both work)."""
    key = str(code).strip()
    company = _listed().get(key)
    if company is None:
        close = difflib.get_close_matches(key, list(_listed()), n=5, cutoff=0.6)
        hint = f"; closest codes: {', '.join(f'{c} {_listed()[c].name_zh}' for c in close)}" if close else ""
        raise StockLLMError(f"unknown stock code {key!r}: not a TWSE/TPEx common stock in twstock's code list{hint}")
    return company


def resolve_name(name: str) -> Company:
    """The company called ``name`` (exact twstock name, or one of the write-up's aliases)."""
    key = name.strip()
    by_name: dict[str, list[Company]] = {}
    for company in _listed().values():
        for label in (company.name_zh, *company.aliases):
            by_name.setdefault(label, []).append(company)
    matches = by_name.get(key, [])
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listing = ", ".join(f"{c.code} {c.name_zh} ({c.market})" for c in matches)
        raise StockLLMError(f"company name {key!r} is ambiguous: {listing}; give {{\"code\": ...}} instead")
    close = difflib.get_close_matches(key, list(by_name), n=5, cutoff=0.3)
    hint = ", ".join(f"{n} ({by_name[n][0].code})" for n in close) or "none"
    raise StockLLMError(f"unknown company name {key!r}; closest matches: {hint}. Use the listed name or {{\"code\": ...}}")


def resolve(entry: dict | str | int) -> Company:
    """Resolve one company-list entry: ``{"code": ...}``, ``{"name_zh": ...}``, a code or a name."""
    if isinstance(entry, dict):
        if entry.get("code") not in (None, ""):
            return resolve_code(entry["code"])
        if entry.get("name_zh"):
            return resolve_name(str(entry["name_zh"]))
        raise StockLLMError(f"company entry {json.dumps(entry, ensure_ascii=False)} has neither 'code' nor 'name_zh'")
    text = str(entry).strip()
    return resolve_code(text) if text.isdigit() else resolve_name(text)


def load_company_list(path: Path | str | None) -> list[Company]:
    """Companies of a write-up company-list file (JSON list of ``{"name_zh"}``/``{"code"}``), or the default 41.

    Duplicates are dropped, keeping the first occurrence's order.
    """
    if path is None:
        return default_universe()
    path = Path(path)
    if not path.exists():
        raise StockLLMError(f"company list file {path} does not exist; give a JSON list like [{{\"code\": \"2330\"}}, {{\"name_zh\": \"鴻海\"}}]")
    try:
        entries = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StockLLMError(f"company list file {path} is not valid UTF-8 JSON ({exc}); expected a list of {{\"code\"}} or {{\"name_zh\"}} objects") from None
    if not isinstance(entries, list) or not entries:
        raise StockLLMError(f"company list file {path} must hold a non-empty JSON list of {{\"code\"}} or {{\"name_zh\"}} objects")
    seen: dict[str, Company] = {}
    for entry in entries:
        company = resolve(entry)
        seen.setdefault(company.code, company)
    return list(seen.values())


ALL_STORED = "all"
"""``--codes all``: every company with a price file in the data dir (the whole market after a market-wide fetch)."""


def stored_companies(data_dir: Path | str) -> list[Company]:
    """Every company with stored prices in ``data_dir``, by code; a stored code twstock does not list is refused."""
    from .store import stored_codes

    codes = stored_codes(Path(data_dir))
    if not codes:
        raise StockLLMError(f"--codes all selects every company with prices in {Path(data_dir) / 'prices'}, and there is none; "
                            "run `stockllm fetch` (or `stockllm fetch --offline`) first, or pass --data-dir")
    unknown = [code for code in codes if code not in _listed()]
    if unknown:
        raise StockLLMError(f"--codes all: {len(unknown)} stored price file(s) are not TWSE/TPEx common stocks in twstock's code list "
                            f"({', '.join(unknown[:5])}{', …' if len(unknown) > 5 else ''}); move them out of {Path(data_dir) / 'prices'}")
    return [_listed()[code] for code in codes]


def select_companies(company_list_file: Path | str | None = None, codes: list[str] | None = None,
                     data_dir: Path | str | None = None) -> list[Company]:
    """The companies a command works on: explicit ``codes`` win, then the list file, then the default 41.

    ``codes == ["all"]`` selects every company stored in ``data_dir`` (:func:`stored_companies`).
    """
    if codes and any(str(code).strip().lower() == ALL_STORED for code in codes):
        if len(codes) > 1:
            raise StockLLMError(f"--codes all already selects every stored company; drop the other codes ({' '.join(c for c in codes if c.lower() != ALL_STORED)})")
        if data_dir is None:
            raise StockLLMError("--codes all needs the data dir whose stored companies it selects (--data-dir)")
        return stored_companies(data_dir)
    if codes:
        return [resolve(code) for code in codes]
    return load_company_list(company_list_file)
