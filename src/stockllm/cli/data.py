"""``stockllm companies`` and ``stockllm fetch``: which companies, and their prices and news."""

from __future__ import annotations

import argparse
from datetime import date

from .. import store
from ..config import TrainConfig
from ..errors import StockLLMError
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
    whole = fetch.add_argument_group("whole market (one request per market per trading day instead of per company-month)")
    whole.add_argument("--market", choices=["all", "TWSE", "TPEx"], help="fetch the exchanges' daily all-stock reports from --start to --end and "
                       "store every listed common stock (or only --codes); `all` = TWSE and TPEx")
    whole.add_argument("--start", help="first day of --market, YYYY-MM-DD")
    whole.add_argument("--end", help="last day of --market, YYYY-MM-DD (default: today)")
    whole.add_argument("--refresh", action="store_true", help="with --market: ask again for days already cached")
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
    if args.market:
        fetch_market_online(args)
    elif args.offline:
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


def fetch_market_online(args: argparse.Namespace) -> None:
    """``fetch --market``: whole-market daily reports split into the per-company store."""
    from ..sources.market_daily import fetch_market

    if not args.start:
        raise StockLLMError("--market needs --start YYYY-MM-DD (the first trading day to fetch)")
    start, end = _day(args.start, "--start"), _day(args.end, "--end") if args.end else None
    companies = select_companies(None, args.codes, args.data_dir) if args.codes else None
    markets = ("TWSE", "TPEx") if args.market == "all" else (args.market,)
    report = fetch_market(args.data_dir, start, end, markets=markets, companies=companies, refresh=args.refresh)
    for line in report.summary_lines(args.data_dir):
        info(line)
    if not report.written:
        raise StockLLMError(f"no prices stored: {'; '.join(report.unreachable_reasons.values()) or 'the exchanges answered no rows'}; "
                            "re-run later or use `stockllm fetch --offline`")


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StockLLMError(f"{flag} {text!r} is not a date; write YYYY-MM-DD, e.g. {flag} 2024-12-02") from None


def fetch_online(data_dir: str, companies: list[Company], year: int, month: int) -> None:
    """Fetch prices from TWSE/TPEx; companies whose exchange cannot be reached get the offline snapshot."""
    from ..sources.prices import fetch_prices

    report = fetch_prices(data_dir, companies, year, month)
    for line in report.summary_lines(data_dir, len(companies)):
        info(line)
    if report.unreachable:
        markets = " and ".join(sorted({c.market for c in report.unreachable}))
        install_offline(data_dir, report.unreachable, reason=f"{markets} unreachable, using the bundled data instead")
