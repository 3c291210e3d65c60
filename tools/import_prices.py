"""Turn a folder of twstock-format price CSVs (``<code>.csv``) into a stockllm data dir, with provenance.

The project's shared whole-market set ``shared/data/prices/market_ohlcv_2024-12_2026-08/`` (1,918 TWSE and
TPEx common stocks, Yahoo OHLCV, see that folder's section in ``shared/data/SOURCES.md``) holds one CSV per
company beside a ``manifest.csv``; ``stockllm`` reads a data dir laid out as ``<data-dir>/prices/<code>.csv``.
This tool copies every company file through :func:`stockllm.store.write_prices` (the store's normalisation:
twstock columns, types, one row per date, atomic writes) and writes ``<data-dir>/PROVENANCE.md``: where the
rows came from, how many, and which rows are off the tick grid (Yahoo scales the prices before a stock
dividend; they are kept verbatim and listed, never altered). Rows the store refuses to read
(:func:`stockllm.store.price_row_problem`: e.g. the few ``0.0,0.0,0.0,0.0`` days Yahoo writes) are no trading
record: they are dropped and listed with the reason. Nothing is fetched, filled in or adjusted.

Usage::

    python tools/import_prices.py ../shared/data/prices/market_ohlcv_2024-12_2026-08 --data-dir data/market
    stockllm evaluate --data-dir data/market --codes all ...
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from stockllm import store
from stockllm.validation import off_tick_dates

def import_prices(source: Path, data_dir: Path) -> list[dict]:
    """Copy every ``<code>.csv`` of ``source`` into ``data_dir/prices``; one summary row per company."""
    rows = []
    for path in sorted(p for p in source.glob("*.csv") if re.fullmatch(r"[0-9A-Z]{4,6}", p.stem)):
        frame, dropped = store.normalise_prices(pd.read_csv(path, dtype={"date": str})), []
        while problem := store.price_row_problem(frame):  # "<date> <field> <value> <rule>"
            dropped.append(problem)
            frame = frame[frame["date"] != problem.split()[0]]
        store.write_prices(data_dir, path.stem, frame)
        rows.append({"code": path.stem, "rows": len(frame), "first": frame["date"].iloc[0], "last": frame["date"].iloc[-1],
                     "off_tick": off_tick_dates(frame), "dropped": dropped})
    return rows


def provenance(source: Path, rows: list[dict]) -> str:
    off = [r for r in rows if r["off_tick"]]
    dropped = [f"{r['code']} {problem}" for r in rows for problem in r["dropped"]]
    lines = [
        "# Data dir provenance",
        "",
        f"Imported by `tools/import_prices.py` from `{source}` (see that folder's section in `shared/data/SOURCES.md`).",
        "Every row is the source's own, normalised by `stockllm.store` (twstock columns, one row per date); nothing was",
        "fetched, filled in or adjusted. Prices are as the source has them; `turnover`, `change` and `transaction`",
        "are empty where the source has none.",
        "",
        f"* companies: {len(rows)}; rows: {sum(r['rows'] for r in rows)};"
        f" first day {min(r['first'] for r in rows)}; last day {max(r['last'] for r in rows)}",
        f"* rows dropped as no trading record: {len(dropped)}{' (' + '; '.join(dropped) + ')' if dropped else ''}",
        f"* rows off the tick grid (kept verbatim): {sum(len(r['off_tick']) for r in off)} in {len(off)} companies."
        " Yahoo scales a company's prices before a stock dividend (配股) by the dividend's factor, so such rows are"
        " the exchange's prices times a constant (e.g. 3540 2026-06-01 → 06-09: × 0.97333).",
        "",
        "| code | rows off the tick grid | first | last |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['code']} | {len(r['off_tick'])} | {r['off_tick'][0]} | {r['off_tick'][-1]} |" for r in off]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of <code>.csv files in the twstock format")
    parser.add_argument("--data-dir", type=Path, required=True, help="data dir to write (its prices/ and PROVENANCE.md)")
    args = parser.parse_args()
    rows = import_prices(args.source, args.data_dir)
    if not rows:
        print(f"error: no <code>.csv price files in {args.source}", file=sys.stderr)
        return 2
    store.atomic_write_text(args.data_dir / "PROVENANCE.md", provenance(args.source, rows))
    print(f"wrote {len(rows)} companies to {args.data_dir / 'prices'} and {args.data_dir / 'PROVENANCE.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
