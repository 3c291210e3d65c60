"""The web app's functions, without a browser: what each tab computes and says (tests/test_app_browser.py drives the page)."""

from __future__ import annotations

import json
import threading
import time
import warnings
from datetime import date

import httpx
import pandas as pd
import pytest

from stockllm import store
from stockllm.app import backtest_tab, data_tab, evaluation_tab, forecast_tab, trading_tab
from stockllm.app.common import AppContext, find_company, parse_day, positive_cash
from stockllm.app.figures import TAIWAN_DOWN, TAIWAN_UP, forecast_figure
from stockllm.app.jobs import Cancelled, CancelToken, JobBoard, Progress, WorkerForecaster, run_job
from stockllm.app.ui import Background, build_app
from stockllm.errors import StockLLMError
from stockllm.forecasters.base import Forecast
from stockllm.trading.ledger import Ledger


@pytest.fixture
def ctx(snapshot_data_dir, tmp_path) -> AppContext:
    return AppContext(snapshot_data_dir, None, tmp_path / "outputs", exchange_db=tmp_path / "exchange.sqlite")


# --- finding companies and checking inputs ---------------------------------------------------------------

@pytest.mark.parametrize("typed", ["2330", "台積電", "TSMC", "tsmc", "Taiwan Semi", "2330 · 台積電 · TSMC"])
def test_a_company_is_found_by_code_chinese_or_english_name(ctx, typed):
    assert find_company(typed, ctx.companies()).code == "2330"


def test_an_unknown_or_ambiguous_company_is_refused_with_what_would_match(ctx):
    with pytest.raises(StockLLMError, match="no company with stored prices matches 'Nvidia'"):
        find_company("Nvidia", ctx.companies())
    with pytest.raises(StockLLMError, match="matches several companies"):
        find_company("Tech", ctx.companies())


def test_an_empty_data_dir_gets_the_offline_snapshot(tmp_path):
    assert len(AppContext(tmp_path / "data").companies()) == 41


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "", "2026/05/04"])
def test_a_bad_date_says_how_to_write_it(text):
    with pytest.raises(StockLLMError, match="is not a date; write it as YYYY-MM-DD"):
        parse_day(text, "as-of date")


@pytest.mark.parametrize("cash", [0, -5, None])
def test_cash_must_be_positive(cash):
    with pytest.raises(StockLLMError, match="starting cash must be more than NT\\$0"):
        positive_cash(cash)


# --- forecast tab ----------------------------------------------------------------------------------------

def test_models_forecast_from_a_past_day_beside_what_actually_happened(ctx):
    result = forecast_tab.compare(ctx, find_company("TSMC", ctx.companies()), ["random_walk", "drift"], date(2026, 5, 4), 5, 40,
                                  CancelToken(), Progress())
    assert result.as_of == "2026-05-04" and len(result.history) == 40 and len(result.actual) == 5
    table = forecast_tab.forecast_table(result)
    assert len(table) == 10 and set(table["model"]) == {"random_walk", "drift"}
    assert table["actual close"].notna().all() and table["error"].str.endswith("%").all()
    assert "Data as of 2026-05-12" in forecast_tab.summary(result)


def test_a_non_trading_as_of_day_forecasts_from_the_trading_day_before_and_says_so(ctx):
    result = forecast_tab.compare(ctx, find_company("2330", ctx.companies()), ["drift"], date(2026, 5, 3), 3, 20, CancelToken(), Progress())
    assert result.as_of == "2026-04-30" and "2026-05-03 was not a trading day" in result.notes[0]


def test_the_model_list_offers_a_trained_llm_by_folder_name_not_server_path(tmp_path):
    assert [value for _, value in forecast_tab.model_choices(tmp_path)] == list(forecast_tab.BUILDERS)
    (tmp_path / "training_info.json").write_text(json.dumps({"dataset": {"windows": ["5:5", "20:5"]}}))
    label, value = forecast_tab.model_choices(tmp_path)[-1]
    assert value == "llm" and label == f"LLM {tmp_path.name} (trained for 5 days ahead)" and str(tmp_path.parent) not in label
    assert forecast_tab.spec_of("llm", tmp_path) == f"llm:{tmp_path}" and forecast_tab.spec_of("drift", tmp_path) == "drift"


def test_the_chart_has_taiwan_colours_years_on_the_axis_actuals_and_a_labelled_80_percent_band(ctx):
    prices = store.read_prices(ctx.data_dir, "2330")
    history, actual = prices.iloc[-15:-5], prices.iloc[-5:]
    frame = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "capacity": 10, "close_lo": 1.0, "close_hi": 2.0},
                         index=pd.Index(list(actual["date"]), name="date"))
    figure = forecast_figure("2330", history, actual, [Forecast(frame, "arima")])
    names = [trace.name for trace in figure.data]
    assert names == ["history", "actual", "arima 80%", "arima forecast"]
    candles = figure.data[0]
    assert candles.increasing.line.color == TAIWAN_UP and candles.decreasing.line.color == TAIWAN_DOWN
    assert list(candles.x)[0].startswith("20") and len(list(candles.x)[0]) == 10  # YYYY-MM-DD categories


# --- long jobs ---------------------------------------------------------------------------------------------

def test_a_worker_keeps_its_model_loaded_between_calls_and_cancel_ends_it():
    history = pd.DataFrame({"date": ["2026-05-07", "2026-05-08"], "open": [1.0, 1.0], "high": [1.0, 1.0], "low": [1.0, 1.0],
                            "close": [1.0, 2.0], "capacity": [1, 1]})
    worker = WorkerForecaster("random_walk")
    try:
        assert worker.predict(history, 2, code="2330").frame["close"].tolist() == [2.0, 2.0]
        pid = worker._process.pid
        worker.predict(history, 1, code="2330")
        assert worker._process.pid == pid  # same process: the model stayed loaded
        worker.stop()
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()  # while the fresh worker is still starting up
        began = time.monotonic()
        with pytest.raises(Cancelled):
            worker.predict(history, 1, code="2330", cancel=cancel)
        assert time.monotonic() - began < 5 and worker._process is None
    finally:
        worker.stop()


def test_a_job_keeps_a_worker_from_fit_to_last_forecast_so_no_other_job_refits_it_between():
    worker, first, second = WorkerForecaster("arima"), CancelToken(), CancelToken()
    worker.lease(first)
    worker.lease(first)  # the same job again: already its own
    waited: list[str] = []
    other = threading.Thread(target=worker.lease, args=(second, waited.append))
    other.start()
    other.join(timeout=0.5)
    assert other.is_alive() and waited == ["arima is busy with another job; waiting"]
    first.finish()
    other.join(timeout=5)
    assert not other.is_alive()
    with pytest.raises(Cancelled):  # a job cancelled while it waits for the worker stops waiting
        worker.lease(_cancelled())
    second.finish()


def _cancelled() -> CancelToken:
    token = CancelToken()
    token.cancel()
    return token


def test_a_job_reports_progress_then_its_result_and_every_error_in_words():
    token = CancelToken()

    def work(progress):
        progress.say("day 1/2")
        time.sleep(0.3)
        return 42

    events = list(run_job(work, token, every=0.1))
    assert events[-1] == ("done", 42) and any(kind == "progress" and "day 1/2" in text for kind, text in events[:-1])
    assert list(run_job(lambda _: 1 / 0, CancelToken()))[-1] == ("error", "unexpected ZeroDivisionError: division by zero — "
                                                                          "this is a bug in stockllm; the server log has the details")


def test_cancel_reaches_the_running_job_of_the_same_session_and_tab_only():
    board = JobBoard()
    mine, other = board.start("a", "forecast"), board.start("b", "forecast")
    assert board.cancel("a", "forecast") and mine.cancelled and not other.cancelled
    assert not board.cancel("a", "forecast")


# --- backtest tab ---------------------------------------------------------------------------------------

def test_the_backtest_shows_percent_and_nt_dollars_trades_and_downloads(ctx, tmp_path):
    view = backtest_tab.backtest(ctx, ["2330", "2317"], "drift", "2026-01-05", "2026-05-12", 10_000_000, tmp_path / "bt",
                                 CancelToken(), Progress())
    row = view.metrics.iloc[1]
    assert row["strategy"] == "buy and hold" and row["total return"].endswith("%") and row["final equity (NT$)"].replace(",", "").isdigit()
    assert row["annualised return"].endswith("%")  # over four months: annualised figures are shown
    assert list(view.companies["company"].str[:4]) == ["2330", "2317"]
    assert {p.name for p in view.files} == {"metrics.csv", "trades.csv", "equity.png", "backtest.json"} and all(p.exists() for p in view.files)


def test_a_short_backtest_shows_no_annualised_figures(ctx, tmp_path):
    view = backtest_tab.backtest(ctx, ["2317"], "drift", "2026-05-04", "2026-05-12", 1_000_000, tmp_path, CancelToken(), Progress())
    assert view.metrics["annualised return"].str.contains("< a month").all() and view.metrics["Sharpe"].str.contains("< a month").all()


def test_the_readme_example_says_why_2330_was_not_bought(ctx, tmp_path):
    view = backtest_tab.backtest(ctx, ["2330", "2317"], "drift", "2026-01-05", "2026-05-12", 1_000_000, tmp_path, CancelToken(), Progress())
    assert "drift made no trades" in view.explanation
    assert "Buy and hold holds no 2330: one lot" in view.explanation and "NT$500,000 (cash ÷ 2 companies)" in view.explanation


def test_a_backtest_period_must_be_two_dates_in_order():
    with pytest.raises(StockLLMError, match="end date '2026-02-30' is not a date"):
        backtest_tab.checked_period("2026-01-05", "2026-02-30")
    with pytest.raises(StockLLMError, match="must be before the end date"):
        backtest_tab.checked_period("2026-05-12", "2026-01-05")


# --- evaluation tab ---------------------------------------------------------------------------------------

def test_a_small_evaluation_writes_a_report_the_tab_finds_and_shows(ctx):
    folder = evaluation_tab.small_evaluation(ctx, ["2330"], ["drift"], "1:1", CancelToken(), Progress())
    assert evaluation_tab.find_reports(ctx.outputs) == [folder]
    summary, found, plots = evaluation_tab.report_view(folder)
    assert "Window 1:1" in summary
    window = dict(found)["windows › 1:1"]
    assert list(window.iloc[:, 0]) == ["random_walk", "drift"] and "mase" in window.columns and "dm p_value" in window.columns
    assert plots and all(p.endswith(".png") for p in plots)


def test_every_table_of_a_report_is_shown_even_ones_added_later():
    metrics = {"windows": {"5:5": {"drift": {"mase": 1.01, "dm": {"p_value": 0.2}, "failure_reasons": {"the model said no": 3}}}},
               "ic": {"5:5": {"drift": {"ic": 0.03, "t": 1.2}}},
               "top_k": [{"k": 5, "hit_rate": 0.55}], "verdict": ["x"]}
    found = dict(evaluation_tab.tables(metrics))
    assert set(found) == {"windows › 5:5", "ic › 5:5", "top_k"}
    assert list(found["windows › 5:5"].columns) == ["", "mase", "dm p_value"]  # a sentence is not a column


# --- trading tab ---------------------------------------------------------------------------------------------

def test_trading_on_the_bundled_exchange_shows_the_account_and_refusals_in_words(ctx):
    Ledger(ctx.exchange_db, ctx.data_dir, "2026-05-04").add_user("alice", "secret", 3_000_000)
    try:
        api = trading_tab.client(ctx, "alice", "secret")
        view = trading_tab.account_view(api)
        assert "cash NT$3,000,000" in view.summary and "market date 2026-05-04" in view.summary and view.holdings.empty
        ok, words = trading_tab.outcome_text(api.buy("2317", 1, 250))
        assert ok and words.startswith("Accepted: reserved buy 1 lots of 2317")
        ok, words = trading_tab.outcome_text(api.buy("2330", 2, 2400))
        assert not ok and words.startswith("Refused by the exchange: insufficient cash")
        view = trading_tab.account_view(api)
        assert list(view.pending["code"]) == ["2317"] and view.filled.empty
        with pytest.raises(StockLLMError, match="enter the exchange account"):
            trading_tab.client(ctx, " ", "secret")
    finally:
        trading_tab.stop_exchange(ctx)


def test_the_strategy_suggests_an_order_for_the_next_trading_day(ctx):
    ideas = trading_tab.suggestions(ctx, ["2317", "2330"], ctx.pool.get("drift"), {}, 1_000_000)
    assert list(ideas["company"]) == ["2317", "2330"] and set(ideas["suggestion"]) <= {"buy", "sell", "hold"}
    assert ideas["as of"].tolist() == ["2026-05-12", "2026-05-12"]


def test_an_order_is_checked_and_described_before_it_is_confirmed(ctx):
    side, code, lots, price = trading_tab.checked_order("buy", "Foxconn", 2, 250.5, ctx.companies())
    assert (side, code, lots) == ("buy", "2317", 2)
    assert trading_tab.order_text(side, code, lots, price).startswith("BUY 2 lot(s) (= 2,000 shares) of 2317 at a limit of NT$250.5, reserving NT$")
    with pytest.raises(StockLLMError, match="whole number of at least 1"):
        trading_tab.checked_order("sell", "2317", 0, 250, ctx.companies())


# --- data tab -------------------------------------------------------------------------------------------------

def test_the_data_tab_lists_the_last_stored_day_and_the_news_budget(ctx):
    table = data_tab.stored_table(ctx)
    assert len(table) == 41 and table.set_index("code").loc["2330", "last stored day"] == "2026-05-12"
    assert data_tab.news_budget(ctx).startswith("News budget: 100 of 100 newsapi requests left today")


def test_a_refresh_fetches_through_the_throttled_client_company_by_company(ctx, monkeypatch):
    from replay_server import ReplayServer

    with ReplayServer() as server:
        monkeypatch.setenv("STOCKLLM_TWSE_URL", server.url)
        monkeypatch.setenv("STOCKLLM_THROTTLE", "100/1")
        progress = Progress()
        text = data_tab.refresh_prices(ctx, [find_company("2330", ctx.companies())], date(2026, 8, 1), CancelToken(), progress)
    assert text.startswith("prices: 1 of 1 companies written") and progress.text.startswith("company 1/1: 2330")
    assert store.read_prices(ctx.data_dir, "2330")["date"].iloc[-1].startswith("2026-09")


# --- the page -------------------------------------------------------------------------------------------------

def test_the_ui_serves_its_page_on_loopback(snapshot_data_dir, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ui = build_app(snapshot_data_dir, None, outputs=tmp_path / "outputs", exchange_db=tmp_path / "x.sqlite")
    assert not [w for w in caught if "arguments for function" in str(w.message)], "every handler gets the inputs it declares"
    with Background(ui) as url:
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "stockllm" in page.text and url.startswith("http://127.0.0.1:")


def test_forecasts_and_backtests_leave_no_temp_folder(ctx, tmp_path, monkeypatch):
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    forecast_tab.compare(ctx, find_company("2330", ctx.companies()), ["drift"], date(2026, 5, 4), 5, 40, CancelToken(), Progress())
    backtest_tab.backtest(ctx, ["2317"], "drift", "2026-04-01", "2026-05-12", 1_000_000, ctx.outputs / "bt", CancelToken(), Progress())
    assert list(private.iterdir()) == []
