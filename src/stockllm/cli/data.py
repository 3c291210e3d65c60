"""``stockllm companies`` and ``stockllm fetch``: which companies, and their prices and news."""

from __future__ import annotations

import argparse

from .. import store
from ..config import TrainConfig
from ..universe import Company, select_companies
from .common import add_codes_arg, add_data_args, add_settings_args, info, print_json


def register(sub: argparse._SubParsersAction) -> None:
    companies = sub.add_parser(
        "companies",
        help="list the selected companies (code, name, market, industry), or pick some by BestFourPoint signals",
        description="List the selected companies. With --choose-stock N, pick N at random (seeded by --random-state) "
        "among those with a twstock BestFourPoint buy signal on their latest stored day and N among those with a "
        "sell signal, and say why (needs stored prices: run `stockllm fetch --offline` first).",
    )
    add_data_args(companies, only=["company_list_file", "data_dir", "choose_stock"])
    add_settings_args(companies, TrainConfig, only=["random_state"])
    companies.add_argument("--json", action="store_true", help="print JSON instead of a table")
    companies.set_defaults(func=run_companies)

    fetch = sub.add_parser(
        "fetch",
        help="collect daily prices (TWSE/TPEx) and optionally news into the data dir",
        description="Collect daily prices from --year/--month to today for the selected companies. "
        "With --offline (or when TWSE/TPEx cannot be reached) the bundled snapshot is installed instead.",
    )
    add_data_args(fetch, only=["data_dir", "company_list_file", "year", "month"])
    add_codes_arg(fetch)
    fetch.add_argument("--offline", action="store_true", help="install the bundled real-price snapshot; no network")
    fetch.add_argument("--news", action="store_true", help="also fetch company news from newsapi (key in NEWSAPI_KEY)")
    fetch.set_defaults(func=run_fetch)


def run_companies(args: argparse.Namespace) -> int:
    companies = select_companies(args.company_list_file)
    if args.choose_stock:
        return _print_picks(args, companies)
    if args.json:
        print_json([c.to_dict() for c in companies])
        return 0
    for c in companies:
        print(f"{c.code}\t{c.name_zh}\t{c.market}\t{c.industry}\t{c.name_en}")
    info(f"{len(companies)} companies ({sum(c.market == 'TWSE' for c in companies)} TWSE, {sum(c.market == 'TPEx' for c in companies)} TPEx)")
    return 0


def _print_picks(args: argparse.Namespace, companies: list[Company]) -> int:
    from ..selection import choose_stocks

    buys, sells = choose_stocks(args.data_dir, companies, args.choose_stock, args.random_state, log=info if args.json else print)
    if args.json:
        print_json([
            {"side": side, **company.to_dict(), "date": signal.date, "reasons": signal.buy if side == "buy" else signal.sell}
            for side, picks in (("buy", buys), ("sell", sells))
            for company, signal in picks
        ])
    return 0


def install_offline(data_dir: str, companies: list[Company], reason: str = "--offline") -> dict:
    """Fill ``data_dir`` from the bundled snapshot and say which range it covers."""
    installed = store.install_snapshot(data_dir, [c.code for c in companies])
    missing = [c.code for c in companies if c.code not in installed]
    if installed:
        first = min(v[0] for v in installed.values())
        last = max(v[1] for v in installed.values())
        info(f"offline snapshot ({reason}): {len(installed)} companies, {first} → {last}, written to {data_dir}/prices")
    if missing:
        info(f"not in the snapshot (fetch them online): {', '.join(missing)}")
    return installed


def run_fetch(args: argparse.Namespace) -> int:
    companies = select_companies(args.company_list_file, args.codes, args.data_dir)
    if args.offline:
        install_offline(args.data_dir, companies)
    else:
        fetch_online(args.data_dir, companies, args.year, args.month)
    if args.news:
        from ..sources.news import fetch_news

        report = fetch_news(args.data_dir, companies)
        for note in report.notes:
            info(note)
        info(f"news: {len(report.written)} companies, {report.articles} articles stored in {args.data_dir}/news ({report.requests} requests to newsapi)")
    return 0


def fetch_online(data_dir: str, companies: list[Company], year: int, month: int) -> None:
    """Fetch prices from TWSE/TPEx; companies whose exchange cannot be reached get the offline snapshot."""
    from ..sources.prices import fetch_prices

    report = fetch_prices(data_dir, companies, year, month)
    for line in report.summary_lines(data_dir, len(companies)):
        info(line)
    if report.unreachable:
        markets = " and ".join(sorted({c.market for c in report.unreachable}))
        install_offline(data_dir, report.unreachable, reason=f"{markets} unreachable, using the bundled data instead")
