"""The local exchange's state and its business rules: accounts, reservations, fills, the market clock.

Everything durable lives in one SQLite file in WAL mode with ``synchronous=FULL``: an order, a fill or an
advance of the clock is one ``BEGIN IMMEDIATE`` transaction, so a process killed at any instant (kill -9)
leaves either all of it or none of it, and concurrent requests are serialised on the account balances.

**Market date.** The exchange keeps a simulated clock (``meta.market_date``): the last trading day whose
prices are "known". Orders received while the clock reads D are reservations for the next trading day D+1;
:meth:`Ledger.advance` moves the clock one trading day at a time, filling each due reservation at that
day's open from the data dir (or expiring it) — see ``docs/trading.md``.

Money is integer NT$ (see :mod:`.rules`); prices are kept as decimal strings.

**Credentials.** A password is checked (scrypt, ~100 ms) before any transaction starts, so guessing never
holds the write lock; an unknown account is checked against a dummy hash, so the reply time does not tell
which accounts exist. The database file is created readable by its owner only (0600): it holds the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from ..errors import StockLLMError
from ..market import is_trading_day, next_trading_days, to_date
from . import rules
from .pricebook import PriceBook

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    account TEXT PRIMARY KEY,
    password TEXT NOT NULL,              -- scrypt$n$r$p$salt_hex$hash_hex, never the password
    initial_cash INTEGER NOT NULL,
    cash INTEGER NOT NULL,               -- settled cash, NT$
    reserved INTEGER NOT NULL DEFAULT 0, -- cash locked by pending buys (limit value + fee)
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holdings (
    account TEXT NOT NULL REFERENCES users(account),
    code TEXT NOT NULL,
    shares INTEGER NOT NULL,             -- shares (multiples of 1,000)
    reserved INTEGER NOT NULL DEFAULT 0, -- shares locked by pending sells
    cost INTEGER NOT NULL,               -- traded value paid for the shares held (fees excluded)
    PRIMARY KEY (account, code)
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL REFERENCES users(account),
    client_order_id TEXT,
    side TEXT NOT NULL,
    code TEXT NOT NULL,
    lots INTEGER NOT NULL,
    limit_price TEXT NOT NULL,
    placed_on TEXT NOT NULL,             -- market date when accepted
    fill_on TEXT NOT NULL,               -- the trading day whose open fills it
    status TEXT NOT NULL,                -- pending | filled | expired
    reserved INTEGER NOT NULL DEFAULT 0, -- cash locked (buys)
    fill_price TEXT, value INTEGER, fee INTEGER, tax INTEGER,
    reason TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (account, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_pending ON orders (status, fill_on);
"""

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
ACCOUNT_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
AUTH_FAILED = "authentication failed: unknown account or wrong password"
RECENT_ORDERS = 20

DUMMY_HASH = (
    "scrypt$16384$8$1$b0bb9fb2a0140a8179ddad50bf3435c1$02b11cfa859d30ff552527a5eeb38505917c2766967e7899afbd1f00ca3233fc"
    "99cf50558754e5aacb16c29ee533b2352e13ba2855e6f0cd5b9c23207795a187"
)
"""The hash of a random password nobody kept: verified for unknown accounts so they cost what known ones do."""


class Rejected(Exception):
    """A request the exchange refuses; the message becomes the reply's ``status``.

    ``http_status`` is 200 for the course API's refusals (bad tick, no cash, wrong password: the course server
    answers those with 200 too) and a 4xx for requests beyond what the exchange represents at all.
    """

    def __init__(self, message: str, http_status: int = 200):
        super().__init__(message)
        self.http_status = http_status


def hash_password(password: str) -> str:
    """Salted scrypt hash in a self-describing string (parameters travel with it)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate, bytes.fromhex(digest))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _parse_lots(text: str) -> int:
    """Whole lots from the form text; the range is checked on the Decimal, so ``1E+999999`` never becomes an int."""
    try:
        value = Decimal(str(text).strip())
    except ArithmeticError:
        raise Rejected(f"stock_shares {text!r} is not a number; give whole lots (1 lot = {rules.LOT} shares)") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise Rejected(f"stock_shares {text!r} must be a whole number of lots (1 lot = {rules.LOT} shares)")
    if not 1 <= value <= rules.MAX_LOTS_PER_ORDER:
        raise Rejected(f"stock_shares must be a whole number of lots between 1 and {rules.MAX_LOTS_PER_ORDER} (1 lot = {rules.LOT} shares)")
    return int(value)


@dataclass(frozen=True)
class FillEvent:
    """What :meth:`Ledger.advance` did to one reservation."""

    order_id: int
    account: str
    side: str
    code: str
    lots: int
    day: str
    status: str  # filled | expired
    price: str | None
    cash: int
    reason: str | None


class Ledger:
    """The exchange's accounts, orders and clock, over the SQLite file ``db_path``."""

    def __init__(self, db_path: Path | str, data_dir: Path | str, start_date: date | str | None = None):
        self.db_path = Path(db_path)
        self.prices = PriceBook(data_dir)
        self._local = threading.local()
        self._auth_key = secrets.token_bytes(32)
        self._auth_cache: dict[str, tuple[str, bytes]] = {}
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():  # owner-only before SQLite opens it; its -wal/-shm files inherit the mode
            os.close(os.open(self.db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self._init(start_date)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StockLLMError(f"{self.db_path} is not an exchange database ({exc}); give the --db that `stockllm exchange init` created") from None

    # --- connection and transactions -----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, isolation_level=None, timeout=30, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection, mode: str):
            self.db, self.mode = db, mode

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute(f"BEGIN {self.mode}")
            return self.db

        def __exit__(self, kind, exc, tb) -> None:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _write(self) -> "_Tx":
        """A write transaction taking the database's write lock up front, so balance checks cannot race."""
        return self._Tx(self._db(), "IMMEDIATE")

    def _read(self) -> "_Tx":
        return self._Tx(self._db(), "DEFERRED")

    def _init(self, start_date: date | str | None) -> None:
        db = self._db()
        db.executescript(SCHEMA)
        with self._write() as db:
            if db.execute("SELECT 1 FROM meta WHERE key='market_date'").fetchone():
                if start_date is not None:
                    raise StockLLMError(f"{self.db_path} already exists with its own market date; move it with `stockllm exchange advance` or use a new --db")
                return
            last = self.prices.last_date()
            start = to_date(start_date) if start_date is not None else last
            first = self.prices.first_date()
            if not first <= start <= last:
                raise StockLLMError(f"market date {start} is outside the stored prices ({first} → {last}); pick a date in that range or fetch more")
            while not is_trading_day(start):
                start = date.fromordinal(start.toordinal() - 1)
            db.execute("INSERT INTO meta VALUES ('market_date', ?)", (start.isoformat(),))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- clock ---------------------------------------------------------------------------------------

    def market_date(self, db: sqlite3.Connection | None = None) -> date:
        row = (db or self._db()).execute("SELECT value FROM meta WHERE key='market_date'").fetchone()
        return date.fromisoformat(row[0])

    def advance(self, to: date | str | None = None, days: int | None = None) -> list[FillEvent]:
        """Move the clock forward one trading day at a time up to ``to`` (or ``days`` days; default 1).

        Each day is its own transaction: due reservations fill at that day's open (or expire), then the
        clock moves. It stops with an error before a day the data dir has no prices for yet.
        """
        current = self.market_date()
        if to is not None:
            target = to_date(to)
            if target <= current:
                raise StockLLMError(f"the market date is already {current}; --to must be later (the clock only moves forward)")
            steps = []
            day = current
            while True:
                day = next_trading_days(day, 1)[0]
                if day > target:
                    break
                steps.append(day)
        else:
            steps = next_trading_days(current, days or 1)
        last = self.prices.last_date()
        if steps and steps[-1] > last:
            raise StockLLMError(f"no price data for {steps[-1]} yet (the data dir ends {last}); run `stockllm fetch` first or advance less far")
        events: list[FillEvent] = []
        for day in steps:
            events.extend(self._settle_day(day))
        return events

    def _settle_day(self, day: date) -> list[FillEvent]:
        events = []
        with self._write() as db:
            due = db.execute("SELECT * FROM orders WHERE status='pending' AND fill_on<=? ORDER BY id", (day.isoformat(),)).fetchall()
            for order in due:
                events.append(self._settle(db, order, day))
            db.execute("UPDATE meta SET value=? WHERE key='market_date'", (day.isoformat(),))
        return events

    def _settle(self, db: sqlite3.Connection, order: sqlite3.Row, day: date) -> FillEvent:
        side, code, lots, limit = order["side"], order["code"], order["lots"], Decimal(order["limit_price"])
        shares = lots * rules.LOT
        opening = self.prices.open_on(code, day) if self.prices.has(code) else None
        price = None if opening is None else rules.fill_price(side, limit, opening)
        if price is None:
            reason = f"no trading in {code} on {day}" if opening is None else (
                f"open {opening:g} {'above' if side == rules.BUY else 'below'} the limit {limit}")
            if side == rules.BUY:
                db.execute("UPDATE users SET reserved=reserved-? WHERE account=?", (order["reserved"], order["account"]))
            else:
                db.execute("UPDATE holdings SET reserved=reserved-? WHERE account=? AND code=?", (shares, order["account"], code))
            db.execute("UPDATE orders SET status='expired', reason=? WHERE id=?", (reason, order["id"]))
            return FillEvent(order["id"], order["account"], side, code, lots, day.isoformat(), "expired", None, 0, reason)
        c = rules.costs(side, price, lots)
        if side == rules.BUY:
            db.execute("UPDATE users SET cash=cash+?, reserved=reserved-? WHERE account=?", (c.cash, order["reserved"], order["account"]))
            db.execute(
                "INSERT INTO holdings (account, code, shares, reserved, cost) VALUES (?, ?, ?, 0, ?) "
                "ON CONFLICT (account, code) DO UPDATE SET shares=shares+excluded.shares, cost=cost+excluded.cost",
                (order["account"], code, shares, c.value),
            )
        else:
            held = db.execute("SELECT shares, cost FROM holdings WHERE account=? AND code=?", (order["account"], code)).fetchone()
            remaining = held["shares"] - shares
            cost = 0 if remaining == 0 else round(held["cost"] * remaining / held["shares"])
            db.execute("UPDATE users SET cash=cash+? WHERE account=?", (c.cash, order["account"]))
            if remaining == 0:
                db.execute("DELETE FROM holdings WHERE account=? AND code=?", (order["account"], code))
            else:
                db.execute("UPDATE holdings SET shares=?, reserved=reserved-?, cost=? WHERE account=? AND code=?",
                           (remaining, shares, cost, order["account"], code))
        db.execute("UPDATE orders SET status='filled', fill_price=?, value=?, fee=?, tax=?, fill_on=? WHERE id=?",
                   (str(price), c.value, c.fee, c.tax, day.isoformat(), order["id"]))
        return FillEvent(order["id"], order["account"], side, code, lots, day.isoformat(), "filled", str(price), c.cash, None)

    # --- accounts ------------------------------------------------------------------------------------

    def add_user(self, account: str, password: str, cash: int) -> None:
        if not ACCOUNT_PATTERN.match(account):
            raise StockLLMError(f"account {account!r} must be 1-64 letters, digits or _.@- characters")
        if not password:
            raise StockLLMError("empty password; set STOCK_API_PASSWORD or type one at the prompt")
        if not 0 <= cash <= rules.MAX_CASH:
            raise StockLLMError(f"--cash {cash} must be between 0 and {rules.MAX_CASH:,} NT$ (the ledger's integer range)")
        hashed = hash_password(password)
        try:
            with self._write() as db:
                db.execute("INSERT INTO users (account, password, initial_cash, cash, created_at) VALUES (?, ?, ?, ?, ?)",
                           (account, hashed, cash, cash, _now()))
        except sqlite3.IntegrityError:
            raise StockLLMError(f"account {account!r} already exists in {self.db_path}") from None

    def _stored_hash(self, account: str) -> str | None:
        row = self._db().execute("SELECT password FROM users WHERE account=?", (account,)).fetchone() if account else None
        return None if row is None else row[0]

    def _tag(self, password: str) -> bytes:
        return hmac.new(self._auth_key, password.encode(), "sha256").digest()

    def remembers(self, account: str, password: str) -> bool:
        """Whether ``password`` was already verified for ``account`` by this process (microseconds, no scrypt).

        Cheap enough for the server's event loop: a wrong password is told in memory, a right one with one
        indexed read.

        The server lets such requests through even while failed logins are throttled, so a client that
        logged in before an attack keeps trading during it.
        """
        cached = self._auth_cache.get(account)
        if not (cached and password and hmac.compare_digest(cached[1], self._tag(password))):
            return False  # decided in memory: a guess costs no database query
        return cached[0] == self._stored_hash(account)  # the account still has the hash that was verified

    def authenticate(self, account: str, password: str) -> None:
        """Raise :class:`Rejected` with one message for an unknown account or a wrong password.

        Called outside any transaction: scrypt is deliberately slow (~100 ms) and must not hold the write
        lock. An unknown account is verified against :data:`DUMMY_HASH`, so both cost the same time. A
        verified password is remembered as an HMAC under a key that lives only in this process, so the next
        requests cost microseconds and nothing reusable is kept.
        """
        if self.remembers(account, password):
            return
        stored = self._stored_hash(account)
        matches = bool(password) and verify_password(password, stored or DUMMY_HASH)
        if stored is None or not matches:
            raise Rejected(AUTH_FAILED)
        self._auth_cache[account] = (stored, self._tag(password))

    # --- the API -------------------------------------------------------------------------------------

    def user_stocks(self, account: str, password: str, client_order_id: str | None = None) -> dict:
        """Holdings in the course API's shape (``shares`` in lots, ``beginning_price`` = average cost).

        Extra keys the course server lacks: ``cash``, ``available_cash`` (cash not reserved by pending buys),
        ``market_date``, ``orders`` (the account's last :data:`RECENT_ORDERS` orders) and, when the request
        names a ``client_order_id``, ``order``: that order or ``null`` — how a client learns the fate of an
        order whose reply it lost.
        """
        self.authenticate(account, password)
        with self._read() as db:
            user = db.execute("SELECT * FROM users WHERE account=?", (account,)).fetchone()
            held = db.execute("SELECT * FROM holdings WHERE account=? ORDER BY code", (account,)).fetchall()
            orders = db.execute("SELECT * FROM orders WHERE account=? ORDER BY id DESC LIMIT ?", (account, RECENT_ORDERS)).fetchall()
            wanted = db.execute("SELECT * FROM orders WHERE account=? AND client_order_id=?",
                                (account, client_order_id)).fetchone() if client_order_id else None
            market = self.market_date(db)
        data = [
            {
                "stock_code_id": row["code"],
                "shares": row["shares"] // rules.LOT,
                "beginning_price": round(row["cost"] / row["shares"], 4),
                "reserved_shares": row["reserved"] // rules.LOT,
            }
            for row in held
        ]
        return {
            "result": "success",
            "data": data,
            "status": f"{len(data)} holdings",
            "cash": user["cash"],
            "available_cash": user["cash"] - user["reserved"],
            "market_date": market.isoformat(),
            "orders": [_order_dict(o) for o in reversed(orders)],
        } | ({"order": _order_dict(wanted) if wanted else None} if client_order_id else {})

    def place_order(self, side: str, account: str, password: str, code: str, lots_text: str, price_text: str,
                    client_order_id: str | None = None) -> dict:
        """Accept (reserve) or reject one buy/sell order; idempotent on ``client_order_id``.

        Credentials and the form's numbers are checked before the write lock is taken, so a slow or
        malformed request never delays anybody else's order.
        """
        code = code.strip()
        self.authenticate(account, password)
        if not self.prices.has(code):
            raise Rejected(f"unknown stock code {code!r}: this exchange has no prices for it")
        lots = _parse_lots(lots_text)
        try:
            price = rules.parse_price(price_text)
        except rules.OutOfRange as exc:
            raise Rejected(f"stock_price: {exc}", http_status=400) from None
        except ValueError as exc:
            raise Rejected(f"stock_price: {exc}") from None
        with self._write() as db:  # only quick look-ups from here on: the write lock is held
            if client_order_id:
                seen = db.execute("SELECT * FROM orders WHERE account=? AND client_order_id=?", (account, client_order_id)).fetchone()
                if seen is not None:
                    return _accepted_reply(seen, duplicate=True)
            market = self.market_date(db)
            reference = self.prices.close_on_or_before(code, market)
            if reference is None:
                raise Rejected(f"market closed for {code}: no trading data on or before {market}")
            problem = rules.order_problem(side, price, lots, reference[1])
            if problem:
                raise Rejected(problem)
            fill_on = next_trading_days(market, 1)[0]
            reserved = 0
            if side == rules.BUY:
                reserved = rules.buy_reservation(price, lots)
                user = db.execute("SELECT cash, reserved FROM users WHERE account=?", (account,)).fetchone()
                available = user["cash"] - user["reserved"]
                if reserved > available:
                    raise Rejected(f"insufficient cash: {lots} lots at {price} with fee need NT${reserved:,}, available NT${available:,}")
                db.execute("UPDATE users SET reserved=reserved+? WHERE account=?", (reserved, account))
            else:
                held = db.execute("SELECT shares, reserved FROM holdings WHERE account=? AND code=?", (account, code)).fetchone()
                free = 0 if held is None else held["shares"] - held["reserved"]
                if lots * rules.LOT > free:
                    raise Rejected(f"insufficient shares: selling {lots} lots of {code} but {free // rules.LOT} lots are held and not already being sold")
                db.execute("UPDATE holdings SET reserved=reserved+? WHERE account=? AND code=?", (lots * rules.LOT, account, code))
            cursor = db.execute(
                "INSERT INTO orders (account, client_order_id, side, code, lots, limit_price, placed_on, fill_on, status, reserved, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (account, client_order_id or None, side, code, lots, str(price), market.isoformat(), fill_on.isoformat(), reserved, _now()),
            )
            order = db.execute("SELECT * FROM orders WHERE id=?", (cursor.lastrowid,)).fetchone()
        return _accepted_reply(order)

    def audit(self) -> list[str]:
        """Problems with the books (empty = consistent): balances recomputed from the order history."""
        problems = []
        with self._read() as db:
            for user in db.execute("SELECT * FROM users").fetchall():
                a = user["account"]
                filled = db.execute(
                    "SELECT COALESCE(SUM(CASE WHEN side='buy' THEN -(value+fee) ELSE value-fee-tax END), 0) FROM orders "
                    "WHERE account=? AND status='filled'", (a,)).fetchone()[0]
                reserved = db.execute("SELECT COALESCE(SUM(reserved), 0) FROM orders WHERE account=? AND status='pending' AND side='buy'", (a,)).fetchone()[0]
                if user["cash"] != user["initial_cash"] + filled:
                    problems.append(f"{a}: cash {user['cash']} != initial {user['initial_cash']} + fills {filled}")
                if user["reserved"] != reserved:
                    problems.append(f"{a}: reserved cash {user['reserved']} != pending buys {reserved}")
                if not 0 <= user["reserved"] <= user["cash"]:
                    problems.append(f"{a}: reserved {user['reserved']} outside 0..cash {user['cash']}")
                net = dict(db.execute(
                    "SELECT code, SUM(CASE WHEN side='buy' THEN lots ELSE -lots END) * ? FROM orders "
                    "WHERE account=? AND status='filled' GROUP BY code", (rules.LOT, a)).fetchall())
                pending = dict(db.execute(
                    "SELECT code, SUM(lots) * ? FROM orders WHERE account=? AND status='pending' AND side='sell' GROUP BY code",
                    (rules.LOT, a)).fetchall())
                held = {r["code"]: r for r in db.execute("SELECT * FROM holdings WHERE account=?", (a,)).fetchall()}
                for code in set(net) | set(held):
                    shares = held[code]["shares"] if code in held else 0
                    if shares != net.get(code, 0):
                        problems.append(f"{a}/{code}: holding {shares} shares != filled net {net.get(code, 0)}")
                    locked = held[code]["reserved"] if code in held else 0
                    if locked != pending.get(code, 0) or locked > shares:
                        problems.append(f"{a}/{code}: reserved {locked} shares != pending sells {pending.get(code, 0)}")
        return problems

    def summary(self) -> dict:
        """Market date and counts, for ``stockllm exchange status``."""
        with self._read() as db:
            counts = dict(db.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall())
            users = db.execute("SELECT account, cash, reserved FROM users ORDER BY account").fetchall()
            return {
                "market_date": self.market_date(db).isoformat(),
                "next_fill_date": next_trading_days(self.market_date(db), 1)[0].isoformat(),
                "orders": counts,
                "accounts": [{"account": u["account"], "cash": u["cash"], "available_cash": u["cash"] - u["reserved"]} for u in users],
            }


def _order_dict(order: sqlite3.Row) -> dict:
    keys = ["id", "client_order_id", "side", "code", "lots", "limit_price", "placed_on", "fill_on", "status",
            "fill_price", "value", "fee", "tax", "reason"]
    return {k: order[k] for k in keys}


def _accepted_reply(order: sqlite3.Row, duplicate: bool = False) -> dict:
    note = " (already received; not placed twice)" if duplicate else ""
    return {
        "result": "success",
        "status": (f"reserved {order['side']} {order['lots']} lots of {order['code']} at {order['limit_price']}, "
                   f"fills at the {order['fill_on']} open if the limit allows (order {order['id']}){note}"),
        "order": _order_dict(order),
    }

