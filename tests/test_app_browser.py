"""The web app in a real headless Chromium, used as a person would: type, click, wait, read the page.

Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) is driven by Playwright from PyPI
through ``executable_path`` — no browser is downloaded. The app runs on a free 127.0.0.1 port with the bundled
data and a tiny fine-tuned LLM. Screenshots of each step are saved under ``$STOCKLLM_TEST_ARTIFACTS``
(default ``outputs/test-artifacts``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("STOCKLLM_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "outputs" / "test-artifacts"))
WAIT_MS = 60_000

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing at /usr/bin/chromium "
                                                               "(apt-get install chromium; .ci/run installs it)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on a free loopback port over the snapshot, with a tiny LLM fine-tuned for one step (5:5 windows)."""
    from tiny_llm import build_tiny_llm

    from stockllm import store
    from stockllm.app.ui import Background, build_app
    from stockllm.config import TrainConfig
    from stockllm.dataset import DatasetSpec
    from stockllm.llm.training import fine_tune

    root = tmp_path_factory.mktemp("app")
    store.install_snapshot(root / "data")
    config = TrainConfig(model_name=str(build_tiny_llm(root / "base")), output_dir=str(root / "train"), model_dir=str(root / "model"),
                         max_steps=1, batch_size=1, gradient_accumulation_steps=1, report_to="none", max_seq_length=1024)
    fine_tune(root / "data", ["2330"], DatasetSpec(windows=[(5, 5)], max_seq_length=1024), config, eval_limit=1, say=lambda _: None)
    ui = build_app(root / "data", root / "model", outputs=root / "outputs", exchange_db=root / "exchange.sqlite")
    with Background(ui) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#forecast-run")
    return page


@pytest.fixture
def page(browser, app_url):
    page = open_page(browser, app_url)
    yield page
    page.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(page, box: str, typed: str, option: str) -> None:
    """Type into a dropdown and click the option the filter leaves (as a person picks from the list)."""
    field = page.locator(f"{box} input").first
    field.click()
    field.fill("")
    field.press_sequentially(typed, delay=30)
    page.locator("[role=option]", has_text=option).first.click()


def remove_model(page, name: str) -> None:
    page.locator("#forecast-models .token", has_text=name).locator(".token-remove").click()


def fill(page, box: str, text: str) -> None:
    page.locator(f"{box} textarea, {box} input").first.fill(text)


def status(page, box: str) -> str:
    return page.locator(box).inner_text()


def wait_for_status(page, box: str, text: str) -> None:
    page.wait_for_function("([box, text]) => document.querySelector(box).innerText.includes(text)", arg=[box, text])


def test_tsmc_is_picked_by_name_and_drift_is_drawn_over_what_happened(page):
    pick(page, "#forecast-company", "TSMC", "2330")
    assert page.locator("#forecast-company input").input_value().startswith("2330 · 台積電")
    remove_model(page, "random_walk")
    fill(page, "#forecast-as-of", "2026-04-20")
    page.click("#forecast-run")
    wait_for_status(page, "#forecast-status", "1 of 1 model(s) forecast 5 day(s)")
    page.wait_for_selector("#forecast-chart .legendtext")
    assert page.locator("#forecast-table .virtual-row").count() == 5
    assert page.locator("#forecast-chart .legendtext").all_text_contents() == ["history", "actual", "drift forecast"]
    assert "forecast from 2026-04-20; 5 real day(s) after it drawn" in page.locator("#forecast-summary").inner_text()
    assert page.locator("#forecast-chart .xtick text").first.text_content().startswith("2026-")
    shot(page, "forecast-drift-vs-actual")


def test_a_drift_forecast_answers_within_10_s_while_an_llm_runs_and_the_llm_is_cancelled(browser, app_url):
    llm_page, other = open_page(browser, app_url), open_page(browser, app_url)
    try:
        remove_model(llm_page, "random_walk")
        remove_model(llm_page, "drift")
        pick(llm_page, "#forecast-models", "LLM", "LLM")
        llm_page.click("#forecast-run")
        wait_for_status(llm_page, "#forecast-status", "⏳")

        remove_model(other, "random_walk")
        began = time.monotonic()
        other.click("#forecast-run")
        wait_for_status(other, "#forecast-status", "1 of 1 model(s) forecast 5 day(s)")
        assert time.monotonic() - began < 10
        assert "⏳" in status(llm_page, "#forecast-status"), "the LLM is still working"
        shot(llm_page, "forecast-llm-running")

        llm_page.click("#forecast-cancel")
        wait_for_status(llm_page, "#forecast-status", "Cancelled after")
        shot(llm_page, "forecast-llm-cancelled")
    finally:
        llm_page.close()
        other.close()


def test_a_bad_date_an_unknown_company_and_zero_cash_each_show_a_message_that_stays(page):
    fill(page, "#forecast-as-of", "2026-13-45")
    page.click("#forecast-run")
    wait_for_status(page, "#forecast-status", "is not a date")
    time.sleep(3)
    assert "as-of date '2026-13-45' is not a date; write it as YYYY-MM-DD" in status(page, "#forecast-status")
    assert page.locator("#forecast-status .error").count() == 1

    fill(page, "#forecast-as-of", "2026-04-20")
    field = page.locator("#forecast-company input")
    field.fill("Nvidia")
    field.press("Enter")  # a typed name that is not in the list stays in the box
    page.click("#forecast-run")
    wait_for_status(page, "#forecast-status", "no company with stored prices matches 'Nvidia'")
    shot(page, "forecast-unknown-company")

    page.get_by_role("tab", name="Backtest").click()
    page.locator("#backtest-cash input").fill("0")
    page.click("#backtest-run")
    wait_for_status(page, "#backtest-status", "starting cash must be more than NT$0")
    time.sleep(3)
    assert "starting cash must be more than NT$0" in status(page, "#backtest-status")
    shot(page, "backtest-zero-cash")
