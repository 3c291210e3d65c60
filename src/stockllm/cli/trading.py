"""``stockllm exchange``, ``backtest`` and ``trade``: the local simulated exchange and forecast-driven trading."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import date
from pathlib import Path

from ..errors import StockLLMError
from .common import (add_backend_arg, add_codes_arg, add_data_args, cash, finite_float, fraction, info, iso_date, output_file, output_folder, port,
                     positive_cash, positive_int, print_json)

DEFAULT_DB = "exchange.sqlite"


def _exchange_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=output_file, default=DEFAULT_DB, help=f"SQLite file holding accounts, orders and the market date (default: {DEFAULT_DB})")
    add_data_args(parser, only=["data_dir"])


def _strategy_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("strategy")
    group.add_argument("--horizon", type=positive_int, default=1, help="trading days ahead whose forecast close drives decisions (default: 1)")
    group.add_argument("--margin", type=finite_float, default=0.0, help="expected return demanded beyond the round-trip fee+tax, as a fraction (default: 0)")
    group.add_argument("--max-position", type=fraction, default=None, help="largest fraction of equity in one stock (default: 1 / number of stocks)")
    group.add_argument("--cash", type=positive_cash, default=1_000_000, help="starting cash in NT$ (default: 1,000,000)")


def register(sub: argparse._SubParsersAction) -> None:
    exchange = sub.add_parser("exchange", help="the local simulated exchange compatible with the course's stock_api",
                              description="A local exchange speaking the course's stock_api (see docs/trading.md). "
                                          "Its market date moves only with `stockllm exchange advance`.")
    exsub = exchange.add_subparsers(dest="exchange_command", metavar="ACTION", required=True)

    serve = exsub.add_parser("serve", help="run the exchange HTTP server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=port, default=8081, help="TCP port (default: 8081, as the course server)")
    serve.add_argument("--access-log", action="store_true", help="log every request line (never bodies or passwords)")
    _exchange_args(serve)
    serve.set_defaults(func=_serve)

    init = exsub.add_parser("init", help="create the exchange database with its market date")
    init.add_argument("--date", type=iso_date, default=None, help="market date to start at, YYYY-MM-DD (default: the last stored trading day)")
    _exchange_args(init)
    init.set_defaults(func=_init)

    add_user = exsub.add_parser("add-user", help="create an exchange account (password from STOCK_API_PASSWORD or a prompt)")
    add_user.add_argument("--account", required=True, help="account name")
    add_user.add_argument("--cash", type=cash, default=1_000_000, help="starting cash in NT$ (default: 1,000,000)")
    _exchange_args(add_user)
    add_user.set_defaults(func=_add_user)

    advance = exsub.add_parser("advance", help="move the market date forward, filling due reservations at each day's open")
    target = advance.add_mutually_exclusive_group()
    target.add_argument("--to", type=iso_date, default=None, help="advance through every trading day up to this date, YYYY-MM-DD")
    target.add_argument("--days", type=positive_int, default=None, help="advance this many trading days (default: 1)")
    _exchange_args(advance)
    advance.set_defaults(func=_advance)

    status = exsub.add_parser("status", help="market date, order counts, balances and a consistency audit")
    _exchange_args(status)
    status.set_defaults(func=_status)

    backtest = sub.add_parser("backtest", help="backtest forecast-driven trading with Taiwan fees, tax, lots and limits")
    backtest.add_argument("--models", "--model", nargs="+", default=["random_walk"], metavar="SPEC",
                          help="forecaster specs, space or comma separated: random_walk, drift, arima, ets, lstm, cnn, bestfour, llm:DIR (default: random_walk)")
    add_codes_arg(backtest)
    add_data_args(backtest, only=["data_dir", "company_list_file"])
    backtest.add_argument("--start", type=iso_date, required=True, help="first decision day, YYYY-MM-DD")
    backtest.add_argument("--end", type=iso_date, required=True, help="last day (positions valued at its close), YYYY-MM-DD")
    backtest.add_argument("--report", type=output_folder, default="outputs/backtest", help="folder for backtest.json and equity.png (default: outputs/backtest)")
    _strategy_args(backtest)
    add_backend_arg(backtest)
    backtest.set_defaults(func=_backtest)

    trade = sub.add_parser("trade", help="compute today's decisions; with --send, place them on the exchange",
                           description="Dry run by default: prints each decision. --send places the orders through the "
                                       "stock_api client (STOCK_API_URL, STOCK_API_ACCOUNT, STOCK_API_PASSWORD).")
    trade.add_argument("--model", default="random_walk", metavar="SPEC", help="forecaster spec (default: random_walk)")
    add_codes_arg(trade)
    add_data_args(trade, only=["data_dir", "company_list_file"])
    mode = trade.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="send", action="store_false", default=False, help="only print the decisions (the default)")
    mode.add_argument("--send", dest="send", action="store_true", help="really send the orders to the exchange")
    trade.add_argument("--url", default=None, help="exchange base URL (default: $STOCK_API_URL, else the course server)")
    trade.add_argument("--order-log", type=output_file, default="outputs/orders.jsonl", help="JSONL log of every order sent (default: outputs/orders.jsonl)")
    _strategy_args(trade)
    add_backend_arg(trade)
    trade.set_defaults(func=_trade)


# --- exchange --------------------------------------------------------------------------------------------

def _ledger(args: argparse.Namespace, create: bool = False):
    """The exchange in ``--db``; only ``init`` creates one (the others would silently start a fresh exchange)."""
    from ..trading.ledger import Ledger

    if not create and not Path(args.db).exists():
        raise StockLLMError(f"no exchange database {args.db}; create it with `stockllm exchange init --db {args.db}` (or give --db)")
    return Ledger(Path(args.db), Path(args.data_dir), args.date if create else None)


def _serve(args: argparse.Namespace) -> int:
    from ..trading.server import serve

    serve(Path(args.db), Path(args.data_dir), args.host, args.port, args.access_log)
    return 0


def _init(args: argparse.Namespace) -> int:
    db = Path(args.db)
    if db.exists():
        raise StockLLMError(f"{args.db} already exists; use `stockllm exchange advance` to move its clock, or pick a new --db")
    try:
        ledger = _ledger(args, create=True)
    except StockLLMError:
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):  # nothing half-made stays behind
            path.unlink(missing_ok=True)
        raise
    info(f"created {args.db}: market date {ledger.market_date()}, orders placed now fill at the next trading day's open")
    return 0


def _password() -> str:
    password = os.environ.get("STOCK_API_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise StockLLMError("no password: set STOCK_API_PASSWORD or run add-user in a terminal to be prompted")
    first, second = getpass.getpass("password: "), getpass.getpass("repeat password: ")
    if first != second:
        raise StockLLMError("the two passwords differ; run add-user again")
    return first


def _add_user(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    ledger.add_user(args.account, _password(), args.cash)
    info(f"account {args.account} created with NT${args.cash:,} (market date {ledger.market_date()})")
    return 0


def _advance(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    events = ledger.advance(to=args.to, days=args.days)
    for e in events:
        detail = f"at {e.price}, cash {e.cash:+,}" if e.status == "filled" else e.reason
        print(f"{e.day} order {e.order_id} {e.account}: {e.side} {e.lots} lots {e.code} {e.status} {detail}")
    info(f"market date now {ledger.market_date()} ({len(events)} reservations settled)")
    return 0


def _status(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    summary = ledger.summary() | {"audit_problems": ledger.audit()}
    print_json(summary)
    return 1 if summary["audit_problems"] else 0


# --- backtest and trade --------------------------------------------------------------------------------

def _forecaster(spec: str, args: argparse.Namespace):
    try:
        from ..forecasters.registry import make_forecaster
    except ImportError:
        raise StockLLMError("the forecaster registry (stockllm.forecasters.registry) is not installed yet; see issue on evaluation") from None
    return make_forecaster(spec, data_dir=args.data_dir, backend=args.backend, precision=args.precision)


def _config(args: argparse.Namespace):
    from ..trading.strategy import StrategyConfig

    return StrategyConfig(horizon=args.horizon, margin=args.margin, max_position=args.max_position)


def _prices(args: argparse.Namespace) -> dict:
    from .. import store
    from ..universe import select_companies

    companies = select_companies(args.company_list_file, args.codes, args.data_dir)
    return {c.code: store.read_prices(Path(args.data_dir), c.code) for c in companies}


def _backtest(args: argparse.Namespace) -> int:
    from ..trading.backtest import buy_and_hold, run_backtest, write_report

    config, prices = _config(args), _prices(args)
    specs = [s.strip() for arg in args.models for s in arg.split(",") if s.strip()]  # "a b" or "a,b"
    results = []
    for spec in specs:
        info(f"backtesting {spec} on {', '.join(prices)} from {args.start} to {args.end} ...")
        results.append(run_backtest(prices, _forecaster(spec, args), args.start, args.end, args.cash, config))
    benchmark, gross = buy_and_hold(prices, args.start, args.end, args.cash, config)
    settings = {"models": specs, "codes": list(prices), "start": args.start, "end": args.end, "cash": args.cash,
                "horizon": config.horizon, "margin": config.margin, "max_position": config.weight(len(prices)),
                "data_dir": args.data_dir}
    report = write_report(results, benchmark, gross, Path(args.report), settings)
    rows = list(report["models"].items()) + [("buy_and_hold", report["buy_and_hold"])]
    print(f"{'model':<16}{'total':>9}{'annual':>9}{'sharpe':>8}{'max dd':>8}{'win':>6}{'trades':>7}{'fees':>10}{'tax':>10}")
    for name, m in rows:
        win = "-" if m["win_rate"] is None else f"{m['win_rate']:.0%}"
        print(f"{name:<16}{m['total_return']:>9.2%}{m['annualised_return']:>9.2%}{m['sharpe']:>8.2f}{m['max_drawdown']:>8.2%}"
              f"{win:>6}{m['trades']:>7}{m['fees_paid']:>10,}{m['tax_paid']:>10,}")
    for name, m in report["models"].items():
        skipped = m["forecasts"]["failed"] + m["forecasts"]["invalid"]
        if skipped:
            info(f"{name}: {skipped} of {m['forecasts']['asked']} forecasts drove no order "
                 f"({m['forecasts']['failed']} failed, {m['forecasts']['invalid']} invalid; reasons in the report)")
    for note in report["notes"]:
        info(note)
    info(f"report: {Path(args.report) / 'backtest.json'}, chart: {Path(args.report) / 'equity.png'}")
    return 0


def _trade(args: argparse.Namespace) -> int:
    from ..market import next_trading_days
    from ..trading import rules
    from ..trading.client import StockAPI
    from ..trading.strategy import decide

    config, prices = _config(args), _prices(args)
    client = StockAPI(args.url, order_log=args.order_log)
    held, cash = {}, float(args.cash)
    if args.send or (client.account and os.environ.get("STOCK_API_PASSWORD")):
        account = client.user_stocks()
        held = {str(r["stock_code_id"]): int(r["shares"]) for r in account.get("data", [])}
        cash = float(account.get("available_cash", args.cash))
        info(f"account {client.account} at {client.base_url}: {len(held)} holdings, cash for sizing NT${cash:,.0f}")
    else:
        info(f"dry run without credentials: assuming no holdings and NT${cash:,.0f} cash")
    forecaster = _forecaster(args.model, args)
    forecaster.fit(prices)
    last_close = {code: float(frame["close"].iloc[-1]) for code, frame in prices.items()}
    equity = cash + sum(lots * rules.LOT * last_close.get(code, 0.0) for code, lots in held.items())
    available = cash
    for code, history in prices.items():
        forecast = forecaster.predict(history, config.horizon, code=code)
        lots = held.get(code, 0)
        d = decide(code, history, forecast, lots, available, equity, lots * rules.LOT * last_close[code], len(prices), config)
        when = next_trading_days(d.as_of, 1)[0]
        line = f"{code} close {d.last_close:g} on {d.as_of} → forecast {d.forecast_close:.2f} ({d.expected_return:+.2%}): {d.action}"
        if d.action == "hold":
            print(f"{line} ({d.reason})")
            continue
        if d.action == "buy":
            available -= rules.buy_reservation(d.limit, d.lots)
        print(f"{line} {d.lots} lots, limit {d.limit}, for the {when} open ({d.reason})")
        if args.send:
            result = (client.buy if d.action == "buy" else client.sell)(code, d.lots, float(d.limit))
            print(f"  → {result.outcome}: {result.status}")
    if not args.send:
        info(f"dry run: nothing sent. Add --send to place these orders on {client.base_url}")
    stale = max(frame["date"].iloc[-1] for frame in prices.values())
    if next_trading_days(stale, 1)[0] < date.today():
        info(f"note: the newest stored prices are from {stale}; run `stockllm fetch` for today's decisions")
    return 0
