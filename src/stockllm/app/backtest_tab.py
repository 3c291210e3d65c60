"""Backtest tab: a model's trading over a past period with Taiwan's fees, tax and lots, beside buy-and-hold.

The simulation is :mod:`stockllm.trading.backtest`'s; this module turns its result into what a person reads:
percentages and NT$, the trades, a per-company breakdown, why nothing was traded when nothing was, and no
annualised figures for periods too short to annualise honestly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import store
from ..errors import StockLLMError
from ..trading import rules
from ..trading.backtest import BacktestResult, buy_and_hold, run_backtest, write_report
from ..trading.strategy import StrategyConfig
from .common import AppContext, find_company, label, parse_day, positive_cash, session_of
from .figures import equity_figure
from .forecast_tab import model_choices, spec_of
from .jobs import CancelToken, Progress
from .page import cancel_button, error_box, info_box, notice, tab_job

MIN_DAYS_TO_ANNUALISE = 21
"""About a trading month: below it an annualised return or Sharpe ratio is noise blown up, so none is shown."""

METRIC_COLUMNS = ["strategy", "final equity (NT$)", "total return", "annualised return", "Sharpe", "max drawdown",
                  "trades", "win rate", "fees (NT$)", "tax (NT$)"]
TRADE_COLUMNS = ["decided on", "filled on", "code", "side", "lots", "price", "value (NT$)", "fee (NT$)", "tax (NT$)", "realised P&L (NT$)"]


@dataclass
class BacktestView:
    """A finished backtest, ready to show: tables, the no-trade explanation, the equity curves and the files."""

    metrics: pd.DataFrame
    trades: pd.DataFrame
    companies: pd.DataFrame
    explanation: str
    curves: dict[str, pd.Series]
    files: list[Path]


def metrics_row(name: str, m: dict) -> dict:
    """One strategy's metrics in % and NT$; annualised figures only for periods of a month or more."""
    short = m["days"] < MIN_DAYS_TO_ANNUALISE
    under = f"— ({m['days']} days < a month)"
    return {
        "strategy": name, "final equity (NT$)": f"{m['final_equity']:,.0f}", "total return": f"{m['total_return']:+.2%}",
        "annualised return": under if short else f"{m['annualised_return']:+.2%}",
        "Sharpe": under if short else f"{m['sharpe']:.2f}", "max drawdown": f"{m['max_drawdown']:.2%}", "trades": m["trades"],
        "win rate": "—" if m["win_rate"] is None else f"{m['win_rate']:.0%}", "fees (NT$)": f"{m['fees_paid']:,}", "tax (NT$)": f"{m['tax_paid']:,}",
    }


def trades_table(result: BacktestResult) -> pd.DataFrame:
    rows = [{"decided on": f.decided_on, "filled on": f.day, "code": f.code, "side": f.side, "lots": f.lots, "price": f.price,
             "value (NT$)": f.value, "fee (NT$)": f.fee, "tax (NT$)": f.tax, "realised P&L (NT$)": f.pnl} for f in result.fills]
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)


def company_breakdown(result: BacktestResult, names: dict[str, str]) -> pd.DataFrame:
    """Per company: orders, lots, fees, tax and the P&L realised by sells and by the final valuation."""
    rows = []
    for code, name in names.items():
        fills = [f for f in result.fills if f.code == code]
        closing = [f for f in result.closing if f.code == code]
        decisions = Counter(d.action for d in result.decisions if d.code == code)
        rows.append({"company": name, "buy signals": decisions["buy"], "sell signals": decisions["sell"], "holds": decisions["hold"],
                     "lots bought": sum(f.lots for f in fills if f.side == rules.BUY), "lots sold": sum(f.lots for f in fills if f.side == rules.SELL),
                     "fees + tax (NT$)": f"{sum(f.fee + f.tax for f in fills + closing):,}",
                     "P&L incl. final valuation (NT$)": f"{sum(f.pnl or 0 for f in fills + closing):+,}"})
    return pd.DataFrame(rows)


def why_no_trades(result: BacktestResult, benchmark: BacktestResult, prices: dict[str, pd.DataFrame], cash: int,
                  config: StrategyConfig) -> str:
    """Plain words for what was not traded: which rule stopped the strategy (and buy-and-hold), with the numbers."""
    budget = config.weight(len(prices)) * cash
    share = f"its budget of NT${budget:,.0f} (cash ÷ {len(prices)} companies)"
    lines, short_of_cash = [], False
    if not result.fills:
        unaffordable = {d.code: d for d in result.decisions if d.action == "hold" and "no whole lot" in d.reason}
        lines.append(f"{result.model} made no trades.")
        lines += [f"{code}: it wanted to buy, but one lot (1,000 shares ≈ NT${rules.LOT * d.last_close:,.0f}) costs more than {share}."
                  for code, d in unaffordable.items()]
        short_of_cash = bool(unaffordable)
        if not unaffordable:
            threshold = max((d.threshold for d in result.decisions), default=0.0)
            lines.append(f"Every forecast move stayed within the round-trip cost threshold (about ±{threshold:.2%}: fee twice "
                         "plus tax), so holding was cheaper than trading.")
    bought = {f.code for f in benchmark.fills}
    for code in [c for c in prices if c not in bought]:
        close = float(prices[code]["close"].iloc[-1])
        lines.append(f"Buy and hold holds no {code}: one lot (≈ NT${rules.LOT * close:,.0f}) costs more than {share}.")
        short_of_cash = True
    if short_of_cash:
        lines.append("Raise the starting cash or pick fewer companies to let every company be bought.")
    return " ".join(lines)


def backtest(ctx: AppContext, codes: list[str], choice: str, start: str, end: str, cash: int, out_dir: Path,
             token: CancelToken, progress: Progress) -> BacktestView:
    """Run the backtest of ``choice`` and buy-and-hold, write the report and downloads into ``out_dir``."""
    config = StrategyConfig()
    prices = {code: store.read_prices(ctx.data_dir, code) for code in codes}
    days = sorted({d for frame in prices.values() for d in frame["date"] if start <= d <= end})
    steps = max(len(days) - 1, 1) * len(codes)
    say = progress.say

    def on_predict(calls: int) -> None:
        say(f"{choice}: day {min(calls // len(codes) + 1, len(days))}/{len(days)} ({calls}/{steps} forecasts)")

    model = ctx.pool.bound(spec_of(choice, ctx.model_dir), token, say, on_predict)
    result = run_backtest(prices, model, start, end, cash, config)
    result.model = choice
    say("buy-and-hold and the report")
    benchmark, gross = buy_and_hold(prices, start, end, cash, config)
    settings = {"model": choice, "codes": codes, "start": start, "end": end, "cash": cash}
    report = write_report([result], benchmark, gross, out_dir, settings)
    metrics = pd.DataFrame([metrics_row(choice, report["models"][choice]), metrics_row("buy and hold", report["buy_and_hold"])],
                           columns=METRIC_COLUMNS)
    trades = trades_table(result)
    store.atomic_write_text(out_dir / "trades.csv", trades.to_csv(index=False))
    store.atomic_write_text(out_dir / "metrics.csv", metrics.to_csv(index=False))
    names = {code: label(find_company(code, ctx.companies())) for code in codes}
    return BacktestView(metrics, trades, company_breakdown(result, names), why_no_trades(result, benchmark, prices, cash, config),
                        {choice: result.equity, "buy and hold": benchmark.equity},
                        [out_dir / "metrics.csv", out_dir / "trades.csv", out_dir / "equity.png", out_dir / "backtest.json"])


def checked_period(start: str, end: str) -> tuple[str, str]:
    first, last = parse_day(start, "start date"), parse_day(end, "end date")
    if first >= last:
        raise StockLLMError(f"the start date {first} must be before the end date {last}")
    return first.isoformat(), last.isoformat()


# --- the tab -------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    companies = ctx.companies()
    labels = [label(c) for c in companies]
    defaults = [l for c, l in zip(companies, labels) if c.code in ("2330", "2317")] or labels[:2]
    with gr.Row(equal_height=False):
        picks = gr.Dropdown(labels, value=defaults, multiselect=True, label="companies", elem_id="backtest-companies", scale=3, min_width=240)
        model = gr.Dropdown(model_choices(ctx.model_dir), value="drift", label="model", elem_id="backtest-model", min_width=160)
    with gr.Row(equal_height=False):
        start = gr.Textbox("2026-01-05", label="start (YYYY-MM-DD)", elem_id="backtest-start", min_width=140)
        end = gr.Textbox("2026-05-12", label="end (YYYY-MM-DD)", elem_id="backtest-end", min_width=140)
        cash = gr.Number(5_000_000, label="starting cash (NT$)", elem_id="backtest-cash", min_width=140)
    with gr.Row():
        run = gr.Button("Backtest", variant="primary", elem_id="backtest-run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="backtest-cancel")
    status = gr.HTML(notice("Orders fill at the next open; fee 0.1425% (min NT$20) each way, tax 0.3% on sells, whole lots of 1,000 shares."),
                     elem_id="backtest-status")
    explanation = gr.Markdown(elem_id="backtest-why")
    metrics = gr.Dataframe(pd.DataFrame(columns=METRIC_COLUMNS), label="metrics", interactive=False, elem_id="backtest-metrics")
    chart = gr.Plot(label="equity", show_label=False, elem_id="backtest-chart")
    breakdown = gr.Dataframe(label="per company", interactive=False, elem_id="backtest-companies-table")
    trades = gr.Dataframe(pd.DataFrame(columns=TRADE_COLUMNS), label="trades", interactive=False, elem_id="backtest-trades", max_height=360)
    files = gr.File(label="downloads: metrics.csv, trades.csv, equity.png, backtest.json", file_count="multiple", elem_id="backtest-files")
    outputs = [status, explanation, metrics, chart, breakdown, trades, files]

    def on_backtest(selected: list[str], choice: str, first: str, last: str, amount: float, request: gr.Request):
        skip = [gr.skip()] * (len(outputs) - 1)
        try:
            if not selected:
                raise StockLLMError("pick at least one company to backtest")
            codes = [find_company(s, companies).code for s in selected]
            period, money = checked_period(first, last), positive_cash(amount)
        except StockLLMError as exc:
            yield error_box(str(exc)), *skip
            return
        out_dir = ctx.outputs / "app" / "backtest" / session_of(request)[:12]

        def done(view: BacktestView) -> tuple:
            return (info_box(f"backtest of {choice} on {', '.join(codes)} from {period[0]} to {period[1]} done; files in {out_dir}"),
                    view.explanation, view.metrics, equity_figure(view.curves), view.companies, view.trades, [str(p) for p in view.files])

        yield from tab_job(ctx, request, "backtest",
                           lambda token, progress: backtest(ctx, codes, choice, *period, money, out_dir, token, progress), done, len(skip))

    run.click(on_backtest, [picks, model, start, end, cash], outputs, concurrency_id="backtest", concurrency_limit=4, show_progress="hidden")
    cancel_button(ctx, cancel, "backtest")
