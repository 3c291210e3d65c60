"""Compare one model's forecasts in two evaluation reports: the same model dir on two backends, say.

    .venv/bin/python tools/compare_reports.py outputs/backends/transformers outputs/backends/llama.cpp

Reads each report's ``forecasts.csv`` (``stockllm evaluate --report``), keeps the rows of the LLM (the model
whose name starts with ``llm:``, or ``--model``), joins them on window, company, origin and step, and prints
for the points both reports forecast: how many forecasts are identical (every price field equal), the close's
MAE of each and its ratio to the random walk's (the origin's close) on those same points, and the relative
MAE (MASE) each report's ``metrics.json`` gives over all its points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

KEY = ["window", "code", "origin", "step"]
PRICES = ["f_open", "f_high", "f_low", "f_close"]


def model_rows(report: Path, model: str | None) -> tuple[str, pd.DataFrame]:
    points = pd.read_csv(report / "forecasts.csv", dtype={"code": str})
    names = sorted(set(points["model"]))
    name = model or next((n for n in names if n.startswith("llm")), None)
    if name not in names:
        sys.exit(f"error: {report / 'forecasts.csv'} has no model {name or 'llm:…'}; it has {', '.join(names)} (pick one with --model)")
    return name, points[points["model"] == name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs=2, type=Path, help="two report folders of stockllm evaluate")
    parser.add_argument("--model", help="the model's name in both reports (default: the one starting with llm:)")
    args = parser.parse_args()
    (name_a, a), (name_b, b) = (model_rows(report, args.model) for report in args.reports)
    both = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    if both.empty:
        sys.exit("error: the two reports share no forecast point (same window, company, origin and step)")
    equal = pd.concat([both[f"{c}_a"] == both[f"{c}_b"] for c in PRICES], axis=1).all(axis=1)
    forecasts = equal.groupby([both["window"], both["code"], both["origin"]])
    same = int(forecasts.all().sum())
    walk = (both["origin_close_a"] - both["close_a"]).abs().mean()
    print(f"{len(both)} points of {forecasts.ngroups} forecasts in both reports; identical forecasts: {same} of {forecasts.ngroups} "
          f"({same / forecasts.ngroups:.1%})")
    for label, report, name in (("a", args.reports[0], name_a), ("b", args.reports[1], name_b)):
        mae = (both[f"f_close_{label}"] - both[f"close_{label}"]).abs().mean()
        metrics = json.loads((report / "metrics.json").read_text())["windows"]
        mase = {window: round(scores[name]["mase"], 4) for window, scores in metrics.items() if name in scores}
        print(f"  {report}: close MAE {mae:.4f} on these points = {mae / walk:.4f} × the random walk's; "
              f"relative MAE over all its points (metrics.json): {mase}")


if __name__ == "__main__":
    main()
