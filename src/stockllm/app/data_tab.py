"""Data tab: what is stored per company, a price refresh that keeps the exchanges' rate limit, and the news budget.

The refresh is :func:`stockllm.sources.prices.fetch_prices` one company at a time (same throttled clients
throughout, so TWSE's 3 requests / 5 s holds across companies), which gives real progress and a cancel
between companies.
"""

from __future__ import annotations

import os
from datetime import date

import gradio as gr
import pandas as pd

from .. import store
from ..errors import StockLLMError
from ..sources.news import DAILY_LIMIT, RequestBudget
from ..universe import Company
from .common import AppContext, find_company, label
from .jobs import CancelToken, Progress
from .page import cancel_button, error_box, info_box, notice, tab_job

STORED_COLUMNS = ["code", "name", "English name", "market", "first day", "last stored day", "days", "last close", "news articles", "newest news"]


def stored_table(ctx: AppContext) -> pd.DataFrame:
    """One row per stored company: its price range, last close and stored news."""
    rows = []
    for company in ctx.companies():
        prices = store.read_prices(ctx.data_dir, company.code)
        news = store.read_news(ctx.data_dir, company.code) or {}
        articles = (news.get("news_zh") or []) + (news.get("news_en") or [])
        newest = max((a.get("publishedAt", "") for a in articles), default="")
        rows.append({"code": company.code, "name": company.name_zh, "English name": company.name_en, "market": company.market,
                     "first day": prices["date"].iloc[0], "last stored day": prices["date"].iloc[-1], "days": len(prices),
                     "last close": prices["close"].iloc[-1], "news articles": len(articles), "newest news": newest[:10]})
    return pd.DataFrame(rows, columns=STORED_COLUMNS)


def news_budget(ctx: AppContext) -> str:
    """How many of today's newsapi requests are left, and whether a key is set."""
    used = RequestBudget(ctx.data_dir / "cache" / "newsapi_requests.json").used()
    key = "set" if os.environ.get("NEWSAPI_KEY", "").strip() else "not set (news cannot be fetched)"
    return (f"News budget: {DAILY_LIMIT - used} of {DAILY_LIMIT} newsapi requests left today (UTC); each company costs 2. "
            f"NEWSAPI_KEY is {key}; fetch news with `stockllm fetch --news`.")


def refresh_prices(ctx: AppContext, companies: list[Company], since: date, token: CancelToken, progress: Progress) -> str:
    """Fetch ``since``'s month … today for each company, one at a time; returns what happened in one paragraph."""
    from ..sources.prices import default_clients, fetch_prices

    clients = default_clients()
    lines: list[str] = []
    for number, company in enumerate(companies, 1):
        token.check()
        progress.say(f"company {number}/{len(companies)}: {company.code} {company.name_zh} (at most 3 requests / 5 s)")
        report = fetch_prices(ctx.data_dir, [company], since.year, since.month, clients=clients, progress=False)
        if report.unreachable_reasons:
            raise StockLLMError("; ".join(f"{market} unreachable: {why}" for market, why in report.unreachable_reasons.items())
                                + f" — stopped after {number - 1} of {len(companies)} companies; the stored prices are unchanged")
        lines += report.summary_lines(ctx.data_dir, 1)
    return " ".join(lines)


def parse_month(text: str) -> date:
    try:
        return date.fromisoformat(f"{(text or '').strip()}-01")
    except ValueError:
        raise StockLLMError(f"from month {text!r} is not a month; write it as YYYY-MM, e.g. 2026-05") from None


# --- the tab -------------------------------------------------------------------------------------------------

def build(ctx: AppContext):
    """The tab's components and events; returns (function, outputs) to run when a page loads."""
    companies = ctx.companies()
    labels = [label(c) for c in companies]
    budget = gr.Markdown(elem_id="data-budget")
    table = gr.Dataframe(pd.DataFrame(columns=STORED_COLUMNS), label="stored data per company", interactive=False, wrap=False,
                         elem_id="data-table", max_height=480)
    with gr.Accordion("Refresh prices from TWSE / TPEx", open=False):
        with gr.Row(equal_height=False):
            picks = gr.Dropdown(labels, value=[l for c, l in zip(companies, labels) if c.code == "2330"], multiselect=True,
                                label="companies", elem_id="data-companies", scale=3, min_width=240)
            since = gr.Textbox(date.today().strftime("%Y-%m"), label="from month (YYYY-MM)", elem_id="data-since", min_width=120)
        with gr.Row():
            run = gr.Button("Refresh", variant="primary", elem_id="data-refresh")
            cancel = gr.Button("Cancel", variant="stop", elem_id="data-cancel")
        status = gr.HTML(notice("One request per company-month, at most 3 every 5 s; finished months come from the cache."),
                         elem_id="data-status")

    def load():
        return news_budget(ctx), stored_table(ctx)

    def on_refresh(selected: list[str], month: str, request: gr.Request):
        try:
            chosen = [find_company(s, companies) for s in selected or []]
            if not chosen:
                raise StockLLMError("pick at least one company to refresh")
            first = parse_month(month)
        except StockLLMError as exc:
            yield error_box(str(exc)), gr.skip(), gr.skip()
            return
        yield from tab_job(ctx, request, "data", lambda token, progress: refresh_prices(ctx, chosen, first, token, progress),
                           lambda text: (info_box(text or "nothing new"), *load()), 2)

    run.click(on_refresh, [picks, since], [status, budget, table], concurrency_id="data", concurrency_limit=1, show_progress="hidden")
    cancel_button(ctx, cancel, "data")
    return load, [budget, table]
