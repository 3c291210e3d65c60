"""Company news from newsapi.org ``/v2/everything``, stored per company in the write-up's JSON shape.

For each company one Chinese query (``language=zh``, its Chinese name) and one English query
(``language=en``, its English name, when known) cover the last :data:`LOOKBACK_DAYS` days — the free
("Developer") tier reaches back about a month, returns at most 100 results per query and allows 100
requests a day. Hence:

* one request per query (``pageSize=100``, page 1): 41 companies × 2 languages = 82 requests;
* a persistent counter ``cache/newsapi_requests.json`` (per UTC day, written atomically) refuses the
  101st request of the day; the fetch then stops and keeps every company already fetched;
* each reply is cached as ``cache/news/<code>/<lang>-<UTC day>.json``, so a re-run the same day sends
  nothing;
* articles are merged into ``news/<code>.json`` by URL, newest first, keeping ``publishedAt``, ``title``,
  ``description``, ``source`` (the outlet's name) and ``url``.

The key comes only from ``NEWSAPI_KEY`` and travels in the ``X-Api-Key`` header (never in a URL, a
message or a file). The client is plain ``requests`` through :mod:`.http` (``newsapi-python`` hardcodes
its host, so it could not be pointed at a replay server).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from .. import store
from ..errors import StockLLMError
from ..universe import Company
from .http import HttpClient, base_url, throttle_from_env

DAILY_LIMIT = 100
LOOKBACK_DAYS = 28
"""Days back each query reaches: never more than one calendar month (the free tier refuses older dates)."""
PAGE_SIZE = 100
KEY_ERRORS = {"apiKeyMissing", "apiKeyInvalid", "apiKeyDisabled", "apiKeyExhausted"}
SERVER_ERRORS = frozenset({500, 502, 503, 504})  # 429 is newsapi's "rateLimited": retrying only burns the budget


class NewsStopped(StockLLMError):
    """newsapi will not answer more today (our daily budget or its rate limit); what was fetched is kept."""


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


@dataclass
class RequestBudget:
    """Requests sent to newsapi on one UTC day, persisted so separate runs share the free tier's 100."""

    path: Path
    limit: int = DAILY_LIMIT
    today: date = field(default_factory=utc_today)

    def used(self) -> int:
        try:
            state = json.loads(Path(self.path).read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return 0
        return int(state.get("requests", 0)) if state.get("date") == self.today.isoformat() else 0

    def spend(self) -> None:
        """Count one request, or refuse it when today's budget is used up."""
        used = self.used()
        if used >= self.limit:
            raise NewsStopped(f"newsapi free tier: {used} requests already sent today (UTC {self.today}), the limit is {self.limit}; re-run after 00:00 UTC")
        store.atomic_write_json(Path(self.path), {"date": self.today.isoformat(), "requests": used + 1, "limit": self.limit})


@dataclass
class NewsReport:
    written: list[str] = field(default_factory=list)
    articles: int = 0
    requests: int = 0
    notes: list[str] = field(default_factory=list)


def news_client() -> HttpClient:
    """newsapi client: gentle throttle (5 requests/s), no retry of 429."""
    return HttpClient("newsapi", base_url("newsapi"), throttle_from_env(calls=5, period=1.0, jitter=0.1), retry_statuses=SERVER_ERRORS)


def fetch_news(
    data_dir: Path | str,
    companies: list[Company],
    *,
    client: HttpClient | None = None,
    today: date | None = None,
    daily_limit: int = DAILY_LIMIT,
) -> NewsReport:
    """Fetch Chinese and English news of ``companies`` into ``data_dir/news/<code>.json``.

    Raises :class:`NewsStopped` (after storing everything fetched) when the daily budget or newsapi's rate
    limit stops the run, and :class:`StockLLMError` for a missing/rejected key or a refused query.
    """
    key = os.environ.get("NEWSAPI_KEY", "").strip()
    if not key:
        raise StockLLMError("NEWSAPI_KEY is not set: get a free key at https://newsapi.org/register, then `export NEWSAPI_KEY=<key>` and re-run")
    data_dir = Path(data_dir)
    today = today or utc_today()
    client = client or news_client()
    client.before_request = RequestBudget(data_dir / "cache" / "newsapi_requests.json", daily_limit, today).spend
    report = NewsReport()
    sent_before = client.requests_sent
    try:
        for company in companies:
            record = _stored_record(data_dir, company)
            queried = False
            try:
                for lang, name in (("zh", company.name_zh), ("en", company.name_en)):
                    if name:
                        reply = _query(client, data_dir, company, lang, name, today, key, report)
                        record[f"news_{lang}"] = merge_articles(record[f"news_{lang}"], reply.get("articles", []))
                        queried = True
            finally:
                if queried:
                    store.write_news(data_dir, company.code, record)
                    report.written.append(company.code)
                    report.articles += len(record["news_zh"]) + len(record["news_en"])
    except NewsStopped as exc:
        done = f"news stored for {len(report.written)} of {len(companies)} companies"
        raise NewsStopped(f"{exc} ({done})") from None
    finally:
        report.requests = client.requests_sent - sent_before
    return report


def _stored_record(data_dir: Path, company: Company) -> dict:
    stored = store.read_news(data_dir, company.code) or {}
    return {
        "name_zh": company.name_zh,
        "name_en": company.name_en,
        "news_zh": stored.get("news_zh", []),
        "news_en": stored.get("news_en", []),
        "code": company.code,
    }


def _query(client: HttpClient, data_dir: Path, company: Company, lang: str, name: str, today: date, key: str, report: NewsReport) -> dict:
    """newsapi's reply for one company and language (cached per UTC day); errors → one-line messages."""
    path = data_dir / "cache" / "news" / company.code / f"{lang}-{today.isoformat()}.json"
    if path.exists():
        return json.loads(path.read_text("utf-8"))
    params = {
        "q": f'"{name}"',
        "searchIn": "title,description",
        "language": lang,
        "from": (today - timedelta(days=LOOKBACK_DAYS)).isoformat(),
        "sortBy": "publishedAt",
        "pageSize": PAGE_SIZE,
        "page": 1,
    }
    status, body = client.request_json("v2/everything", params, headers={"X-Api-Key": key})
    if not isinstance(body, dict):
        raise StockLLMError(f"newsapi answered HTTP {status} without a JSON body; check STOCKLLM_NEWSAPI_URL or re-run later")
    if body.get("status") == "ok":
        store.atomic_write_json(path, body)
        return body
    code = str(body.get("code", "unknown"))
    message = " ".join(str(body.get("message", "")).split())
    query = f"{company.code} {name} ({lang})"
    if code in KEY_ERRORS:
        raise StockLLMError(f"newsapi rejected the key in NEWSAPI_KEY ({code}: {message}); check it at https://newsapi.org/account")
    if code == "rateLimited":
        raise NewsStopped(f"newsapi rate limit reached ({code}: {message}); re-run after the limit resets")
    if code == "maximumResultsReached":
        report.notes.append(f"newsapi result cap for {query}: {message} — kept what was already stored")
        return {"articles": []}
    if code == "parameterInvalid":
        raise StockLLMError(f"newsapi refused the query for {query} ({code}: {message}); the free tier only reaches about {LOOKBACK_DAYS + 1} days back")
    raise StockLLMError(f"newsapi error for {query} ({code}, HTTP {status}): {message}")


def merge_articles(stored: list[dict], fetched: list[dict]) -> list[dict]:
    """Stored and newly fetched articles, one per URL (the newest copy wins), newest first.

    newsapi's placeholders for withdrawn articles (title ``[Removed]``) and articles without a URL are
    dropped: they carry no text and cannot be deduplicated.
    """
    by_url: dict[str, dict] = {a["url"]: a for a in stored if a.get("url")}
    for raw in fetched:
        article = {
            "publishedAt": raw.get("publishedAt") or "",
            "title": raw.get("title") or "",
            "description": raw.get("description") or "",
            "source": (raw.get("source") or {}).get("name") or "",
            "url": raw.get("url") or "",
        }
        if article["url"] and article["title"] != "[Removed]":
            by_url[article["url"]] = article
    return sorted(by_url.values(), key=lambda a: (a["publishedAt"], a["url"]), reverse=True)
