"""``stockllm demo``: the README's main job on the embedded defaults, with no network."""

from __future__ import annotations

import argparse

from .. import store
from ..universe import default_universe
from .common import add_data_args, info
from .data import install_offline


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the main job offline on the bundled data (what `make demo` runs)")
    add_data_args(demo, only=["data_dir"])
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    companies = default_universe()
    info(f"step 1/1: installing the offline snapshot for the {len(companies)} default companies")
    install_offline(args.data_dir, companies, reason="demo")
    print(f"{'code':<6}{'name':<8}{'market':<7}{'rows':>6}  {'first':<11}{'last':<11}{'last close':>11}")
    for company in companies:
        frame = store.read_prices(args.data_dir, company.code)
        print(f"{company.code:<6}{company.name_zh:<8}{company.market:<7}{len(frame):>6}  {frame['date'].iloc[0]:<11}"
              f"{frame['date'].iloc[-1]:<11}{frame['close'].iloc[-1]:>11.2f}")
    return 0
