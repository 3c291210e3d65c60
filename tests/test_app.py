"""The web app's handlers give the same results as the library, and the UI builds and serves."""

import threading

import httpx
import pytest

from stockllm import app


def test_empty_data_dir_gets_the_offline_snapshot(tmp_path):
    table = app.companies_table(tmp_path / "data")
    assert len(table) == 41 and {"code", "name", "market", "last close"} <= set(table.columns)


def test_forecast_handler_returns_a_table_and_a_kline_png(snapshot_data_dir, tmp_path):
    table, chart = app.forecast_company(snapshot_data_dir, "2330", "random_walk", past=20, horizon=5, chart_dir=tmp_path)
    assert len(table) == 5 and list(table.columns[:5]) == ["date", "open", "high", "low", "close"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_handler_reports_strategy_and_buy_and_hold(snapshot_data_dir, tmp_path):
    metrics, chart = app.backtest_companies(snapshot_data_dir, ["2330", "2317"], "drift", "2026-03-02", "2026-04-30", out_dir=tmp_path)
    assert "drift" in metrics["strategy"] and "total_return" in metrics["buy_and_hold"]
    assert chart.exists()


def test_model_choices_offer_a_trained_model_dir_only_when_present(tmp_path):
    assert not any(c.startswith("llm:") for c in app.model_choices(tmp_path))
    (tmp_path / "training_info.json").write_text("{}")
    assert app.model_choices(tmp_path)[0] == f"llm:{tmp_path}"


def test_the_ui_serves_its_page_on_loopback(snapshot_data_dir):
    ui = app.build_app(snapshot_data_dir, model_dir=None)
    ui.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True)
    try:
        page = httpx.get(ui.local_url, timeout=30)
        assert page.status_code == 200 and "stockllm" in page.text
    finally:
        ui.close()
