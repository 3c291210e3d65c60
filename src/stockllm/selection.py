"""``--choose-stock N``: N companies at random among BestFourPoint buy signals and N among sell signals.

The write-up picks the stocks to train on this way. Signals are twstock's BestFourPoint (四大買點 /
四大賣點, via :mod:`stockllm.signals`) on each company's latest stored day. A company that shows both a buy
and a sell reason counts as a buy, as in twstock's own ``BestFourPoint.best_four_point()``. The draw uses
``random.Random(seed)`` over the companies in their given order, so the same ``--random-state`` and
company list always pick the same stocks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from . import store
from .errors import StockLLMError
from .signals import Signal, best_four_point
from .universe import Company

Pick = tuple[Company, Signal]


def choose_stocks(
    data_dir: Path | str,
    companies: list[Company],
    n: int,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Pick], list[Pick]]:
    """``(buys, sells)``: up to ``n`` picks each, with the signal (date and twstock reasons) behind each.

    ``log`` (e.g. ``cli.common.info``) is told which stocks were picked and why, and which were skipped.
    """
    if n < 1:
        raise StockLLMError(f"--choose-stock {n}: give the number of stocks to pick on each side (1 or more)")
    stored = [c for c in companies if store.prices_path(data_dir, c.code).exists()]
    if not stored:
        raise StockLLMError(f"no stored prices in {Path(data_dir) / 'prices'} for the selected companies; run `stockllm fetch --offline` (or `stockllm fetch`) first")
    buys: list[Pick] = []
    sells: list[Pick] = []
    for company in stored:
        signal = best_four_point(store.read_prices(data_dir, company.code))
        if signal is not None and (signal.buy or signal.sell):
            (buys if signal.buy else sells).append((company, signal))
    rng = random.Random(seed)
    picked = rng.sample(buys, min(n, len(buys))), rng.sample(sells, min(n, len(sells)))
    if log:
        skipped = [c.code for c in companies if c not in stored]
        if skipped:
            log(f"no stored prices, not considered: {', '.join(skipped)}")
        log(f"BestFourPoint on the latest stored day: {len(buys)} buy and {len(sells)} sell signals among {len(stored)} companies; "
            f"picked {len(picked[0])} + {len(picked[1])} with seed {seed}")
        for line in describe_picks(*picked):
            log(line)
    return picked


def describe_picks(buys: list[Pick], sells: list[Pick]) -> list[str]:
    """One line per pick: side, code, name, signal date and twstock's reasons."""
    return [
        f"{side}\t{company.code}\t{company.name_zh}\t{signal.date}\t{signal.buy if side == 'buy' else signal.sell}"
        for side, picks in (("buy", buys), ("sell", sells))
        for company, signal in picks
    ]
