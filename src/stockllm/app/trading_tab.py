"""Trading tab: the account on the exchange, today's suggestion of the strategy, and orders placed after a confirmation.

Everything goes through :class:`~stockllm.trading.client.StockAPI`, the course's ``stock_api`` client (order log,
no resubmission of lost orders). Without an exchange URL the app serves the bundled local exchange itself
(:mod:`stockllm.trading.server`, over ``exchange.sqlite``), so the tab works offline; accounts are made with
``stockllm exchange add-user``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from .. import store
from ..errors import StockLLMError
from ..trading import rules
from ..trading.client import OrderResult, StockAPI
from ..trading.strategy import StrategyConfig, decide
from .common import AppContext, find_company, label
from .forecast_tab import DEFAULT_COMPANY, model_choices, spec_of
from .jobs import describe
from .page import error_box, info_box, notice, tab_job

_exchange_lock = threading.Lock()
ORDER_COLUMNS = ["id", "side", "code", "lots", "limit_price", "placed_on", "fill_on", "status", "fill_price", "value", "fee", "tax", "reason"]
SUGGESTION_COLUMNS = ["company", "as of", "last close", "forecast close", "expected move", "suggestion", "lots", "limit", "why"]


def exchange_url(ctx: AppContext) -> str:
    """The exchange's API base URL: the configured one, else the bundled exchange, started on first use."""
    if ctx.exchange_url:
        return ctx.exchange_url
    with _exchange_lock:
        if ctx.local_exchange is None:
            from ..trading.ledger import Ledger
            from ..trading.server import Background

            server = Background(Ledger(ctx.exchange_db, ctx.data_dir))
            server.url = server.__enter__()
            ctx.local_exchange = server
        return ctx.local_exchange.url


def stop_exchange(ctx: AppContext) -> None:
    """Stop the bundled exchange if this app started it."""
    with _exchange_lock:
        if ctx.local_exchange is not None:
            ctx.local_exchange.__exit__(None, None, None)
            ctx.local_exchange = None


def client(ctx: AppContext, account: str, password: str) -> StockAPI:
    """A ``stock_api`` client for the account typed in the page (an empty password means ``STOCK_API_PASSWORD``)."""
    account = (account or "").strip()
    if not account:
        raise StockLLMError("enter the exchange account (made with `stockllm exchange add-user --account NAME`)")
    if not password and not os.environ.get("STOCK_API_PASSWORD"):
        raise StockLLMError("enter the account's password (or start the app with STOCK_API_PASSWORD set)")
    return StockAPI(exchange_url(ctx), account, password or None, order_log=ctx.outputs / "orders.jsonl")


@dataclass
class AccountView:
    summary: str
    holdings: pd.DataFrame
    pending: pd.DataFrame
    filled: pd.DataFrame
    held: dict[str, int]
    cash: float


def account_view(api: StockAPI) -> AccountView:
    """Cash, holdings and orders as the exchange reports them (the course's server lists holdings only)."""
    reply = api.user_stocks()
    holdings = pd.DataFrame([{"code": r["stock_code_id"], "lots": r["shares"], "average cost": r["beginning_price"],
                              "lots being sold": r.get("reserved_shares", 0)} for r in reply.get("data", [])],
                            columns=["code", "lots", "average cost", "lots being sold"])
    orders = pd.DataFrame(reply.get("orders", []), columns=ORDER_COLUMNS)
    cash = float(reply.get("available_cash", reply.get("cash", 0)) or 0)
    parts = [f"**{api.account}** on {api.base_url}"]
    if "cash" in reply:
        parts.append(f"cash NT${reply['cash']:,.0f}, available NT${cash:,.0f} (the rest is reserved by pending buys)")
    if "market_date" in reply:
        parts.append(f"market date {reply['market_date']}: orders placed now fill at the next trading day's open")
    if "orders" not in reply:
        parts.append("this exchange lists filled holdings only, not orders")
    held = {str(r["stock_code_id"]): int(r["shares"]) for r in reply.get("data", [])}
    return AccountView("; ".join(parts) + ".", holdings, orders[orders["status"] == "pending"], orders[orders["status"] != "pending"], held, cash)


def suggestions(ctx: AppContext, codes: list[str], model, held: dict[str, int], cash: float) -> pd.DataFrame:
    """The strategy's decision for the next trading day for each company, from its latest stored prices."""
    prices = {code: store.read_prices(ctx.data_dir, code).dropna(subset=["close"]).reset_index(drop=True) for code in codes}
    model.fit(prices)
    config = StrategyConfig()
    closes = {code: float(frame["close"].iloc[-1]) for code, frame in prices.items()}
    equity = cash + sum(lots * rules.LOT * closes.get(code, 0.0) for code, lots in held.items())
    available, rows = cash, []
    for code, history in prices.items():
        forecast = model.predict(history, config.horizon, code=code)
        lots = held.get(code, 0)
        d = decide(code, history, forecast, lots, available, equity, lots * rules.LOT * closes[code], len(prices), config)
        if d.action == "buy":
            available -= rules.buy_reservation(d.limit, d.lots)
        rows.append({"company": code, "as of": d.as_of, "last close": d.last_close, "forecast close": round(d.forecast_close, 2),
                     "expected move": f"{d.expected_return:+.2%}", "suggestion": d.action, "lots": d.lots,
                     "limit": "" if d.limit is None else str(d.limit), "why": d.reason})
    return pd.DataFrame(rows, columns=SUGGESTION_COLUMNS)


def order_text(side: str, code: str, lots: int, price: float) -> str:
    """What the confirmation asks: the order and, for a buy, the cash it reserves."""
    cost = f", reserving NT${rules.buy_reservation(rules.parse_price(price), lots):,} with the fee" if side == rules.BUY else ""
    return f"{side.upper()} {lots} lot(s) (= {lots * rules.LOT:,} shares) of {code} at a limit of NT${price:g}{cost}. Fills at the next open if the limit allows."


def outcome_text(result: OrderResult) -> tuple[bool, str]:
    """(accepted?, the exchange's answer in plain words)."""
    words = {"accepted": "Accepted", "rejected": "Refused by the exchange", "not_sent": "Not sent",
             "not_received": "The exchange did not receive it", "unknown": "Outcome unknown (not resent)"}
    return result.ok, f"{words.get(result.outcome, result.outcome)}: {result.status}"


def checked_order(side: str, text: str, lots: float | None, price: float | None, companies) -> tuple[str, str, int, float]:
    if side not in (rules.BUY, rules.SELL):
        raise StockLLMError("choose buy or sell")
    code = find_company(text, companies).code
    if lots is None or lots < 1 or int(lots) != lots:
        raise StockLLMError(f"lots must be a whole number of at least 1 (1 lot = 1,000 shares); got {lots}")
    if price is None or not price > 0:
        raise StockLLMError(f"the limit price must be more than NT$0; got {price}")
    return side, code, int(lots), float(price)


# --- the tab -------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    companies = ctx.companies()
    labels = [label(c) for c in companies]
    where = ctx.exchange_url or f"the bundled local exchange (database {ctx.exchange_db})"
    gr.Markdown(f"Exchange: {where}. The strategy buys when the forecast beats fee + tax and sells when it falls below minus that.")
    with gr.Row(equal_height=False):
        account = gr.Textbox(os.environ.get("STOCK_API_ACCOUNT", ""), label="account", elem_id="trading-account", min_width=160)
        password = gr.Textbox(type="password", label="password (empty: STOCK_API_PASSWORD of the server)", elem_id="trading-password", min_width=160)
        show = gr.Button("Show account", elem_id="trading-show", scale=0, min_width=140)
    status = gr.HTML(notice("Enter the account and press Show account."), elem_id="trading-status")
    summary = gr.Markdown(elem_id="trading-summary")
    holdings = gr.Dataframe(pd.DataFrame(columns=["code", "lots", "average cost", "lots being sold"]), label="holdings", interactive=False)
    pending = gr.Dataframe(pd.DataFrame(columns=ORDER_COLUMNS), label="pending orders", interactive=False, wrap=False)
    filled = gr.Dataframe(pd.DataFrame(columns=ORDER_COLUMNS), label="filled, expired and refused orders", interactive=False, wrap=False)
    with gr.Accordion("Strategy's suggestion for the next trading day", open=True):
        with gr.Row(equal_height=False):
            picks = gr.Dropdown(labels, value=[l for c, l in zip(companies, labels) if c.code in ("2330", "2317")], multiselect=True,
                                label="companies", elem_id="trading-companies", scale=3, min_width=240)
            model = gr.Dropdown(model_choices(ctx.model_dir), value="drift", label="model", elem_id="trading-model", min_width=160)
            suggest = gr.Button("Suggest", elem_id="trading-suggest", scale=0, min_width=120)
        ideas = gr.Dataframe(pd.DataFrame(columns=SUGGESTION_COLUMNS), label="suggestions", interactive=False, wrap=True, elem_id="trading-suggestions")
    with gr.Accordion("Place an order", open=True):
        with gr.Row(equal_height=False):
            side = gr.Radio([rules.BUY, rules.SELL], value=rules.BUY, label="side", elem_id="trading-side", min_width=120)
            first = next((c for c in companies if c.code == DEFAULT_COMPANY), companies[0])
            code = gr.Dropdown(labels, value=label(first), allow_custom_value=True, label="company", elem_id="trading-code", min_width=200)
            lots = gr.Number(1, precision=0, label="lots (1,000 shares each)", elem_id="trading-lots", min_width=120)
            price = gr.Number(float(store.read_prices(ctx.data_dir, first.code)["close"].iloc[-1]), label="limit price (NT$; last close shown)",
                              elem_id="trading-price", min_width=120)
        place = gr.Button("Place order…", variant="primary", elem_id="trading-place")
        with gr.Group(visible=False) as confirm_box:
            question = gr.Markdown(elem_id="trading-question")
            with gr.Row():
                confirm = gr.Button("Confirm and send", variant="stop", elem_id="trading-confirm")
                back = gr.Button("Back", elem_id="trading-back")
    order = gr.State(None)
    view = [summary, holdings, pending, filled]

    def on_show(name: str, secret: str):
        try:
            shown = account_view(client(ctx, name, secret))
        except Exception as exc:  # noqa: BLE001 — shown on the page

            return error_box(describe(exc)), *[gr.skip()] * len(view)
        return info_box("account read from the exchange"), shown.summary, shown.holdings, shown.pending, shown.filled

    def on_suggest(name: str, secret: str, selected: list[str], choice: str, request: gr.Request):
        try:
            codes = [find_company(s, companies).code for s in selected or []]
            if not codes:
                raise StockLLMError("pick at least one company")
        except StockLLMError as exc:
            yield error_box(str(exc)), gr.skip()
            return
        def work(token, progress):
            held, cash, note = {}, 1_000_000.0, "no account given: assuming no holdings and NT$1,000,000 cash"
            if (name or "").strip():
                shown = account_view(client(ctx, name, secret))
                held, cash, note = shown.held, shown.cash, f"sized for {name}'s holdings and NT${shown.cash:,.0f} available cash"
            model_ = ctx.pool.bound(spec_of(choice, ctx.model_dir), token, progress.say)
            return suggestions(ctx, codes, model_, held, cash), note

        yield from tab_job(ctx, request, "trading", work,
                           lambda result: (info_box(f"suggestions by {choice}, {result[1]}; nothing is sent without Place order"), result[0]), 1)

    def on_place(chosen_side: str, text: str, amount: float, limit: float):
        try:
            checked = checked_order(chosen_side, text, amount, limit, companies)
            words = order_text(*checked)
        except (StockLLMError, ValueError) as exc:
            return error_box(str(exc)), None, gr.update(visible=False), gr.skip()
        return notice("Check the order, then confirm."), checked, gr.update(visible=True), f"**Send this order?** {words}"

    def on_confirm(pending_order, name: str, secret: str):
        hide = gr.update(visible=False)
        if not pending_order:
            return error_box("no order to confirm; press Place order first"), None, hide, *[gr.skip()] * len(view)
        try:
            api = client(ctx, name, secret)
            side_, code_, lots_, price_ = pending_order
            ok, words = outcome_text((api.buy if side_ == rules.BUY else api.sell)(code_, lots_, price_))
            shown = account_view(api)
        except Exception as exc:  # noqa: BLE001 — shown on the page

            return error_box(describe(exc)), None, hide, *[gr.skip()] * len(view)
        return (info_box if ok else error_box)(words), None, hide, shown.summary, shown.holdings, shown.pending, shown.filled

    show.click(on_show, [account, password], [status, *view], show_progress="hidden")
    suggest.click(on_suggest, [account, password, picks, model], [status, ideas], concurrency_id="trading", concurrency_limit=4,
                  show_progress="hidden")
    place.click(on_place, [side, code, lots, price], [status, order, confirm_box, question], show_progress="hidden")
    confirm.click(on_confirm, [order, account, password], [status, order, confirm_box, *view], show_progress="hidden")
    back.click(lambda: (notice("Order not sent."), None, gr.update(visible=False)), None, [status, order, confirm_box], show_progress="hidden")
