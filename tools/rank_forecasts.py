"""IC / Rank IC and top-k portfolio tables of a finished evaluation, from its ``forecasts.csv``.

``stockllm evaluate`` writes every forecast point to ``REPORT/forecasts.csv``; this reads it back with the
data dir's prices and writes :func:`stockllm.ranking.write_ranking_report`'s ``ranking.json``, ``ranking.md``
and ``topk.png`` beside it — for a run made before the evaluation report included them, or to try other
``--k`` / ``--n-drop`` without forecasting again. ``--end`` keeps the forecasts made up to that day: on the
whole-market set the TWSE files end on 2026-06-23 and the TPEx ones run to 2026-08-20, so later cross-sections
would hold only TPEx names and a portfolio could not sell its TWSE ones.

Usage::

    python tools/rank_forecasts.py outputs/market_evaluation --data-dir data/market --k 50 --n-drop 5 --end 2026-06-22
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from stockllm import ranking, store
from stockllm.errors import StockLLMError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="evaluation report folder holding forecasts.csv")
    parser.add_argument("--data-dir", type=Path, required=True, help="the data dir the evaluation read")
    parser.add_argument("--k", type=int, default=10, help="names held (default: 10)")
    parser.add_argument("--n-drop", type=int, default=2, help="most names replaced a day (default: 2)")
    parser.add_argument("--cash", type=int, default=100_000_000, help="starting cash in NT$ (default: 100,000,000)")
    parser.add_argument("--end", default=None, help="last forecast origin to use, YYYY-MM-DD (default: all)")
    args = parser.parse_args()
    try:
        points = pd.read_csv(args.report / "forecasts.csv", dtype={"code": str, "origin": str, "target_date": str, "window": str})
        if args.end:
            points = points[points["origin"] <= args.end]
        prices = {code: store.read_prices(args.data_dir, code) for code in sorted(points["code"].unique())}
        paths = ranking.write_ranking_report(points, prices, args.report, k=args.k, n_drop=args.n_drop, cash=args.cash)
    except (StockLLMError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
