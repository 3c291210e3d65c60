"""Price data the project ships or imports holds only rows an exchange could print, and says where rows went."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from stockllm import store
from stockllm.universe import select_companies
from stockllm.validation import off_tick_dates

ROOT = Path(__file__).resolve().parents[1]


def test_every_bundled_snapshot_price_is_on_the_tick_grid():
    off = {code: off_tick_dates(store.read_price_csv(store.snapshot_dir() / f"{code}.csv")) for code in store.snapshot_codes()}
    assert {code: dates for code, dates in off.items() if dates} == {}


def test_the_snapshot_provenance_lists_the_rows_left_out():
    provenance = (store.snapshot_dir() / "PROVENANCE.md").read_text("utf-8")
    assert "3540 曜越: 2026-06-01, 2026-06-02, 2026-06-03, 2026-06-04, 2026-06-05, 2026-06-08, 2026-06-09" in provenance
    dates = store.read_price_csv(store.snapshot_dir() / "3540.csv")["date"]
    assert not dates.between("2026-06-01", "2026-06-09").any() and dates.iloc[-1] == "2026-06-22"


def test_off_tick_dates_finds_scaled_rows_and_ignores_halted_days():
    frame = pd.DataFrame({"date": ["2026-06-05", "2026-06-08", "2026-06-09"], "open": [27.25, float("nan"), 25.4],
                          "high": [27.25, float("nan"), 26.47], "low": [26.05, float("nan"), 25.4], "close": [26.3, float("nan"), 25.4]})
    assert off_tick_dates(frame) == ["2026-06-09"]  # 26.47 is between two 0.05 ticks


def test_a_folder_of_price_csvs_becomes_a_data_dir_that_codes_all_reads(tmp_path):
    source = tmp_path / "market"
    source.mkdir()
    header = "date,capacity,turnover,open,high,low,close,change,transaction\n"
    (source / "2330.csv").write_text(header + "2026-06-22,100,,1000.0,1010.0,995.0,1005.0,,\n2026-06-23,100,,1005.0,1010.0,1000.0,1010.0,,\n")
    (source / "3540.csv").write_text(header + "2026-06-09,371097,,25.4,26.47,25.4,26.47,,\n2026-06-10,704022,,26.0,26.05,25.5,25.5,,\n"
                                              "2026-06-11,20,,0.0,0.0,0.0,0.0,,\n")
    (source / "manifest.csv").write_text("code,name,market,type,rows,first,last\n2330,台積電,TWSE,股票,2,2026-06-22,2026-06-23\n")
    data_dir = tmp_path / "data"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "import_prices.py"), str(source), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, check=True)
    assert "wrote 2 companies" in done.stdout
    assert [c.code for c in select_companies(None, ["all"], data_dir)] == ["2330", "3540"]
    imported = store.read_prices(data_dir, "3540")
    assert imported["date"].tolist() == ["2026-06-09", "2026-06-10"]  # the all-zero row is no trading record
    assert imported["close"].tolist() == [26.47, 25.5]                  # off-grid rows are kept verbatim, and listed
    provenance = (data_dir / "PROVENANCE.md").read_text("utf-8")
    assert str(source) in provenance and "3540 2026-06-11 open 0.0 must be a positive finite price" in provenance and "| 3540 | 1 | 2026-06-09 | 2026-06-09 |" in provenance
