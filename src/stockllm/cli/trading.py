"""``stockllm exchange``, ``backtest`` and ``trade``: the local simulated exchange and forecast-driven trading."""

from __future__ import annotations

import argparse

from .common import not_built


def register(sub: argparse._SubParsersAction) -> None:
    exchange = sub.add_parser("exchange", help="the local simulated exchange compatible with the course's stock_api")
    exsub = exchange.add_subparsers(dest="exchange_command", metavar="ACTION", required=True)
    serve = exsub.add_parser("serve", help="run the exchange HTTP server")
    serve.set_defaults(func=not_built("stockllm exchange serve", 6))
    add_user = exsub.add_parser("add-user", help="create an exchange account")
    add_user.set_defaults(func=not_built("stockllm exchange add-user", 6))

    backtest = sub.add_parser("backtest", help="backtest forecast-driven trading with Taiwan fees, tax, lots and limits")
    backtest.set_defaults(func=not_built("stockllm backtest", 6))

    trade = sub.add_parser("trade", help="compute today's decisions and (without --dry-run) send them to the exchange")
    trade.set_defaults(func=not_built("stockllm trade", 6))
