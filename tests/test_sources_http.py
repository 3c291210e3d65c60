"""The shared HTTP layer: throttle (fake clock), retries with backoff, unreachable hosts, env overrides.

Requests go to a real HTTP server on 127.0.0.1 (``replay_server``); time is faked only for the throttle.
"""

from __future__ import annotations

import random
import socket

import pytest
from replay_server import TWSE_PATH, ReplayServer

from stockllm.errors import StockLLMError
from stockllm.sources.http import HttpClient, SourceUnreachable, Throttle, base_url, throttle_from_env

PARAMS = {"date": "20260801", "stockNo": "2330", "response": "json"}


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fake_throttle(clock: FakeClock, seed: int = 0) -> Throttle:
    return Throttle(calls=3, period=5.0, jitter=0.5, clock=clock.time, sleep=clock.sleep, rng=random.Random(seed))


def no_wait_client(url: str, **kwargs) -> HttpClient:
    sleeps: list[float] = []
    client = HttpClient("TWSE", url, Throttle(calls=1, period=0.0, jitter=0.0), sleep=sleeps.append, **kwargs)
    client.sleeps = sleeps  # the backoff delays it would have slept
    return client


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_throttle_allows_at_most_three_requests_in_any_five_seconds():
    clock = FakeClock()
    throttle = fake_throttle(clock)
    stamps = []
    for _ in range(12):
        throttle.wait()
        stamps.append(clock.now)
    assert stamps[:3] == [0.0, 0.0, 0.0]  # a burst of three is allowed
    assert all(later - earlier >= 5.0 for earlier, later in zip(stamps, stamps[3:]))


def test_throttle_waits_carry_up_to_half_a_second_of_random_jitter():
    clock = FakeClock()
    throttle = fake_throttle(clock)
    for _ in range(12):
        throttle.wait()
    extra = [s - 5.0 for s in clock.sleeps]  # a burst of three, then a wait for the 5 s window plus jitter
    assert len(extra) == 3 and all(0.0 <= e <= 0.5 for e in extra)
    assert len({round(e, 6) for e in extra}) > 1  # not a regular, bot-like beat


def test_throttle_does_not_wait_after_an_idle_period_and_reports_its_waits():
    clock = FakeClock()
    told: list[float] = []
    throttle = fake_throttle(clock)
    throttle.on_wait = told.append
    for _ in range(3):
        assert throttle.wait() == 0.0
    waited = throttle.wait()
    assert waited >= 5.0 and told == [waited]
    clock.now += 60
    assert throttle.wait() == 0.0


def test_every_request_waits_on_the_throttle():
    clock = FakeClock()
    with ReplayServer() as server:
        client = HttpClient("TWSE", server.url, fake_throttle(clock))
        for _ in range(7):
            status, body = client.request_json(TWSE_PATH, PARAMS)
            assert status == 200 and body["stat"] == "OK"
    assert server.count() == 7
    assert len(clock.sleeps) == 2 and clock.now >= 10.0  # requests 4 and 7 waited for the window


def test_5xx_and_429_are_retried_with_exponential_backoff():
    with ReplayServer() as server:
        server.inject(503, 500, 429)
        client = no_wait_client(server.url, backoff=1.0)
        status, body = client.request_json(TWSE_PATH, PARAMS)
    assert status == 200 and body["total"] == 21
    assert server.count() == 4
    assert client.sleeps == [1.0, 2.0, 4.0]


def test_dropped_connections_timeouts_and_html_pages_are_retried():
    with ReplayServer() as server:
        client = no_wait_client(server.url, timeout=(2.0, 0.3))
        client.request_json(TWSE_PATH, PARAMS)  # the server has answered once: later failures are transient
        server.inject("drop", ("delay", 1.0), (200, b"<html>too many requests</html>"))
        status, body = client.request_json(TWSE_PATH, PARAMS)
    assert status == 200 and body["stat"] == "OK"
    assert server.count() == 5


def test_persistent_failure_is_a_one_line_error_after_all_retries():
    with ReplayServer() as server:
        server.inject(503, 503, 503)
        client = no_wait_client(server.url, retries=2)
        with pytest.raises(StockLLMError) as err:
            client.request_json(TWSE_PATH, PARAMS)
    message = str(err.value)
    assert "failed 3 times" in message and "HTTP 503" in message and "re-run" in message and "\n" not in message


def test_a_4xx_answer_is_returned_to_the_caller_without_retry():
    with ReplayServer() as server:
        server.inject((404, {"stat": "not found"}))
        client = no_wait_client(server.url)
        assert client.request_json(TWSE_PATH, PARAMS) == (404, {"stat": "not found"})
    assert server.count() == 1


def test_a_host_that_never_answers_is_unreachable_after_one_quick_retry():
    client = no_wait_client(closed_port_url(), backoff=30.0)
    with pytest.raises(SourceUnreachable) as err:
        client.request_json(TWSE_PATH, PARAMS)
    assert "cannot be reached" in str(err.value) and "connection refused" in str(err.value)
    assert client.requests_sent == 2 and client.sleeps == [1.0]  # capped: a refused port will not heal in 30 s


def test_base_urls_and_throttle_come_from_the_environment(monkeypatch):
    assert base_url("twse") == "https://www.twse.com.tw"
    monkeypatch.setenv("STOCKLLM_TWSE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("STOCKLLM_NEWSAPI_URL", "http://127.0.0.1:10")
    assert base_url("twse") == "http://127.0.0.1:9" and base_url("newsapi") == "http://127.0.0.1:10"
    assert (throttle_from_env().calls, throttle_from_env().period) == (3, 5.0)
    monkeypatch.setenv("STOCKLLM_THROTTLE", "10/0.5")
    throttle = throttle_from_env()
    assert (throttle.calls, throttle.period) == (10, 0.5) and throttle.jitter <= 0.05
    monkeypatch.setenv("STOCKLLM_THROTTLE", "fast")
    with pytest.raises(StockLLMError, match="CALLS/SECONDS"):
        throttle_from_env()
