"""tools/compare_reports.py: one model's forecasts in two evaluation reports, compared on their common points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def report(folder: Path, closes: list[float], model: str = "llm:outputs/m") -> Path:
    """A report folder whose model forecast ``closes`` from three origins (close 100, actual 102, step 1)."""
    folder.mkdir()
    rows = [{"model": model, "window": "1:1", "code": "2330", "origin": f"2026-01-0{i + 5}", "step": 1,
             "target_date": f"2026-01-0{i + 6}", "origin_close": 100.0, "f_open": 100.0, "f_high": 104.0,
             "f_low": 99.0, "f_close": close, "close": 102.0} for i, close in enumerate(closes)]
    pd.DataFrame(rows).to_csv(folder / "forecasts.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"windows": {"1:1": {model: {"mase": 0.5}}}}))
    return folder


def compare(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "compare_reports.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_identical_forecasts_and_each_reports_error_against_the_random_walk_on_common_points(tmp_path):
    a = report(tmp_path / "a", [101.0, 103.0, 102.0])
    b = report(tmp_path / "b", [101.0, 103.0, 100.0])
    done = compare(a, b)
    assert done.returncode == 0, done.stderr
    assert "3 points of 3 forecasts in both reports; identical forecasts: 2 of 3 (66.7%)" in done.stdout
    # random walk error 2 at every point; a's close errors 1, 1, 0 and b's 1, 1, 2
    assert "close MAE 0.6667 on these points = 0.3333 × the random walk's" in done.stdout
    assert "close MAE 1.3333 on these points = 0.6667 × the random walk's" in done.stdout


def test_a_report_without_the_model_is_one_line_naming_what_it_has(tmp_path):
    done = compare(report(tmp_path / "a", [101.0]), report(tmp_path / "b", [101.0], model="drift"))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("has no model llm:…; it has drift (pick one with --model)")
