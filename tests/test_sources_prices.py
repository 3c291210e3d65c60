"""TWSE/TPEx monthly prices against a real HTTP server on 127.0.0.1 replaying recorded replies.

The server (``replay_server``) serves the real samples for 2330 (2026-08, 2026-09), 6488 (TPEx, 2026-08)
and TWSE's real no-data reply; other TWSE months are generated from the bundled twstock-format snapshot
CSVs in the exact shape of the real sample (``replay_server.twse_reply_from_csv``), as SOURCES.md suggests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from replay_server import EXCHANGE, TPEX_PATH, TWSE_PATH, ReplayServer, load
from twstock.stock import TPEXFetcher, TWSEFetcher

from stockllm import store
from stockllm.cli import main as stockllm_main
from stockllm.errors import StockLLMError
from stockllm.sources.http import HttpClient, Throttle
from stockllm.sources.prices import TAIPEI, Month, cache_path, fetch_prices, months_between, taipei_now
from stockllm.universe import resolve_code

ROOT = Path(__file__).resolve().parents[1]
EVENING_0915 = datetime(2026, 9, 15, 20, 0, tzinfo=TAIPEI)  # a Tuesday after the day's rows are published


@pytest.fixture
def server():
    with ReplayServer() as replay:
        yield replay


def clients(url: str) -> dict[str, HttpClient]:
    """Exchange clients without throttle waits or backoff sleeps (those are tested in test_sources_http)."""
    return {m: HttpClient(m, url, Throttle(calls=1, period=0.0, jitter=0.0), sleep=lambda s: None) for m in ("TWSE", "TPEx")}


def fetch(server: ReplayServer, data_dir: Path, codes: list[str], year: int, month: int, now: datetime = EVENING_0915):
    return fetch_prices(data_dir, [resolve_code(c) for c in codes], year, month, now=now, clients=clients(server.url), progress=False)


def twstock_rows(fetcher, sample: str) -> pd.DataFrame:
    """What twstock's own fetcher makes of a recorded reply, as a normalised price table."""
    rows = [t._asdict() for t in fetcher.purify(load(EXCHANGE / sample))]
    return store.normalise_prices(pd.DataFrame(rows).drop(columns="note"))


def test_twse_months_are_read_exactly_as_twstock_reads_them(server, data_dir):
    fetch(server, data_dir, ["2330"], 2026, 8)
    stored = store.read_prices(data_dir, "2330")
    expected = pd.concat([twstock_rows(TWSEFetcher(), "twse_rwd_STOCK_DAY_2330_20260801.json"),
                          twstock_rows(TWSEFetcher(), "twse_rwd_STOCK_DAY_2330_20260901.json")], ignore_index=True)
    pd.testing.assert_frame_equal(stored, expected)
    assert stored.iloc[0].tolist() == ["2026-08-03", 35209944, 83673350698, 2390.0, 2395.0, 2365.0, 2370.0, -55.0, 174489]


def test_tpex_lots_and_thousands_of_twd_become_shares_and_twd_like_twstock(server, data_dir):
    fetch(server, data_dir, ["6488"], 2026, 8)
    stored = store.read_prices(data_dir, "6488")
    pd.testing.assert_frame_equal(stored, twstock_rows(TPEXFetcher(), "tpex_tradingStock_6488_20260801.json"))
    assert stored.iloc[0][["capacity", "turnover"]].tolist() == [15_388_000, 13_694_380_000]
    assert {h.params["date"] for h in server.hits if h.path == TPEX_PATH} == {"2026/08/01", "2026/09/01"}


def test_generated_months_round_trip_the_snapshot_including_a_halted_day(server, data_dir):
    fetch(server, data_dir, ["2317"], 2025, 7, now=datetime(2025, 8, 12, 20, 0, tzinfo=TAIPEI))
    stored = store.read_prices(data_dir, "2317")
    snapshot = store.read_price_csv(store.snapshot_dir() / "2317.csv")
    expected = snapshot[snapshot["date"].between("2025-07-01", "2025-08-31")].reset_index(drop=True)  # the replay knows all of August
    pd.testing.assert_frame_equal(stored, expected)
    halted = stored.set_index("date").loc["2025-07-30"]  # TWSE writes "--" for prices of a day without trades
    assert halted[["open", "high", "low", "close"]].isna().all() and halted["capacity"] == 0


def test_a_no_data_month_is_cached_as_an_empty_month_not_an_error(server, data_dir):
    report = fetch(server, data_dir, ["2330"], 2026, 6)  # 2026-06 and 07: the replay has no rows → TWSE's no-data reply
    entry = json.loads(cache_path(data_dir, "2330", Month(2026, 6)).read_text("utf-8"))
    assert entry["reply"] == load(EXCHANGE / "twse_rwd_STOCK_DAY_nodata.json")
    assert store.read_prices(data_dir, "2330")["date"].str[:7].unique().tolist() == ["2026-08", "2026-09"]
    assert report.requests == 4
    assert fetch(server, data_dir, ["2330"], 2026, 6).requests == 0  # empty months are not asked again


def test_a_company_without_any_rows_is_reported_and_not_written(server, data_dir):
    report = fetch(server, data_dir, ["2330"], 2026, 6, now=datetime(2026, 7, 20, 20, 0, tzinfo=TAIPEI))
    assert report.no_rows == ["2330"] and not store.prices_path(data_dir, "2330").exists()


def test_a_rerun_makes_zero_requests(server, data_dir):
    first = fetch(server, data_dir, ["2330", "6488"], 2026, 8)
    before = server.count()
    again = fetch(server, data_dir, ["2330", "6488"], 2026, 8, now=EVENING_0915 + timedelta(hours=3))
    assert first.requests == before == 4
    assert again.requests == 0 and server.count() == before
    assert set(again.written) == {"2330", "6488"}


def test_the_current_month_is_fetched_again_once_a_new_session_is_published(server, data_dir):
    fetch(server, data_dir, ["2330", "6488"], 2026, 8)
    server.hits.clear()
    next_morning = datetime(2026, 9, 16, 10, 0, tzinfo=TAIPEI)
    assert fetch(server, data_dir, ["2330", "6488"], 2026, 8, now=next_morning).requests == 0  # nothing new yet
    next_evening = datetime(2026, 9, 16, 20, 0, tzinfo=TAIPEI)
    assert fetch(server, data_dir, ["2330", "6488"], 2026, 8, now=next_evening).requests == 2
    assert {(h.path, h.params.get("date")) for h in server.hits} == {(TWSE_PATH, "20260901"), (TPEX_PATH, "2026/09/01")}


def test_a_month_cached_before_it_ended_is_fetched_again(server, data_dir):
    fetch(server, data_dir, ["2330"], 2026, 9, now=datetime(2026, 9, 4, 20, 0, tzinfo=TAIPEI))
    report = fetch(server, data_dir, ["2330"], 2026, 9, now=datetime(2026, 10, 2, 20, 0, tzinfo=TAIPEI))
    assert report.requests == 2  # September (cached mid-month) and October


def test_older_stored_rows_are_kept_only_when_they_are_complete_exchange_rows(server, data_dir):
    (first, _, _), = store.install_snapshot(data_dir, ["2330"]).values()  # TWSE's figures, all nine fields, to 2026-05
    store.write_prices(data_dir, "6488", pd.DataFrame({"date": ["2026-07-30", "2026-07-31"], "open": [900.0, 901.0],
                                                        "high": [910.0, 911.0], "low": [890.0, 891.0], "close": [905.0, 906.0],
                                                        "capacity": [1234567, 2345678]}))  # Yahoo-like: no turnover
    fetch(server, data_dir, ["2330", "6488"], 2026, 8)
    tsmc = store.read_prices(data_dir, "2330")
    assert tsmc["date"].iloc[0] == first and tsmc["date"].iloc[-1] == "2026-09-04"
    assert store.read_prices(data_dir, "6488")["date"].iloc[0] == "2026-08-03"


def test_an_unexpected_twse_answer_is_a_one_line_error_and_is_not_cached(server, data_dir):
    server.inject((200, {"stat": "查詢日期小於99年1月4日，請重新查詢!", "total": 0}))
    with pytest.raises(StockLLMError, match="TWSE refused the request for 2026-08: 查詢日期小於99年1月4日"):
        fetch(server, data_dir, ["2330"], 2026, 8)
    assert not cache_path(data_dir, "2330", Month(2026, 8)).exists()


def test_a_start_month_that_is_impossible_or_in_the_future_is_refused(data_dir):
    with pytest.raises(StockLLMError, match="after the current month"):
        fetch_prices(data_dir, [resolve_code("2330")], 2026, 10, now=EVENING_0915)
    with pytest.raises(StockLLMError, match="use 1-12"):
        fetch_prices(data_dir, [resolve_code("2330")], 2026, 13, now=EVENING_0915)


def test_the_progress_bar_counts_months_and_shows_the_throttle_wait(server, data_dir, capsys):
    slow = {m: HttpClient(m, server.url, Throttle(calls=1, period=0.05, jitter=0.0)) for m in ("TWSE", "TPEx")}
    fetch_prices(data_dir, [resolve_code("2330")], 2026, 8, now=EVENING_0915, clients=slow, progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "throttle wait" in err


def test_an_unreachable_exchange_falls_back_to_the_snapshot_and_says_so(data_dir, monkeypatch, capsys):
    from test_sources_http import closed_port_url

    monkeypatch.setenv("STOCKLLM_TWSE_URL", closed_port_url())
    assert stockllm_main(["fetch", "--data-dir", str(data_dir), "--codes", "2330", "2317", "--year", "2026", "--month", "5"]) == 0
    err = capsys.readouterr().err
    assert "TWSE unreachable" in err and "offline snapshot (TWSE unreachable" in err
    for code in ("2330", "2317"):
        assert store.prices_path(data_dir, code).read_bytes() == (store.snapshot_dir() / f"{code}.csv").read_bytes()


def test_a_fetch_killed_mid_way_and_rerun_ends_with_the_same_files_as_an_uninterrupted_run(tmp_path, monkeypatch):
    codes, start = ["2317", "2330", "6488"], Month(2026, 5)
    total = len(codes) * len(months_between(start, Month.of(taipei_now().date())))
    args = ["fetch", "--codes", *codes, "--year", str(start.year), "--month", str(start.month)]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    with ReplayServer() as server:
        env = {"STOCKLLM_TWSE_URL": server.url, "STOCKLLM_TPEX_URL": server.url, "STOCKLLM_THROTTLE": "100/1"}
        server.block_at = 5  # freeze the 5th request, then kill the client while it waits for the answer
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from stockllm.cli import main; sys.exit(main())",
                                 *args, "--data-dir", str(killed)], env={**os.environ, **env}, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert server.blocked.wait(60), "the fetch never reached its 5th request"
        finally:
            proc.kill()
            proc.wait()
        server.block_at = None
        server.release.set()
        assert len(list((killed / "cache" / "prices").rglob("*.json"))) == 4 and not (killed / "prices").exists()

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        server.hits.clear()
        assert stockllm_main([*args, "--data-dir", str(killed)]) == 0
        assert server.count() == total - 4  # the four finished months came from the cache
        server.hits.clear()
        assert stockllm_main([*args, "--data-dir", str(clean)]) == 0
        assert server.count() == total

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "prices").iterdir())}

    assert files(killed) == files(clean) and set(files(clean)) == {f"prices/{c}.csv" for c in codes}
    assert sorted(p.relative_to(killed) for p in killed.rglob("*.json")) == sorted(p.relative_to(clean) for p in clean.rglob("*.json"))
    assert not list(killed.rglob("*.tmp"))
