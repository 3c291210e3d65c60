"""The one HTTP layer every source goes through: throttle, retries with backoff, timeouts, base URLs.

Why one layer: TWSE bans clients that send more than about three requests every five seconds, the
exchanges answer transient 5xx/429 under load, and tests must point every client at a replay server on
127.0.0.1. Keeping those rules here means each source module only knows its endpoint and reply format.

* :class:`Throttle` — a sliding window (at most ``calls`` requests in any ``period`` seconds) plus random
  jitter on each wait; its clock, sleep and random generator are injectable so tests check it with a fake
  clock instead of real sleeps.
* :class:`HttpClient` — GET returning parsed JSON, retrying connection errors, timeouts, 5xx, 429 (unless
  the source says otherwise) and non-JSON pages with exponential backoff. A server that never answered
  (connection refused, DNS failure) raises :class:`SourceUnreachable` after a single retry so callers can
  fall back to offline data quickly instead of backing off for a minute.
* :func:`base_url` / :func:`throttle_from_env` — ``STOCKLLM_<SOURCE>_URL`` and ``STOCKLLM_THROTTLE``
  overrides (e.g. ``STOCKLLM_TWSE_URL=http://127.0.0.1:8000``, ``STOCKLLM_THROTTLE=3/0.05``).
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from ..errors import StockLLMError

DEFAULT_URLS = {
    "twse": "https://www.twse.com.tw",
    "tpex": "https://www.tpex.org.tw",
    "newsapi": "https://newsapi.org",
}
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "stockllm/0.1 (at most 3 requests per 5 s)"


class SourceUnreachable(StockLLMError):
    """The source never answered (connection refused, DNS failure): the network or the host is down."""


def base_url(source: str) -> str:
    """Base URL of ``source`` (``twse``, ``tpex``, ``newsapi``); ``STOCKLLM_<SOURCE>_URL`` overrides it."""
    return os.environ.get(f"STOCKLLM_{source.upper()}_URL", DEFAULT_URLS[source]).rstrip("/")


@dataclass
class Throttle:
    """At most ``calls`` requests in any ``period`` seconds; each forced wait gets up to ``jitter`` s extra.

    The jitter only lengthens waits, so the window guarantee holds while requests do not arrive at a
    perfectly regular (bot-like) beat. ``on_wait`` is told each wait before it happens (progress bars).
    """

    calls: int = 3
    period: float = 5.0
    jitter: float = 0.5
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    on_wait: Callable[[float], None] | None = None
    _recent: deque = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.calls < 1 or self.period < 0 or self.jitter < 0:
            raise StockLLMError(f"bad throttle {self.calls}/{self.period}s (jitter {self.jitter}s): use at least 1 call and non-negative seconds")

    def wait(self) -> float:
        """Block until one more request is allowed, record it, and return the seconds waited."""
        now = self.clock()
        waited = 0.0
        while len(self._recent) >= self.calls and now - self._recent[0] < self.period:
            delay = self._recent[0] + self.period - now
            delay += self.rng.uniform(0, self.jitter) if self.jitter else 0.0
            if self.on_wait:
                self.on_wait(delay)
            self.sleep(delay)
            waited += delay
            now = self.clock()
        while len(self._recent) >= self.calls:
            self._recent.popleft()
        self._recent.append(now)
        return waited


def throttle_from_env(calls: int = 3, period: float = 5.0, jitter: float = 0.5) -> Throttle:
    """A throttle with the given limits, or those of ``STOCKLLM_THROTTLE=CALLS/SECONDS`` when set.

    The override exists for replay servers in tests; against the real TWSE keep the default 3/5.
    """
    spec = os.environ.get("STOCKLLM_THROTTLE")
    if spec:
        try:
            calls_text, period_text = spec.split("/")
            calls, period = int(calls_text), float(period_text)
        except ValueError:
            raise StockLLMError(f"STOCKLLM_THROTTLE={spec!r} is not CALLS/SECONDS (e.g. 3/5); fix or unset it") from None
        jitter = min(jitter, period / 10)
    return Throttle(calls=calls, period=period, jitter=jitter)


@dataclass
class HttpClient:
    """A throttled, retrying JSON client for one source.

    ``request_json`` returns ``(status, body)`` for any final answer (the caller decides what a 4xx means:
    newsapi puts its error codes in 4xx JSON bodies); transient failures are retried ``retries`` times,
    sleeping ``backoff``, ``2 * backoff``, ``4 * backoff``… seconds (or the server's ``Retry-After``, if longer).
    ``before_request`` runs before every attempt that goes on the wire (newsapi's daily request budget).
    """

    name: str
    base_url: str
    throttle: Throttle = field(default_factory=Throttle)
    retries: int = 4
    backoff: float = 2.0
    timeout: tuple[float, float] = (10.0, 30.0)
    retry_statuses: frozenset[int] = TRANSIENT_STATUSES
    before_request: Callable[[], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    reached: bool = field(default=False, init=False)
    requests_sent: int = field(default=0, init=False)
    _retry_after: str | None = field(default=None, init=False, repr=False)

    def request_json(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        what = f"{self.name} {path}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self._delay(attempt, problem))
            self.throttle.wait()
            if self.before_request:
                self.before_request()
            self.requests_sent += 1
            try:
                response = self.session.get(url, params=params, headers={"User-Agent": USER_AGENT, **(headers or {})}, timeout=self.timeout)
            except requests.ConnectionError as exc:  # refused, DNS, reset, connect timeout
                problem = _reason(exc)
                if not self.reached and attempt >= 1:
                    raise SourceUnreachable(f"{self.name} ({self.base_url}) cannot be reached: {problem}") from None
                continue
            except requests.Timeout:
                problem = f"no answer within {self.timeout[1]:g} s"
                continue
            self.reached = True
            if response.status_code in self.retry_statuses:
                problem = f"HTTP {response.status_code}"
                self._retry_after = response.headers.get("Retry-After")
                continue
            try:
                body = response.json()
            except ValueError:
                if response.ok:  # TWSE answers an HTML page when it is blocking a client
                    problem = "a non-JSON page (the server may be blocking fast clients)"
                    continue
                body = None
            return response.status_code, body
        raise StockLLMError(f"{what} failed {self.retries + 1} times (last: {problem}); finished parts are kept, wait a few minutes and re-run to resume")

    def _delay(self, attempt: int, problem: str) -> float:
        delay = self.backoff * 2 ** (attempt - 1)
        if not self.reached:  # first contact: a refused connection or failed DNS lookup will not heal in seconds
            delay = min(delay, 1.0)
        if self._retry_after and problem.startswith("HTTP"):
            try:
                delay = max(delay, float(self._retry_after))
            except ValueError:
                pass  # an HTTP-date Retry-After: keep our own backoff
        self._retry_after = None
        return delay


def _reason(exc: Exception) -> str:
    """A short, one-line cause for a connection error (requests nests them several levels deep)."""
    text = str(exc)
    for marker in ("NameResolutionError", "Connection refused", "Connection reset", "timed out", "RemoteDisconnected"):
        if marker in text:
            return {"NameResolutionError": "DNS lookup failed", "RemoteDisconnected": "connection closed without an answer"}.get(marker, marker.lower())
    return exc.__class__.__name__
