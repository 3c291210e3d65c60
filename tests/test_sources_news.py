"""newsapi ``/v2/everything`` against a real HTTP server on 127.0.0.1 replaying real newsapi replies.

``everything_1.json`` answers Chinese queries and ``everything_2.json`` English ones (real pages, about
another topic: no attributable newsapi reply about our companies exists); the error bodies are real
except ``rateLimited`` and ``maximumResultsReached``, written from newsapi's documented texts
(see ``fixtures/SOURCES_data_sources.md``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from replay_server import NEWS_PATH, NEWSAPI, ReplayServer, load

from stockllm import store
from stockllm.cli import main as stockllm_main
from stockllm.errors import StockLLMError
from stockllm.sources.http import HttpClient, Throttle
from stockllm.sources.news import SERVER_ERRORS, NewsStopped, RequestBudget, fetch_news
from stockllm.universe import resolve_code

KEY = "test-key-0123456789abcdef"
DAY = date(2026, 11, 28)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NEWSAPI_KEY", KEY)
    with ReplayServer() as replay:
        yield replay


def news(server: ReplayServer, data_dir: Path, codes: list[str], day: date = DAY, **kwargs):
    client = HttpClient("newsapi", server.url, Throttle(calls=1, period=0.0, jitter=0.0), retry_statuses=SERVER_ERRORS, sleep=lambda s: None)
    return fetch_news(data_dir, [resolve_code(c) for c in codes], client=client, today=day, **kwargs)


def urls(articles: list[dict]) -> list[str]:
    return [a["url"] for a in articles]


def test_each_company_gets_a_chinese_and_an_english_query_stored_in_the_writeup_shape(server, data_dir):
    report = news(server, data_dir, ["2353"])
    record = store.read_news(data_dir, "2353")
    assert list(record) == ["name_zh", "name_en", "news_zh", "news_en", "code"]
    assert (record["name_zh"], record["name_en"], record["code"]) == ("宏碁", "Acer", "2353")
    zh = load(NEWSAPI / "everything_1.json")["articles"]
    assert sorted(urls(record["news_zh"])) == sorted(a["url"] for a in zh)
    first = next(a for a in zh if a["url"] == record["news_zh"][-1]["url"])
    assert record["news_zh"][-1] == {"publishedAt": first["publishedAt"], "title": first["title"], "description": first["description"],
                                     "source": first["source"]["name"], "url": first["url"]}
    assert [a["publishedAt"] for a in record["news_zh"]] == sorted((a["publishedAt"] for a in record["news_zh"]), reverse=True)
    assert record["news_en"] and report.requests == 2
    queries = {h.params["language"]: h.params for h in server.hits}
    assert queries["zh"]["q"] == '"宏碁"' and queries["en"]["q"] == '"Acer"'
    assert queries["zh"]["from"] == "2026-10-31" and queries["zh"]["pageSize"] == "100"


def test_the_key_travels_in_a_header_and_is_never_written_or_printed(server, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("STOCKLLM_NEWSAPI_URL", server.url)
    monkeypatch.setenv("STOCKLLM_THROTTLE", "100/1")
    store.install_snapshot(data_dir, ["2353"])
    assert stockllm_main(["fetch", "--offline", "--news", "--data-dir", str(data_dir), "--codes", "2353"]) == 0
    assert all(h.headers["x-api-key"] == KEY and KEY not in json.dumps(h.params) for h in server.hits)
    out = capsys.readouterr()
    assert KEY not in out.out + out.err and "news: 1 companies" in out.err
    assert not [p for p in data_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


def test_a_missing_key_is_a_one_line_error_saying_to_set_it(data_dir, monkeypatch, capsys):
    monkeypatch.delenv("NEWSAPI_KEY", raising=False)
    assert stockllm_main(["fetch", "--offline", "--news", "--data-dir", str(data_dir), "--codes", "2353"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: NEWSAPI_KEY is not set") and "export NEWSAPI_KEY" in err


def test_new_articles_are_merged_with_the_stored_ones_without_duplicates(server, data_dir):
    news(server, data_dir, ["2353"], day=date(2026, 11, 27))
    stored = store.read_news(data_dir, "2353")
    stored["news_zh"].append({"publishedAt": "2023-01-01T00:00:00Z", "title": "older", "description": "", "source": "CNA", "url": "https://example.com/old"})
    store.write_news(data_dir, "2353", stored)
    news(server, data_dir, ["2353"])  # the next day: same articles again
    merged = store.read_news(data_dir, "2353")["news_zh"]
    assert len(urls(merged)) == len(set(urls(merged))) == len(load(NEWSAPI / "everything_1.json")["articles"]) + 1
    assert merged[-1]["title"] == "older"


def test_replies_are_cached_so_a_rerun_the_same_day_sends_nothing(server, data_dir):
    news(server, data_dir, ["2353", "2330"])
    assert server.count(NEWS_PATH) == 4
    again = news(server, data_dir, ["2353", "2330"])
    assert again.requests == 0 and server.count(NEWS_PATH) == 4
    assert (data_dir / "cache" / "news" / "2353" / "zh-2026-11-28.json").exists()


def test_the_request_counter_refuses_the_101st_request_of_a_utc_day(server, data_dir):
    counter = data_dir / "cache" / "newsapi_requests.json"
    store.atomic_write_json(counter, {"date": DAY.isoformat(), "requests": 99, "limit": 100})
    with pytest.raises(NewsStopped) as err:
        news(server, data_dir, ["2353", "2330"])
    assert server.count() == 1  # the 100th went out, the 101st did not
    message = str(err.value)
    assert "100 requests already sent today (UTC 2026-11-28)" in message and "after 00:00 UTC" in message and "\n" not in message
    assert "news stored for 1 of 2 companies" in message
    assert urls(store.read_news(data_dir, "2353")["news_zh"]) and not store.read_news(data_dir, "2353")["news_en"]
    assert json.loads(counter.read_text())["requests"] == 100
    assert RequestBudget(counter, today=date(2026, 11, 29)).used() == 0  # a new UTC day starts afresh


def test_the_counter_persists_across_runs(server, data_dir):
    news(server, data_dir, ["2353"])
    news(server, data_dir, ["2330"])
    assert RequestBudget(data_dir / "cache" / "newsapi_requests.json", today=DAY).used() == 4


@pytest.mark.parametrize("status, fixture, kind, expected", [
    (401, "error_ApiKeyInvalid.json", StockLLMError, "newsapi rejected the key in NEWSAPI_KEY (apiKeyInvalid: Your API key is invalid"),
    (401, "error_ApiKeyMissing.json", StockLLMError, "newsapi rejected the key in NEWSAPI_KEY (apiKeyMissing: Your API key is missing"),
    (400, "error_ParameterInvalid.json", StockLLMError, "newsapi refused the query for 2353 宏碁 (zh) (parameterInvalid: You are trying to request results too far in the past"),
    (429, "error_RateLimited.json", NewsStopped, "newsapi rate limit reached (rateLimited: You have made too many requests recently"),
])
def test_each_newsapi_error_body_gives_a_clear_one_line_message(server, data_dir, status, fixture, kind, expected):
    server.inject((status, load(NEWSAPI / fixture)))
    with pytest.raises(kind) as err:
        news(server, data_dir, ["2353"])
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert server.count() == 1  # errors are not retried: a retry would only burn the daily budget


def test_the_result_cap_keeps_what_is_stored_and_goes_on(server, data_dir):
    server.inject((426, load(NEWSAPI / "error_MaximumResultsReached.json")))
    report = news(server, data_dir, ["2353"])
    assert report.notes == ["newsapi result cap for 2353 宏碁 (zh): You have requested too many results. Developer accounts are limited "
                            "to a max of 100 results. Please upgrade to a paid plan if you need more results. — kept what was already stored"]
    record = store.read_news(data_dir, "2353")
    assert record["news_zh"] == [] and record["news_en"]


def test_the_real_invalid_key_reply_of_the_replay_server_stops_the_fetch(server, data_dir, monkeypatch):
    monkeypatch.setenv("NEWSAPI_KEY", "bad")
    with pytest.raises(StockLLMError, match="apiKeyInvalid"):
        news(server, data_dir, ["2353", "2330"])
    assert server.count() == 1 and store.read_news(data_dir, "2353") is None
