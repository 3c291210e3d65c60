"""``stockllm companies`` and ``stockllm fetch``: which companies, and their prices and news."""

from __future__ import annotations

import argparse

from .. import store
from ..universe import Company, select_companies
from .common import add_codes_arg, add_data_args, info, print_json


def register(sub: argparse._SubParsersAction) -> None:
    companies = sub.add_parser("companies", help="list the selected companies (code, name, market, industry)")
    add_data_args(companies, only=["company_list_file"])
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
    if args.json:
        print_json([c.to_dict() for c in companies])
        return 0
    for c in companies:
        print(f"{c.code}\t{c.name_zh}\t{c.market}\t{c.industry}\t{c.name_en}")
    info(f"{len(companies)} companies ({sum(c.market == 'TWSE' for c in companies)} TWSE, {sum(c.market == 'TPEx' for c in companies)} TPEx)")
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
    companies = select_companies(args.company_list_file, args.codes)
    if args.offline:
        install_offline(args.data_dir, companies)
    else:
        from ..sources.prices import fetch_prices  # network path, built in issue 2's price-source work

        fetch_prices(args.data_dir, companies, args.year, args.month)
    if args.news:
        from ..sources.news import fetch_news

        fetch_news(args.data_dir, companies)
    return 0
