"""Compose the offline price snapshot shipped in ``src/stockllm/data/snapshot`` from ``../shared/data/prices``.

Kept in the repository so the snapshot's provenance is reproducible: it follows the recommendation at the
end of ``shared/data/SOURCES.md`` — one source per company, so every column means the same along a series:

* TWSE companies present in ``twse_full_2024-06_2026-05`` → those rows (TWSE's own figures, nine fields),
  prefixed by ``twstock_2023-03_2024-07`` (also TWSE's figures via twstock) where that set has the company
  and the overlapping days agree exactly on every column;
* every other company (4938 and the TPEx names) → ``recent_2024-12_2026-06`` (Yahoo OHLCV; ``turnover``,
  ``change``, ``transaction`` left empty, never invented).

Rows whose prices are off the tick grid (:func:`stockllm.validation.off_tick_dates`) are left out and listed in
``PROVENANCE.md``: they are not what the exchange printed. The only case is 3540 2026-06-01 → 06-09, seven Yahoo
rows scaled by one constant (every price ÷ 0.97333 lands on the 0.05 grid within the source's 2-decimal
rounding; the 06-09 close 26.47 is 27.20 ÷ 1.0274, consistent with the ex-rights reference of a stock dividend
on 06-10): Yahoo adjusted the rows the source had refreshed before that ex-rights day and not the older ones, so
the series held a −2.7% step on 06-01 that never traded and hid the ex-rights drop of 06-10. Dropping them leaves a
one-week gap, which the evaluation and the dataset handle by date (the same as a source's missing days).

Usage: ``python tools/compose_snapshot.py [SHARED_DATA_DIR]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from stockllm.validation import off_tick_dates

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "stockllm" / "data" / "snapshot"
COLUMNS = ["date", "capacity", "turnover", "open", "high", "low", "close", "change", "transaction"]
SETS = {
    "full": "twse_full_2024-06_2026-05",
    "old": "twstock_2023-03_2024-07",
    "yahoo": "recent_2024-12_2026-06",
}
REPOS = {
    "full": "KenYu910645/stock_analyse `data/adj_price/<code>_202005_to_202605.csv` @ addd2a2af9b2b9611400f5957d503f61be8f3089",
    "old": "ckw10326/scrapy_twstock `data/<code>.csv` @ 4327076479ea6cb043299781eedbce5aa042ba6d",
    "yahoo": "brianchen222/tw-stock-screener `data/<code>.csv` @ 0e8265a946122b7295386c3d34cddf8720863bc3",
}


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"date": str})[COLUMNS]


def compose(shared: Path) -> list[dict]:
    prices = shared / "prices"
    companies = json.loads((ROOT / "src" / "stockllm" / "data" / "seed_companies.json").read_text("utf-8"))
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for company in companies:
        code = company["code"]
        full = prices / SETS["full"] / f"{code}.csv"
        if full.exists():
            frame, parts = read(full), ["full"]
            old_path = prices / SETS["old"] / f"{code}.csv"
            if old_path.exists():
                old = read(old_path)
                overlap = old.merge(frame, on="date", suffixes=("_old", "_new"))
                same = all(
                    overlap[f"{c}_old"].astype(str).equals(overlap[f"{c}_new"].astype(str))
                    or (overlap[f"{c}_old"].astype(float) - overlap[f"{c}_new"].astype(float)).abs().max() == 0
                    for c in COLUMNS[1:]
                )
                if len(overlap) and same:
                    frame = pd.concat([old[old["date"] < frame["date"].iloc[0]], frame], ignore_index=True)
                    parts.insert(0, "old")
        else:
            frame, parts = read(prices / SETS["yahoo"] / f"{code}.csv"), ["yahoo"]
        dropped = off_tick_dates(frame)
        frame = frame[~frame["date"].isin(dropped)]
        frame.to_csv(OUT / f"{code}.csv", index=False)
        rows.append({
            "code": code, "name": company["name_zh"], "market": company["market"], "rows": len(frame),
            "first": frame["date"].iloc[0], "last": frame["date"].iloc[-1], "parts": parts,
            "all_columns": parts != ["yahoo"], "dropped": dropped,
        })
    return rows


def write_provenance(rows: list[dict]) -> None:
    lines = [
        "# Offline price snapshot — provenance",
        "",
        "Composed by `tools/compose_snapshot.py` from the project's `shared/data/prices/` (see its `SOURCES.md`)."
        " Real public data only: nothing generated, interpolated or filled in. Prices are unadjusted.",
        "",
        "Sources (repository, path @ commit):",
        "",
    ]
    lines += [f"* `{SETS[k]}` — {REPOS[k]}" for k in SETS]
    lines += [
        "",
        "`yahoo` rows: `capacity` is Yahoo's volume (not TWSE's share count, ≈ 63–98 % of it);"
        " `turnover`, `change`, `transaction` are empty. Never mixed with TWSE rows inside one company.",
        "",
        "| code | name | market | rows | first | last | sets | all nine columns |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['code']} | {r['name']} | {r['market']} | {r['rows']} | {r['first']} | {r['last']} | "
        f"{' + '.join(SETS[p] for p in r['parts'])} | {'yes' if r['all_columns'] else 'no'} |"
        for r in rows
    ]
    dropped = [r for r in rows if r["dropped"]]
    if dropped:
        lines += [
            "",
            "## Rows left out",
            "",
            "Rows with a price off the tick grid are not what the exchange printed, so they are not shipped:",
            "",
        ]
        lines += [f"* {r['code']} {r['name']}: {', '.join(r['dropped'])}" for r in dropped]
        lines += [
            "",
            "3540's seven rows are Yahoo's prices scaled by one constant: divided by 0.97333 every open, high, low and close"
            " lands on the 0.05 tick grid (within the source's 2-decimal rounding), and the 2026-06-09 close 26.47 is"
            " 27.20 ÷ 1.0274, consistent with the ex-rights reference price of a stock dividend on 2026-06-10. Yahoo adjusts"
            " prices before a stock dividend; the source repository had apparently refreshed only its last days after the"
            " ex-rights date, so only these rows were scaled (a −2.7 % step on 2026-06-01 that never traded, and the"
            " ex-rights drop of 2026-06-10 hidden)."
            " The same rows are in `market_ohlcv_2024-12_2026-08/3540.csv` (same source and commit). Recovering the"
            " exchange's figures would mean computing prices the source does not hold, so the rows are dropped instead:"
            " the series has no rows from 2026-06-01 to 2026-06-09.",
        ]
    (OUT / "PROVENANCE.md").write_text("\n".join(lines) + "\n", "utf-8")


if __name__ == "__main__":
    shared_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    result = compose(shared_dir)
    write_provenance(result)
    print(f"wrote {len(result)} companies to {OUT}")
