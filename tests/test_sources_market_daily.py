"""Whole-market daily prices (TWSE MI_INDEX ALLBUT0999, TPEx dailyQuotes) against the real 127.0.0.1 replay server.

The server replays the real 2023-01-30 reports of both markets; other days get the exchanges' real no-data
replies. ``fixtures/exchange/stock_day_20230130.csv`` holds the per-company ``STOCK_DAY`` figures of that day
as twstock fetched them (shared/data: 2330 with all nine fields, 18 more TWSE companies with volume and OHLC).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from replay_server import DAILY_QUOTES_PATH, EXCHANGE, MI_INDEX_PATH, ReplayServer
from test_sources_prices import clients, server  # noqa: F401  (server: the replay server fixture)

from stockllm import store
from stockllm.cli import main as stockllm_main
from stockllm.errors import StockLLMError
from stockllm.sources.market_daily import cache_path, fetch_market
from stockllm.sources.prices import TAIPEI
from stockllm.universe import listed_companies, resolve_code

SAMPLE_DAY = date(2023, 1, 30)
NEXT_MORNING = datetime(2023, 1, 31, 9, 0, tzinfo=TAIPEI)


def fetch(server: ReplayServer, data_dir: Path, start: date = SAMPLE_DAY, end: date = SAMPLE_DAY, codes=("2330", "3324"), **options):
    """Fetch ``start``…``end``, writing the files of ``codes`` only (None: the whole market, ~1,700 files)."""
    companies = None if codes is None else [resolve_code(c) for c in codes]
    return fetch_market(data_dir, start, end, now=NEXT_MORNING, clients=clients(server.url), progress=False, companies=companies, **options)


@pytest.fixture(scope="module")
def whole_market(tmp_path_factory):
    """A data dir after fetching both markets' 2023-01-30 reports for every listed company, and the report."""
    data_dir = tmp_path_factory.mktemp("market") / "data"
    with ReplayServer() as replay:
        return data_dir, fetch(replay, data_dir, codes=None)


def test_the_split_rows_equal_the_per_company_stock_day_figures_of_the_sample_day(whole_market):
    data_dir, _ = whole_market
    stock_day = pd.read_csv(EXCHANGE / "stock_day_20230130.csv", dtype={"code": str, "date": str})
    assert len(stock_day) == 18
    for expected in stock_day.itertuples(index=False):
        stored = store.read_prices(data_dir, expected.code).set_index("date").loc["2023-01-30"]
        for column in store.PRICE_COLUMNS[1:]:
            if pd.notna(getattr(expected, column)):
                assert stored[column] == getattr(expected, column), (expected.code, column)
    tsmc = store.read_prices(data_dir, "2330")
    assert tsmc.iloc[0].tolist() == ["2023-01-30", 148413161, 80057158264, 542.0, 543.0, 534.0, 543.0, 40.0, 153125]


def test_every_listed_common_stock_of_both_reports_gets_its_own_file_and_nothing_else(whole_market):
    data_dir, report = whole_market
    stored = set(store.stored_codes(data_dir))
    listed = {c.code for c in listed_companies()}
    assert stored <= listed and len(stored) == len(report.written) == 958 + 786  # the reports' common stocks
    assert "0050" not in stored and "00679B" not in stored  # ETFs and bonds of the reports are left out
    assert {resolve_code(c).market for c in ("2330", "3324")} == {"TWSE", "TPEx"} and {"2330", "3324"} <= stored


def test_tpex_quotes_keep_shares_and_twd_and_an_ex_dividend_change_stays_empty(whole_market):
    data_dir, _ = whole_market
    assert store.read_prices(data_dir, "3324").iloc[0].tolist() == ["2023-01-30", 954774, 145268604, 153.0, 154.0, 151.0, 151.0, 1.5, 940]
    halted = store.read_prices(data_dir, "2724").iloc[0]  # "---": no trade that day
    assert halted[["open", "high", "low", "close", "change"]].isna().all() and halted["capacity"] == 0
    ex_dividend = store.read_prices(data_dir, "6613").iloc[0]  # TPEx writes 除息 instead of a change: no number to store
    assert ex_dividend[["close", "capacity"]].tolist() == [88.9, 142695] and pd.isna(ex_dividend["change"])


def test_one_request_per_market_per_trading_day_and_closed_days_are_reported(server, data_dir):
    report = fetch(server, data_dir, start=date(2023, 1, 27))  # Fri 27 (Lunar New Year, closed), weekend, Mon 30
    assert report.requests == server.count() == 4
    assert [h.params["date"] for h in server.hits if h.path == MI_INDEX_PATH] == ["20230127", "20230130"]
    assert [h.params["date"] for h in server.hits if h.path == DAILY_QUOTES_PATH] == ["2023/01/27", "2023/01/30"]
    assert {h.params["type"] for h in server.hits if h.path == MI_INDEX_PATH} == {"ALLBUT0999"}
    assert report.empty_days == {"TWSE": ["2023-01-27"], "TPEx": ["2023-01-27"]}
    assert store.read_prices(data_dir, "2330")["date"].tolist() == ["2023-01-30"]


def test_cached_days_are_not_asked_again_unless_refreshed(server, data_dir):
    fetch(server, data_dir)
    assert fetch(server, data_dir).requests == 0 and server.count() == 2
    assert fetch(server, data_dir, refresh=True).requests == 2 and server.count() == 4
    assert cache_path(data_dir, "TPEx", SAMPLE_DAY).exists()


def test_a_fetch_failing_half_way_resumes_from_the_days_it_cached(server, data_dir):
    server.inject(("delay", 0.0), *[503] * 5)  # TWSE 01-27 answers, then TWSE 01-30 fails every retry
    with pytest.raises(StockLLMError, match="failed 5 times"):
        fetch(server, data_dir, start=date(2023, 1, 27))
    assert server.count() == 6
    assert fetch(server, data_dir, start=date(2023, 1, 27)).requests == 3  # TWSE 01-30, TPEx 01-27 and 01-30


def test_complete_stored_rows_of_other_days_are_kept_and_yahoo_rows_are_not_mixed_in(server, snapshot_data_dir):
    before = store.read_prices(snapshot_data_dir, "2330")  # the snapshot's TWSE figures (all nine fields)
    fetch(server, snapshot_data_dir, codes=("2330", "3088"))
    after = store.read_prices(snapshot_data_dir, "2330")
    assert after["date"].iloc[0] == "2023-01-30" and len(after) == len(before) + 1
    pd.testing.assert_frame_equal(after.iloc[1:].reset_index(drop=True), before)
    assert store.read_prices(snapshot_data_dir, "3088")["date"].tolist() == ["2023-01-30"]  # its Yahoo rows are dropped


def test_the_command_line_fetches_the_whole_market_and_refuses_a_bad_date(server, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("STOCKLLM_TWSE_URL", server.url)
    monkeypatch.setenv("STOCKLLM_TPEX_URL", server.url)
    monkeypatch.setenv("STOCKLLM_THROTTLE", "100/0.01")
    args = ["fetch", "--data-dir", str(data_dir), "--market", "all", "--start", "2023-01-30", "--end", "2023-01-30"]
    assert stockllm_main([*args, "--codes", "2330", "3324"]) == 0
    assert store.stored_codes(data_dir) == ["2330", "3324"]
    assert "2 companies written" in capsys.readouterr().err and server.count() == 2
    assert stockllm_main(["fetch", "--data-dir", str(data_dir), "--market", "all", "--start", "2023-1-30"]) == 2
    assert capsys.readouterr().err.strip() == "error: --start '2023-1-30' is not a date; write YYYY-MM-DD, e.g. --start 2024-12-02"
