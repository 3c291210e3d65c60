"""``--choose-stock N``: seeded picks among BestFourPoint buy and sell signals of the stored prices."""

from __future__ import annotations

import json

import pytest
from twstock.analytics import BestFourPoint

from stockllm import store
from stockllm.cli import main as stockllm_main
from stockllm.errors import StockLLMError
from stockllm.selection import choose_stocks
from stockllm.signals import best_four_point
from stockllm.universe import default_universe, resolve_code

CODES = ["2301", "2308", "2317", "2330", "2353", "2376", "2417", "3088", "3711", "4938", "5371", "6669"]


@pytest.fixture(scope="module")
def prices(tmp_path_factory):
    """Twelve companies of the snapshot, TWSE and TPEx (reading all 41 each time would slow the suite)."""
    target = tmp_path_factory.mktemp("selection") / "data"
    store.install_snapshot(target, CODES)
    return target


@pytest.fixture(scope="module")
def companies():
    return [resolve_code(c) for c in CODES]


def test_picks_n_buys_and_n_sells_with_twstocks_reasons_on_the_latest_stored_day(prices, companies):
    buys, sells = choose_stocks(prices, companies, 3, 3407)
    assert len(buys) == len(sells) == 3
    for side, picks, reasons in (("buy", buys, BestFourPoint.BEST_BUY_WHY), ("sell", sells, BestFourPoint.BEST_SELL_WHY)):
        for company, signal in picks:
            history = store.read_prices(prices, company.code)
            assert signal == best_four_point(history) and signal.date == history["date"].iloc[-1]
            why = signal.buy if side == "buy" else signal.sell
            assert why and set(why.split(", ")) <= set(reasons)
    assert not {c.code for c, _ in buys} & {c.code for c, _ in sells}


def test_the_same_seed_picks_the_same_stocks_and_another_seed_may_not(prices, companies):
    codes = lambda picks: [[c.code for c, _ in side] for side in picks]  # noqa: E731
    assert codes(choose_stocks(prices, companies, 2, 3407)) == codes(choose_stocks(prices, companies, 2, 3407))
    assert len({json.dumps(codes(choose_stocks(prices, companies, 2, seed))) for seed in range(6)}) > 1


def test_fewer_candidates_than_asked_picks_them_all_and_says_why(prices):
    companies = [resolve_code(c) for c in ("2330", "2317", "2353")]
    lines: list[str] = []
    buys, sells = choose_stocks(prices, companies, 5, 1, log=lines.append)
    assert len(buys) + len(sells) <= 3
    assert lines[0].startswith(f"BestFourPoint on the latest stored day: {len(buys)} buy and {len(sells)} sell signals among 3 companies")
    assert len(lines) == 1 + len(buys) + len(sells)
    assert all(line.split("\t")[0] in ("buy", "sell") for line in lines[1:])


def test_companies_without_prices_are_skipped_and_none_at_all_is_a_clear_error(tmp_path, prices):
    lines: list[str] = []
    choose_stocks(prices, [resolve_code("2330"), resolve_code("6488")], 1, 0, log=lines.append)
    assert lines[0] == "no stored prices, not considered: 6488"
    with pytest.raises(StockLLMError, match="no stored prices .* run `stockllm fetch --offline`"):
        choose_stocks(tmp_path, default_universe(), 1, 0)
    with pytest.raises(StockLLMError, match="1 or more"):
        choose_stocks(prices, default_universe(), 0, 0)


def test_stockllm_companies_choose_stock_prints_the_picks_and_why(prices, capsys):
    """With the default universe: the 29 companies without stored prices are skipped (said on the first line)."""
    assert stockllm_main(["companies", "--choose-stock", "2", "--data-dir", str(prices), "--random-state", "7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("no stored prices, not considered: ") and len(out[0].split(": ")[1].split(", ")) == 41 - len(CODES)
    buys, sells = choose_stocks(prices, default_universe(), 2, 7)
    assert out[2:] == [f"buy\t{c.code}\t{c.name_zh}\t{s.date}\t{s.buy}" for c, s in buys] + [f"sell\t{c.code}\t{c.name_zh}\t{s.date}\t{s.sell}" for c, s in sells]
    assert stockllm_main(["companies", "--choose-stock", "2", "--data-dir", str(prices), "--random-state", "7", "--json"]) == 0
    picks = json.loads(capsys.readouterr().out)
    assert [(p["side"], p["code"], p["reasons"]) for p in picks] == [("buy", c.code, s.buy) for c, s in buys] + [("sell", c.code, s.sell) for c, s in sells]
