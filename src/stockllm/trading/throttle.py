"""Failed-login throttling for the local exchange: per account and per client address.

Each password check costs ~100 ms of scrypt, so unthrottled guessing is both a brute-force attack and a way
to starve everybody else of CPU. After :attr:`FailedLogins.per_account` failures for one account, or
:attr:`FailedLogins.per_address` failures from one address, within :attr:`FailedLogins.window` seconds,
further attempts on that key are refused without checking the password until the oldest failure leaves
the window. A check in progress counts as a failure until it ends, so 40 guesses arriving at once start at
most :attr:`FailedLogins.per_account` checks, not 40. A password this server already verified is not affected (see ``Ledger.remembers``), so a
client that logged in before an attack keeps trading through it.

The counts live in memory (a restart forgets them) and at most :attr:`FailedLogins.max_keys` keys are
kept, the least recently failed dropped first, so a flood of made-up account names cannot exhaust memory.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from typing import Callable


class FailedLogins:
    """Sliding-window failure counts; used from the server's event loop only (no locking needed)."""

    def __init__(self, per_account: int = 5, per_address: int = 20, window: float = 60.0,
                 max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.per_account, self.per_address, self.window = per_account, per_address, window
        self.max_keys, self.clock = max_keys, clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._checking: Counter[tuple[str, str]] = Counter()

    def _limits(self, account: str, address: str) -> list[tuple[tuple[str, str], int]]:
        return [(("account", account), self.per_account), (("address", address), self.per_address)]

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until ``account`` may be tried again from ``address``; 0 when it may be tried now."""
        now, wait = self.clock(), 0.0
        for key, limit in self._limits(account, address):
            times, checking = self._failures.get(key, ()), self._checking[key]
            if len(times) + checking < limit:
                continue
            must_expire = limit - checking  # failures that must leave the window before another check
            wait = max(wait, 1.0 if must_expire <= 0 else times[-must_expire] + self.window - now)
        return max(wait, 0.0)

    def start(self, account: str, address: str) -> float:
        """Begin a password check: 0 when it may run (end it with :meth:`ended`), else :meth:`retry_after`."""
        wait = self.retry_after(account, address)
        if not wait:
            for key, _ in self._limits(account, address):
                self._checking[key] += 1
        return wait

    def ended(self, account: str, address: str, ok: bool) -> None:
        """End a check begun with :meth:`start`; a wrong password counts as a failure."""
        for key, _ in self._limits(account, address):
            self._checking[key] -= 1
            if not self._checking[key]:
                del self._checking[key]
        if not ok:
            self.failed(account, address)

    def failed(self, account: str, address: str) -> None:
        """Count one failed login of ``account`` from ``address``."""
        now = self.clock()
        for key, limit in self._limits(account, address):
            times = self._failures.pop(key, None) or deque(maxlen=limit)
            times.append(now)
            self._failures[key] = times  # re-inserted: most recently failed last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
