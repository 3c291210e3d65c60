"""Taiwan cash-equity trading rules and costs — the ONE copy the exchange server and the backtest share.

Calendar, tick sizes and the ±10% daily limit come from :mod:`stockllm.market`; this module adds what an
order costs and whether it is acceptable and fillable:

* **Lots.** Orders are whole board lots of :data:`LOT` = 1,000 shares (the course API's ``stock_shares``
  counts lots), at most :data:`MAX_LOTS_PER_ORDER` = 499 lots, the TWSE per-order maximum.
* **Brokerage fee.** 0.1425% of the traded value, per order, at least NT$20, **rounded down** to the whole
  dollar (brokers truncate the fraction; e.g. 1 lot at 583 → 583,000 × 0.1425% = 830.775 → NT$830).
* **Securities transaction tax.** 0.3% of the traded value on sells only, **rounded down** to the dollar
  (583,000 × 0.3% = 1,749). No minimum.
* **Fills.** A limit order placed when the market date is D is a reservation for the next trading day
  D+1 and fills at D+1's open when the limit allows (buy: open ≤ limit; sell: open ≥ limit), else expires.

All money is integer New Taiwan dollars: a price has at most two decimals, so price × 1,000 shares is a
whole number of dollars, and fee and tax are truncated — no float ever reaches a balance. Prices are at most
:data:`MAX_PRICE` and balances at most :data:`MAX_CASH`, so every sum the ledger forms fits SQLite's 64-bit
integers with room to spare (a larger value would silently turn into a float there).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from ..market import is_on_tick, limit_prices, tick_size

LOT = 1000
"""Shares per board lot; the course API's ``stock_shares`` is a number of lots."""

MAX_LOTS_PER_ORDER = 499
"""TWSE's largest board-lot order (larger quantities must be split into several orders)."""

FEE_RATE = Decimal("0.001425")
FEE_MIN = 20
TAX_RATE = Decimal("0.003")

MAX_PRICE = Decimal(100_000)
"""The highest price accepted (no Taiwan stock has traded near it): keeps value, fee and tax small integers."""

MAX_PRICE_CHARS = 32
"""Longest price text parsed: bounds the cost of parsing whatever a client sends."""

MAX_CASH = 10**15
"""The largest balance an account may hold, NT$: a thousand times Taiwan's GDP, far inside 2**63."""

BUY, SELL = "buy", "sell"


class OutOfRange(ValueError):
    """A number beyond what the exchange represents (not merely a refused order): 1e308, 10**23 NT$."""


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def parse_price(text: str | float | Decimal) -> Decimal:
    """A positive finite price as Decimal (``"583"``, ``"583.0"`` and ``583.0`` are the same price).

    Raises :class:`OutOfRange` above :data:`MAX_PRICE` or for text longer than :data:`MAX_PRICE_CHARS`, and
    ``ValueError`` for anything else that is not a positive number.
    """
    text = str(text).strip()
    if len(text) > MAX_PRICE_CHARS:
        raise OutOfRange(f"price text of {len(text):,} characters is longer than {MAX_PRICE_CHARS}")
    try:
        price = Decimal(text)
    except (InvalidOperation, ValueError):
        raise ValueError(f"price {text!r} is not a number") from None
    if not price.is_finite() or price <= 0:
        raise ValueError(f"price {text!r} must be a positive number")
    if price > MAX_PRICE:
        raise OutOfRange(f"price {text!r} is above {MAX_PRICE:,}, the highest price this exchange accepts")
    return Decimal(format(price.normalize(), "f"))  # 583.0 -> 583, without normalize()'s 1E+3 form


def trade_value(price: Decimal | float | str, lots: int) -> int:
    """Traded value in NT$ of ``lots`` board lots at ``price`` (exact: prices have ≤ 2 decimals)."""
    value = parse_price(price) * LOT * lots
    if value != value.to_integral_value():
        raise ValueError(f"price {price} has more than 3 decimals; Taiwan prices sit on 0.01 or coarser ticks")
    return int(value)


def brokerage_fee(value: int) -> int:
    """Fee of one order of traded value ``value``: 0.1425%, truncated to the dollar, minimum NT$20."""
    if value <= 0:
        return 0
    return max(FEE_MIN, _floor(Decimal(value) * FEE_RATE))


def transaction_tax(value: int) -> int:
    """Securities transaction tax of a sell of traded value ``value``: 0.3%, truncated to the dollar."""
    return _floor(Decimal(value) * TAX_RATE) if value > 0 else 0


@dataclass(frozen=True)
class Costs:
    """What one fill moves: ``cash`` is the signed change of the account's cash (negative for a buy)."""

    side: str
    price: Decimal
    lots: int
    value: int
    fee: int
    tax: int

    @property
    def shares(self) -> int:
        return self.lots * LOT

    @property
    def cash(self) -> int:
        if self.side == BUY:
            return -(self.value + self.fee)
        return self.value - self.fee - self.tax


def costs(side: str, price: Decimal | float | str, lots: int) -> Costs:
    """Value, fee and tax of ``lots`` lots bought or sold at ``price``."""
    value = trade_value(price, lots)
    fee = brokerage_fee(value)
    tax = transaction_tax(value) if side == SELL else 0
    return Costs(side=side, price=parse_price(price), lots=lots, value=value, fee=fee, tax=tax)


def buy_reservation(limit: Decimal | float | str, lots: int) -> int:
    """Cash a buy order locks until it fills: the value at its limit price plus that value's fee.

    The fill happens at the open, which is never above the limit, so the real cost never exceeds this.
    """
    return -costs(BUY, limit, lots).cash


def round_trip_cost_rate(price: Decimal | float, lots: int = 1) -> float:
    """Fraction of the traded value lost to fees and tax by buying and later selling ``lots`` at ``price``.

    About 0.585% (2 × 0.1425% + 0.3%), more for small orders where the NT$20 minimum fee binds.
    """
    buy, sell = costs(BUY, price, lots), costs(SELL, price, lots)
    return (buy.fee + sell.fee + sell.tax) / buy.value


def order_problem(side: str, price: Decimal, lots: int, reference_close: float | Decimal) -> str | None:
    """Why an order of ``lots`` at ``price`` cannot be accepted for the day after a close of ``reference_close``.

    ``None`` when it is acceptable. Cash and share checks need the account and are the caller's.
    """
    if side not in (BUY, SELL):
        return f"unknown side {side!r}; use buy or sell"
    if lots < 1 or lots > MAX_LOTS_PER_ORDER:
        return f"stock_shares must be a whole number of lots between 1 and {MAX_LOTS_PER_ORDER} (1 lot = {LOT} shares)"
    if not is_on_tick(price):
        return f"price {price} is not on the tick grid: prices near {price} move in steps of {tick_size(price)}"
    down, up = limit_prices(reference_close)
    if not down <= price <= up:
        return f"price {price} is outside the daily limit band {down}–{up} (±10% of the reference close {reference_close})"
    return None


def fill_price(side: str, limit: Decimal, day_open: float | Decimal) -> Decimal | None:
    """The price a reservation fills at on a day opening at ``day_open``, or ``None`` when the limit forbids it.

    A buy fills when the open is at or below its limit, a sell when the open is at or above it; both fill at
    the open (the auction price everybody got), never at the limit.
    """
    opening = parse_price(day_open)
    if side == BUY:
        return opening if opening <= limit else None
    return opening if opening >= limit else None


def marketable_limit(side: str, reference_close: float | Decimal) -> Decimal:
    """The limit that always fills at the next open: limit-up for a buy, limit-down for a sell."""
    down, up = limit_prices(reference_close)
    return up if side == BUY else down

