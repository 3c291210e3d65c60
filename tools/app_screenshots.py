"""Regenerate the web app's screenshots in docs/app/: every tab at desktop width and at 390 px (a phone).

    .venv/bin/python tools/app_screenshots.py [--out docs/app] [--model-dir outputs/model] [--dark]

Runs the app on a free 127.0.0.1 port over a scratch copy of the bundled snapshot (removed afterwards), fills
each tab as a user would (a forecast from a past day with an interval model, a small evaluation, a backtest, a
local-exchange account with one order, the data table) and photographs it in Debian's headless chromium
(``apt-get install chromium``), driven by Playwright without any browser download.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
WIDTHS = {"desktop": 1280, "390": 390}
WAIT_MS = 300_000


def wait_for(page, box: str, text: str) -> None:
    page.wait_for_function("([box, text]) => document.querySelector(box).innerText.includes(text)", arg=[box, text], timeout=WAIT_MS)


def fill_tabs(page) -> None:
    """Run one action per tab so every screenshot shows results, not empty forms."""
    page.locator("#forecast-models input").click()
    page.locator("[role=option]", has_text="arima").first.click()
    page.locator("#forecast-as-of textarea, #forecast-as-of input").first.fill("2026-04-20")
    page.click("#forecast-run")
    wait_for(page, "#forecast-status", "model(s) forecast")

    page.get_by_role("tab", name="Evaluation").click()
    page.click("#evaluation-run")
    wait_for(page, "#evaluation-status", "evaluation written")

    page.get_by_role("tab", name="Backtest").click()
    page.click("#backtest-run")
    wait_for(page, "#backtest-status", "done")

    page.get_by_role("tab", name="Trading").click()
    page.locator("#trading-account textarea, #trading-account input").first.fill("demo")
    page.locator("#trading-password textarea, #trading-password input").first.fill("demo-password")
    page.click("#trading-show")
    wait_for(page, "#trading-status", "account read")
    page.click("#trading-suggest")
    wait_for(page, "#trading-status", "suggestions by")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/app", help="folder for the PNGs (default: docs/app)")
    parser.add_argument("--model-dir", default=None, help="a fine-tuned model dir to offer as the LLM (default: none)")
    parser.add_argument("--dark", action="store_true", help="dark mode (Gradio's ?__theme=dark); files end in -dark")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing; apt-get install chromium", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    from stockllm import store
    from stockllm.app.ui import Background, build_app
    from stockllm.trading.ledger import Ledger

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stockllm-screenshots-") as scratch:
        root = Path(scratch)
        store.install_snapshot(root / "data")
        ledger = Ledger(root / "exchange.sqlite", root / "data", "2026-05-11")
        ledger.add_user("demo", "demo-password", 5_000_000)
        ledger.place_order("buy", "demo", "demo-password", "2317", "2", "260")
        ledger.advance(days=1)
        ledger.place_order("buy", "demo", "demo-password", "2454", "1", "3900")
        ledger.close()
        ui = build_app(root / "data", args.model_dir, outputs=root / "outputs", exchange_db=root / "exchange.sqlite")
        with Background(ui) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            suffix = "-dark" if args.dark else ""
            for name, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page.set_default_timeout(WAIT_MS)
                page.goto(url + ("?__theme=dark" if args.dark else ""))
                page.wait_for_selector("#forecast-run")
                fill_tabs(page)
                for tab in ("Forecast", "Evaluation", "Backtest", "Trading", "Data"):
                    page.get_by_role("tab", name=tab).click()
                    page.wait_for_timeout(1500)  # let Plotly lay out at this width
                    path = out / f"{tab.lower()}-{name}{suffix}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path)
                page.close()
            browser.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
