"""The data directory: twstock-format CSVs, atomic writes and the bundled offline snapshot."""

import pandas as pd
import pytest

from stockllm import store
from stockllm.errors import StockLLMError
from stockllm.universe import default_universe


def test_snapshot_covers_all_41_companies_with_valid_rows(snapshot_data_dir):
    for company in default_universe():
        frame = store.read_prices(snapshot_data_dir, company.code)
        assert list(frame.columns) == store.PRICE_COLUMNS
        assert frame["date"].is_monotonic_increasing and frame["date"].is_unique
        traded = frame.dropna(subset=["open", "high", "low", "close"])
        assert (traded["low"] <= traded[["open", "close"]].min(axis=1)).all()
        assert (traded["high"] >= traded[["open", "close"]].max(axis=1)).all()


def test_snapshot_keeps_missing_columns_empty_never_invented(snapshot_data_dir):
    tpex = store.read_prices(snapshot_data_dir, "5371")  # Yahoo OHLCV only
    assert tpex["turnover"].isna().all() and tpex["transaction"].isna().all() and tpex["change"].isna().all()
    twse = store.read_prices(snapshot_data_dir, "2330")  # TWSE's own figures, all nine fields
    assert twse["turnover"].notna().all() and twse["transaction"].notna().all()


def test_snapshot_has_the_writeups_9921_example_days(snapshot_data_dir):
    frame = store.read_prices(snapshot_data_dir, "9921").set_index("date")
    assert frame.loc["2025-01-03", ["open", "high", "low", "close", "capacity"]].tolist() == [141.5, 143.5, 138.0, 139.0, 1447003]
    assert frame.loc["2025-01-06", ["open", "high", "low", "close", "capacity"]].tolist() == [139.5, 144.5, 137.5, 143.0, 1208884]


def test_price_csv_round_trips_and_accepts_the_writeups_index_column(tmp_path):
    path = tmp_path / "prices" / "9921.csv"
    path.parent.mkdir(parents=True)
    path.write_text(",date,capacity,turnover,open,high,low,close,change,transaction\n0,2025-01-02,53594040,1940182343,37.45,37.55,35.5,35.5,-2.15,28766\n", "utf-8")
    frame = store.read_prices(tmp_path, "9921")
    assert frame.iloc[0].tolist() == ["2025-01-02", 53594040, 1940182343, 37.45, 37.55, 35.5, 35.5, -2.15, 28766]
    store.write_prices(tmp_path, "9921", frame)
    assert path.read_text("utf-8").splitlines()[1] == "2025-01-02,53594040,1940182343,37.45,37.55,35.5,35.5,-2.15,28766"


def test_atomic_write_leaves_no_temp_files_and_replaces_content(tmp_path):
    target = tmp_path / "x.json"
    store.atomic_write_json(target, {"a": "台積電"})
    store.atomic_write_json(target, {"a": 2})
    assert target.read_text("utf-8").strip().replace("\n", "").replace(" ", "") == '{"a":2}'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert target.stat().st_mode & 0o044, "written files are readable by others like any file open() creates"


def test_missing_prices_explain_how_to_get_them(tmp_path):
    with pytest.raises(StockLLMError, match="stockllm fetch --offline"):
        store.read_prices(tmp_path, "2330")


def test_unreadable_csv_is_a_one_line_error(tmp_path):
    path = tmp_path / "prices" / "2330.csv"
    path.parent.mkdir(parents=True)
    path.write_text("price\n1\n", "utf-8")
    with pytest.raises(StockLLMError, match="no 'date' column"):
        store.read_prices(tmp_path, "2330")
