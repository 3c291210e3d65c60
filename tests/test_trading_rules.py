"""The Taiwan trading rules shared by the exchange and the backtest: fees, tax, lots, ticks, limits, fills."""

from decimal import Decimal

import pytest

from stockllm.trading import rules
from stockllm.trading.strategy import lots_for_budget


def test_brokerage_fee_is_0_1425_percent_truncated_to_the_dollar():
    assert rules.brokerage_fee(583_000) == 830  # 830.775 -> 830
    assert rules.brokerage_fee(1_992_000) == 2838  # 2838.6 -> 2838


def test_brokerage_fee_has_a_nt20_minimum_per_order():
    assert rules.brokerage_fee(10_000) == 20  # 14.25 -> minimum 20
    assert rules.brokerage_fee(14_035) == 20  # 19.99 -> 20
    assert rules.brokerage_fee(14_036) == 20  # 20.0013 -> 20
    assert rules.brokerage_fee(0) == 0


def test_transaction_tax_is_0_3_percent_on_sells_only_truncated():
    assert rules.transaction_tax(583_000) == 1749
    assert rules.transaction_tax(35_550) == 106  # 106.65 -> 106
    assert rules.costs("buy", "35.55", 1).tax == 0
    assert rules.costs("sell", "35.55", 1).tax == 106


def test_costs_give_the_signed_cash_of_a_fill():
    buy = rules.costs("buy", "583", 2)
    assert (buy.value, buy.fee, buy.tax, buy.cash, buy.shares) == (1_166_000, 1661, 0, -1_167_661, 2000)
    sell = rules.costs("sell", "583", 2)
    assert (sell.fee, sell.tax, sell.cash) == (1661, 3498, 1_166_000 - 1661 - 3498)


def test_buy_reservation_is_value_at_limit_plus_fee():
    assert rules.buy_reservation("1000", 1) == 1_001_425


def test_round_trip_cost_is_about_0_585_percent_and_more_for_tiny_orders():
    assert rules.round_trip_cost_rate(583) == (830 + 830 + 1749) / 583_000  # ~0.585%, truncation shaves a little
    assert rules.round_trip_cost_rate(5.0) > 0.01  # 5,000 NT$ lot: two NT$20 minimum fees dominate


def test_prices_parse_without_exponents_and_reject_nonsense():
    assert str(rules.parse_price("1000")) == "1000"
    assert str(rules.parse_price("583.0")) == "583"
    for bad in ("abc", "-5", "0", "nan", "inf"):
        with pytest.raises(ValueError):
            rules.parse_price(bad)


@pytest.mark.parametrize("price, reason", [
    ("1002", "tick"),      # >= 1000 moves in steps of 5
    ("35.52", "tick"),     # 10-50 moves in steps of 0.05
    ("1125", "limit band"),  # 1020 * 1.1 = 1122 -> limit-up 1120
    ("915", "limit band"),   # limit-down 918 -> on the 1-dollar grid below 1000
])
def test_order_problem_names_off_tick_and_out_of_band_prices(price, reason):
    assert reason in rules.order_problem("buy", Decimal(price), 1, 1020.0)


def test_order_problem_accepts_band_edges_and_limits_lot_counts():
    assert rules.order_problem("buy", Decimal("1120"), 1, 1020.0) is None
    assert rules.order_problem("sell", Decimal("918"), 499, 1020.0) is None
    assert "lots" in rules.order_problem("buy", Decimal("1000"), 0, 1020.0)
    assert "lots" in rules.order_problem("buy", Decimal("1000"), 500, 1020.0)


def test_fills_happen_at_the_open_when_the_limit_allows():
    assert rules.fill_price("buy", Decimal("1000"), 996.0) == Decimal("996")
    assert rules.fill_price("buy", Decimal("990"), 996.0) is None
    assert rules.fill_price("sell", Decimal("950"), 1020.0) == Decimal("1020")
    assert rules.fill_price("sell", Decimal("1025"), 1020.0) is None


def test_marketable_limits_are_the_daily_limits():
    assert rules.marketable_limit("buy", 1020.0) == Decimal("1120")
    assert rules.marketable_limit("sell", 1020.0) == Decimal("918")


def test_lots_for_budget_never_exceeds_the_budget_including_the_fee():
    limit = Decimal("1120")
    per_lot = rules.buy_reservation(limit, 1)
    assert lots_for_budget(limit, per_lot * 3) == 3
    assert lots_for_budget(limit, per_lot * 3 - 1) == 2
    assert lots_for_budget(limit, 0) == 0
    assert lots_for_budget(Decimal("5"), 10**12) == rules.MAX_LOTS_PER_ORDER
