"""Walk-forward evaluation: every model forecasts from many days of a held-out period, from data up to that day.

How leakage is prevented (see ``docs/evaluation.md``):

* One evaluation period for all companies, from ``start`` to the end of the data (default: the last
  ``test_frac`` of the stored trading days, the dataset's default test fraction). A per-company period would
  let a model trained on one company's late days forecast another company on those same market days.
* Models learn (``fit``) only from days before ``fit_end``, which lies ``gap`` trading days before
  ``start`` — ``gap`` is the longest horizon evaluated, the dataset's split rule — so no target day of the
  period, nor any day next to it, is ever in training data.
* Origins are shared calendar dates (every ``stride``-th stored trading day from the one before ``start``), so
  every company and model is scored on the same days. At each origin a model receives the whole history up
  to and including the origin, and nothing after it, in a :class:`~stockllm.forecasters.base.ForecastRequest`
  that also names the window's ``past``: a window model (the LLM, LSTM, CNN) takes its own window from it.
* Forecasts are scored **by date**: day k of a forecast is compared with the stored row dated the k-th
  exchange trading day after the origin; a date without a stored row (a suspension, a gap in the data) is
  not scored, so a missing month is never scored as the next day.

All requests of a group of companies and one window go to a model in one
:func:`~stockllm.forecasters.base.predict_many` call (the LLM generates them in batches).
:func:`walk_companies` is a plain function of the companies' tables, the fitted models, their windows and the
:class:`Period`, so groups of companies can be walked in separate processes.

Every forecast is checked: with the model's own verdict when it gives one (``Forecast.info["valid"]`` and
``info["problems"]``, computed by the LLM on what it wrote: its dates and its field set), else with
:func:`stockllm.validation.validate_forecast`. Invalid ones are counted (and still scored: they are what the
model said); failures (an exception the model raised as a :class:`StockLLMError`, e.g. an unparseable LLM
answer, or the wrong number of days) are counted and left out of the error metrics, and each model is scored
against the random walk on exactly the points it answered.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import metrics, store
from .errors import StockLLMError
from .forecasters.base import Forecast, Forecaster, ForecastRequest, predict_many
from .forecasters.registry import refuse_if_trained_on
from .market import next_trading_days
from .universe import Company
from .validation import forecast_problems

if TYPE_CHECKING:
    from .engines import Engine

DEFAULT_TEST_FRAC = 0.1
"""Share of stored trading days held out when no ``start`` is given (the dataset's default ``--test-frac``)."""

BASELINE = "random_walk"
PRICE_FIELDS = ["open", "high", "low", "close"]
SIGNIFICANCE = 0.05
MIN_ANSWER_RATE = 0.95
"""A model that answered (parsed) fewer of its forecasts than this gets no verdict: its errors would be judged on
the forecasts it chose to answer."""

Window = tuple[int, int]


def parse_windows(text: str) -> list[Window]:
    """``"1:1,5:5"`` → ``[(1, 1), (5, 5)]`` (past:future trading days), refusing malformed or repeated ones."""
    windows: list[Window] = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+):(\d+)", part)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise StockLLMError(f"window {part!r} is not PAST:FUTURE with positive day counts; write e.g. --windows 1:1,5:5,20:5,60:20")
        window = (int(match[1]), int(match[2]))
        if window in windows:
            raise StockLLMError(f"window {part} is listed twice in --windows; name each window once")
        windows.append(window)
    return windows


def window_name(window: Window) -> str:
    return f"{window[0]}:{window[1]}"


@dataclass(frozen=True)
class Skip:
    """A company (or one of its windows) left out of the evaluation, and why."""

    code: str
    window: str | None
    reason: str


@dataclass(frozen=True)
class Period:
    """The evaluation period every company shares.

    ``origins`` are the calendar dates forecasts are made from, the same for every company and model: every
    ``stride``-th stored trading day (over all companies) from the last one before ``start``, whose next
    trading day is the period's first target day.
    """

    start: str
    fit_end: str
    end: str
    origins: tuple[str, ...]
    stride: int = 1


@dataclass
class WalkForward:
    """Everything one evaluation run produced, before scoring.

    ``points``: one row per model × window × company × origin × scored horizon day (forecast and actual values).
    ``attempts``: one row per forecast asked for, with ``status`` valid / invalid / failed and the first problem.
    """

    points: pd.DataFrame
    attempts: pd.DataFrame
    skipped: list[Skip]
    windows: list[Window]
    models: list[str]
    start: str
    fit_end: str
    end: str
    stride: int = 1
    direction_only: list[str] = field(default_factory=list)
    prices: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class CompanyWalk:
    """What :func:`walk_company` produced for one company: ``POINT_COLUMNS`` and ``ATTEMPT_COLUMNS`` rows, the
    windows it was skipped for, and the seconds each model spent forecasting (validation included)."""

    points: list[tuple]
    attempts: list[tuple]
    skipped: list[Skip]
    predict_s: dict[str, float]


def load_prices(data_dir: Path, companies: list[Company]) -> tuple[dict[str, pd.DataFrame], list[Skip]]:
    """Traded rows (with a close) of each company's stored prices; companies without a price file are skipped."""
    prices, skipped = {}, []
    for company in companies:
        if not store.prices_path(data_dir, company.code).exists():
            skipped.append(Skip(company.code, None, f"no stored prices in {data_dir}/prices; run `stockllm fetch --offline`"))
            continue
        frame = store.read_prices(data_dir, company.code)
        prices[company.code] = frame.dropna(subset=["close"]).reset_index(drop=True)
    if not prices:
        raise StockLLMError(f"none of the {len(companies)} selected companies has stored prices in {data_dir}; run `stockllm fetch --offline` first")
    return prices, skipped


def _stored_days(prices: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every stored trading day of any company, ascending: the shared calendar of the evaluation."""
    return sorted(set().union(*(frame["date"] for frame in prices.values())))


def period_bounds(prices: Mapping[str, pd.DataFrame], start: str | None, gap: int, test_frac: float = DEFAULT_TEST_FRAC) -> tuple[str, str]:
    """(start, fit_end): the first day of the evaluation period and the first day models may not learn from.

    Both are stored trading days (the union over companies); ``fit_end`` is ``gap`` of them before ``start``.
    """
    days = _stored_days(prices)
    if start is None:
        first = min(max(len(days) - round(len(days) * test_frac), 1), len(days) - 1)  # dataset._boundaries' rule
    else:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", start):
            raise StockLLMError(f"--start {start!r} is not a date; write YYYY-MM-DD, e.g. --start 2026-01-02")
        first = int(np.searchsorted(days, start))
        if first >= len(days):
            raise StockLLMError(f"--start {start} is after the last stored day {days[-1]}; choose an earlier date")
    if first - gap < 1:
        raise StockLLMError(f"the evaluation period starting {days[first]} leaves no training days before it "
                            f"(needs {gap} gap days after some history, first stored day {days[0]}); choose a later --start")
    return days[first], days[first - gap]


def make_period(prices: Mapping[str, pd.DataFrame], start: str | None, gap: int, test_frac: float = DEFAULT_TEST_FRAC,
                stride: int = 1) -> Period:
    """The shared :class:`Period`: its bounds (:func:`period_bounds`) and every ``stride``-th origin date."""
    if stride < 1:
        raise StockLLMError(f"--stride {stride} is not a positive number of trading days; write e.g. --stride 5")
    start, fit_end = period_bounds(prices, start, gap, test_frac)
    days = _stored_days(prices)
    first = days.index(start)
    return Period(start, fit_end, days[-1], tuple(days[first - 1::stride]), stride)


def walk_forward(prices: Mapping[str, pd.DataFrame], models: Mapping[str, Forecaster], windows: list[Window],
                 start: str | None = None, test_frac: float = DEFAULT_TEST_FRAC,
                 progress: Callable[[str], None] | None = None, skipped: list[Skip] | None = None,
                 stride: int = 1, engine: "Engine | None" = None) -> WalkForward:
    """Fit every model, then run it over every window, company and shared origin of the period (module docstring);
    ``engine`` (:mod:`stockllm.engines`) decides where the companies are walked, this process by default."""
    say = progress or (lambda _message: None)
    if BASELINE not in models:
        raise StockLLMError(f"the evaluation needs the {BASELINE} model: every relative MAE and Diebold-Mariano test is relative to it")
    gap = max(horizon for _, horizon in windows)
    period = make_period(prices, start, gap, test_frac, stride)
    skipped = list(skipped or [])
    say(f"evaluation period {period.start} → {period.end}; models learn from days before {period.fit_end} (gap {gap} trading days); "
        f"{len(period.origins)} origin dates (every {stride} trading day{'s' if stride > 1 else ''})")

    training = {code: frame[frame["date"] < period.fit_end].reset_index(drop=True) for code, frame in prices.items()}
    ready, timings = _fit_all(models, {code: frame for code, frame in training.items() if len(frame)}, windows, period.fit_end, skipped, say)

    points: list[tuple] = []
    attempts: list[tuple] = []
    if engine is None:
        from .engines import LocalEngine

        engine = LocalEngine()
    for walked in engine.walk(prices, models, ready, period, say):
        points.extend(walked.points)
        attempts.extend(walked.attempts)
        skipped.extend(walked.skipped)
        for name, seconds in walked.predict_s.items():
            timings[name]["predict_s"] += seconds
    attempts_frame = pd.DataFrame(attempts, columns=ATTEMPT_COLUMNS)
    for name, count in attempts_frame["model"].value_counts().items():
        timings[name]["forecasts"] = int(count)
    for window in windows:
        say(f"  window {window_name(window)}: {int((attempts_frame['window'] == window_name(window)).sum())} forecasts")

    return WalkForward(
        points=pd.DataFrame(points, columns=POINT_COLUMNS), attempts=attempts_frame,
        skipped=skipped, windows=list(windows), models=list(models), start=period.start, fit_end=period.fit_end,
        end=period.end, stride=stride,
        direction_only=[name for name, model in models.items() if getattr(model, "direction_only", False)],
        prices=dict(prices), timings=timings,
    )


def _fit_all(models: Mapping[str, Forecaster], training: Mapping[str, pd.DataFrame], windows: list[Window], fit_end: str,
             skipped: list[Skip], say: Callable[[str], None]) -> tuple[dict[str, list[Window]], dict[str, dict[str, float]]]:
    """Fit every model on the training histories and prepare its windows; (usable windows, timings) per model.

    A window a model cannot learn (too little history) is skipped for that model and listed, not fatal.
    """
    ready: dict[str, list[Window]] = {}
    timings: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        refuse_if_trained_on(name, model, fit_end, "the gap before the evaluation period")
        began = time.perf_counter()
        model.fit(training)
        ready[name] = []
        for window in windows:
            try:
                if hasattr(model, "prepare"):
                    model.prepare(*window)
                ready[name].append(window)
            except StockLLMError as exc:
                skipped.append(Skip("*", window_name(window), f"model {name}: {exc}"))
        timings[name] = {"fit_s": time.perf_counter() - began, "predict_s": 0.0, "forecasts": 0}
        say(f"  {name}: fitted in {timings[name]['fit_s']:.1f} s")
    return ready, timings


@dataclass(frozen=True)
class _Origin:
    """One origin of one company and window: its row, the calendar dates it forecasts, their stored rows (or None)."""

    row: int
    dates: list[str]
    rows: list[int | None]


def _origins(dates: list[str], at: Mapping[str, int], period: Period, window: Window) -> list[_Origin]:
    """The company's origins for ``window``: shared origin dates it has a row on, with ``past`` rows up to it,
    whose last target date is not after its last stored day and with at least one target day stored."""
    past, horizon = window
    out = []
    for day in period.origins:
        row = at.get(day)
        if row is None or row < past - 1:
            continue
        targets = [d.isoformat() for d in next_trading_days(day, horizon)]
        if targets[-1] > dates[-1]:
            break
        rows = [at.get(d) for d in targets]
        if any(r is not None for r in rows):
            out.append(_Origin(row, targets, rows))
    return out


def walk_company(code: str, frame: pd.DataFrame, models: Mapping[str, Forecaster], windows: Mapping[str, Sequence[Window]],
                 period: Period) -> CompanyWalk:
    """Forecast one company from every shared origin of ``period`` with every (fitted) model, for the windows
    ``windows[model name]`` lists (:func:`walk_companies` of one company)."""
    return walk_companies({code: frame}, models, windows, period)[0]


def walk_companies(frames: Mapping[str, pd.DataFrame], models: Mapping[str, Forecaster], windows: Mapping[str, Sequence[Window]],
                   period: Period) -> list[CompanyWalk]:
    """:func:`walk_company` for several companies at once, in ``frames`` order, with one :func:`predict_many` call
    per model and window for all of them: a batching model (the LLM) then fills its batches with the origins of
    many companies (a 5-day window every 5th day gives a company about 33 origins, one full batch and a batch
    of one), and its retries of all those companies run together. Each company's walk is what it would be alone;
    a call's seconds are shared among the companies by their number of requests."""
    walks = {code: CompanyWalk([], [], [], {name: 0.0 for name in models}) for code in frames}
    for window in dict.fromkeys(w for name in models for w in windows[name]):
        jobs = [job for code, frame in frames.items() if (job := _company_job(code, frame, window, period, walks[code])) is not None]
        for name, model in models.items():
            if window in windows[name] and jobs:
                began = time.perf_counter()
                _forecast_origins(model, name, window_name(window), [(walks[job.code], job) for job in jobs])
                seconds = time.perf_counter() - began
                total = sum(len(job.requests) for job in jobs)
                for job in jobs:
                    walks[job.code].predict_s[name] += seconds * len(job.requests) / total
    return [walks[code] for code in frames]


@dataclass(frozen=True)
class _Job:
    """One company's requests for one window, with their origins and the company's stored prices."""

    code: str
    requests: list[ForecastRequest]
    origins: list[_Origin]
    actual: np.ndarray


def _company_job(code: str, frame: pd.DataFrame, window: Window, period: Period, walked: CompanyWalk) -> _Job | None:
    """The company's requests for ``window``, or None with the reason added to ``walked.skipped``."""
    dates = frame["date"].tolist()
    wname = window_name(window)
    if dates[-1] < period.start:
        walked.skipped.append(Skip(code, wname, f"no stored day on or after {period.start} (data end {dates[-1]})"))
        return None
    origins = _origins(dates, {day: i for i, day in enumerate(dates)}, period, window)
    if not origins:
        walked.skipped.append(Skip(code, wname, f"too little history: {len(frame)} traded days, "
                                                f"{len(frame) - int(np.searchsorted(dates, period.start))} in the period; window {wname} needs {window[0]} input days before and {window[1]} after an origin"))
        return None
    requests = [ForecastRequest(frame.iloc[: o.row + 1], window[1], code, window[0]) for o in origins]
    return _Job(code, requests, origins, frame[PRICE_FIELDS].to_numpy(float))


def _forecast_origins(model: Forecaster, name: str, wname: str, jobs: list[tuple[CompanyWalk, _Job]]) -> None:
    """Ask ``model`` for every request of ``jobs`` at once and add the attempts and scored points to each walk."""
    min_history = getattr(model, "min_history", 1)
    answers = iter(predict_many(model, [r for _, job in jobs for r in job.requests if len(r.history) >= min_history]))
    for walked, job in jobs:
        key = (name, wname, job.code)
        for request, origin in zip(job.requests, job.origins):
            day = request.history["date"].iat[-1]
            if len(request.history) < min_history:
                status, problem, forecast = "failed", f"needs {min_history} days of history, has {len(request.history)}", None
            else:
                status, problem, forecast = _judge(next(answers), request.horizon, job.actual[origin.row, 3], origin.dates)
            walked.attempts.append((*key, day, status, problem))
            if forecast is not None:
                walked.points.extend(_points((*key, day), forecast, job.actual[origin.row, 3], origin, job.actual, status == "valid"))


POINT_COLUMNS = ["model", "window", "code", "origin", "step", "target_date", "origin_close",
                 "f_open", "f_high", "f_low", "f_close", "f_capacity", "f_lo", "f_hi", "f_direction",
                 "open", "high", "low", "close", "valid"]
ATTEMPT_COLUMNS = ["model", "window", "code", "origin", "status", "problem"]


def _points(key: tuple, forecast: Forecast, origin_close: float, origin: _Origin, actual: np.ndarray, valid: bool) -> list[tuple]:
    """One ``POINT_COLUMNS`` row per forecast day that has a stored row on its date: what the model said beside
    what happened.

    The called direction is the sign of the forecast close minus the origin's close, or the model's own
    ``info["direction"]`` for direction-only models.
    """
    f = forecast.frame
    nothing = np.full(len(f), np.nan)
    said = np.column_stack([f[c].to_numpy(float) for c in PRICE_FIELDS])
    volume = f["capacity"].to_numpy(float) if "capacity" in f.columns else nothing
    lo, hi = (f["close_lo"].to_numpy(float), f["close_hi"].to_numpy(float)) if forecast.has_interval() else (nothing, nothing)
    direction = forecast.info.get("direction")
    return [(*key, k + 1, origin.dates[k], origin_close, *said[k], volume[k], lo[k], hi[k],
             float(np.sign(direction if direction is not None else said[k, 3] - origin_close)), *actual[row], valid)
            for k, row in enumerate(origin.rows) if row is not None]


def _judge(answer: Forecast | Exception, horizon: int, previous_close: float, expected: list[str]):
    """(status, first problem, forecast or None) of one answer.

    A model that judged its own answer (``info["valid"]``: the LLM, on the dates and fields it wrote) is taken
    at its word; the table it returns is rebuilt on the calendar's dates with NaN for fields it does not
    forecast, which re-validating would misjudge both ways.
    """
    if isinstance(answer, Exception):
        return "failed", str(answer), None
    closes = answer.frame["close"].to_numpy(float) if "close" in answer.frame.columns else np.array([])
    if len(closes) != horizon or not np.all(np.isfinite(closes)):
        return "failed", f"gave {len(closes)} usable days instead of {horizon}", None
    problems = forecast_problems(answer, previous_close, expected)
    return ("invalid", problems[0], answer) if problems else ("valid", "", answer)


# --- scoring -----------------------------------------------------------------------------------------

def _scale_by_company(rows: pd.DataFrame, column: str) -> pd.Series:
    """The random walk's MAE of ``column`` per company on the scored points (the relative MAE's denominators)."""
    return (rows[f"rw_{column}"] - rows[column]).abs().groupby(rows["code"]).mean()


def _dm_against_baseline(rows: pd.DataFrame, horizon: int, stride: int) -> metrics.DMResult:
    """Diebold-Mariano of the model vs the random walk on close errors scaled per company, weighed like the relative MAE.

    The loss difference of a forecast day is (|model error| − |random walk error|) / the random walk's MAE for
    that company. Companies move together on the same day, so they are not pooled as independent: the
    differences are summed per origin date, giving one series over dates, and each date's sum is divided by
    the mean number of scored forecast days per date. A date thus weighs by how many forecasts it holds, and the
    series' mean is exactly the pooled mean difference, i.e. relative MAE − 1: test and effect size weigh every
    forecast like the relative MAE does, so their signs agree. Forecasts overlap when ``stride`` < ``horizon``:
    the test allows for ``ceil(horizon / stride)`` origins of dependence.
    """
    scale = _scale_by_company(rows, "close").replace(0.0, np.nan)
    difference = ((rows["f_close"] - rows["close"]).abs() - (rows["rw_close"] - rows["close"]).abs()) / rows["code"].map(scale)
    by_date = difference.groupby(rows["origin"]).agg(["sum", "count"]).sort_index()
    by_date = by_date[by_date["count"] > 0]
    weighted = by_date["sum"] / by_date["count"].mean()
    return metrics.diebold_mariano_differences(weighted.to_numpy(), horizon=math.ceil(horizon / stride))


def _error_metrics(rows: pd.DataFrame, horizon: int, stride: int, is_baseline: bool) -> dict:
    """MAE/RMSE/MAPE/relative MAE of close, relative MAE of each OHLC field, per-step errors and the DM test vs
    the random walk."""
    error = rows["f_close"] - rows["close"]
    out = {
        "mae": metrics.mae(error), "rmse": metrics.rmse(error), "mape": metrics.mape(rows["f_close"], rows["close"]),
        "mase": _mase(rows, "close"),
        "mase_ohlc": {column: _mase(rows, column) for column in PRICE_FIELDS},
        "by_step": {
            int(step): {"mape": metrics.mape(group["f_close"], group["close"]), "mase": _mase(group, "close")}
            for step, group in rows.groupby("step")
        },
    }
    if not is_baseline:
        dm = _dm_against_baseline(rows, horizon, stride)
        out["dm"] = {"statistic": dm.statistic, "p_value": dm.p_value, "dates": dm.n, "mean_loss_difference": dm.mean_difference,
                     "weighting": "forecast days per origin date"}
    return out


def _mase(rows: pd.DataFrame, column: str) -> float:
    groups = (((g[f"f_{column}"] - g[column]).to_numpy(), (g[f"rw_{column}"] - g[column]).to_numpy()) for _, g in rows.groupby("code"))
    return metrics.relative_mae(groups)


def score(result: WalkForward) -> dict:
    """Metrics per window and model (the ``metrics.json`` ``windows`` object); definitions in docs/evaluation.md.

    ``mase`` is the relative MAE (:func:`metrics.relative_mae`), kept under its old key for existing readers.
    """
    keys = ["window", "code", "origin", "step"]
    baseline = result.points[result.points["model"] == BASELINE]
    baseline = baseline[keys + [f"f_{c}" for c in PRICE_FIELDS]].rename(columns={f"f_{c}": f"rw_{c}" for c in PRICE_FIELDS})
    out: dict[str, dict] = {}
    for window in result.windows:
        wname, horizon = window_name(window), window[1]
        out[wname] = {}
        for name in result.models:
            attempts = result.attempts[(result.attempts["model"] == name) & (result.attempts["window"] == wname)]
            if attempts.empty:
                continue
            counts = attempts["status"].value_counts()
            entry: dict = {
                "forecasts": int(len(attempts)),
                "valid": int(counts.get("valid", 0)), "invalid": int(counts.get("invalid", 0)), "failed": int(counts.get("failed", 0)),
                "answer_rate": float(1 - counts.get("failed", 0) / len(attempts)),
                "failure_reasons": attempts.loc[attempts["status"] == "failed", "problem"].str[:120].value_counts().head(5).to_dict(),
                "invalid_reasons": attempts.loc[attempts["status"] == "invalid", "problem"].str[:120].value_counts().head(5).to_dict(),
            }
            rows = result.points[(result.points["model"] == name) & (result.points["window"] == wname)]
            if not rows.empty:
                direction = metrics.direction_score(rows["f_direction"], rows["close"] - rows["origin_close"])
                entry["direction"] = {"accuracy": direction.accuracy, "majority": direction.majority, "mcc": direction.mcc,
                                      "coverage": direction.coverage, "n": direction.n}
                if rows["f_lo"].notna().any():
                    has = rows.dropna(subset=["f_lo", "f_hi"])
                    entry["coverage80"] = metrics.coverage(has["close"], has["f_lo"], has["f_hi"])
                    entry["coverage80_by_step"] = {int(s): metrics.coverage(g["close"], g["f_lo"], g["f_hi"]) for s, g in has.groupby("step")}
                if name in result.direction_only:
                    entry["direction_only"] = True
                else:
                    paired = rows.merge(baseline, on=keys, how="inner")
                    if not paired.empty:
                        entry.update(_error_metrics(paired, horizon, result.stride, name == BASELINE))
            out[wname][name] = entry
    return out


def verdicts(scores: dict) -> list[str]:
    """Plain sentences: per window, which models beat the random walk — or that none did.

    A model beats (or is worse than) the random walk when its DM test has p < 0.05 and both its mean loss
    difference and its relative MAE − 1 have that sign, and it answered at least ``MIN_ANSWER_RATE`` of its
    forecasts; a model that answered fewer gets no verdict and is named as such.
    """
    lines = []
    for wname, models in scores.items():
        tested = {name: m for name, m in models.items() if "dm" in m and not math.isnan(m["dm"]["p_value"])}
        unanswered = sorted(name for name, m in tested.items() if m["answer_rate"] < MIN_ANSWER_RATE)
        judged = {name: m for name, m in tested.items() if name not in unanswered}

        def significant(m: dict, sign: int) -> bool:
            return m["dm"]["p_value"] < SIGNIFICANCE and np.sign(m["dm"]["mean_loss_difference"]) == sign == np.sign(m["mase"] - 1)

        better = sorted((m["dm"]["p_value"], name) for name, m in judged.items() if significant(m, -1))
        worse = sorted(name for name, m in judged.items() if significant(m, 1))
        if better:
            names = ", ".join(f"{name} (rel. MAE {models[name]['mase']:.3f}, p = {p:.3g})" for p, name in better)
            lines.append(f"Window {wname}: {names} beat the random walk at the 5% level.")
        elif judged:
            closest = min(judged, key=lambda n: judged[n]["mase"])
            m = judged[closest]
            lines.append(f"Window {wname}: no model beats the random walk at the 5% level; the lowest relative MAE is {closest}'s "
                         f"({m['mase']:.3f}, DM statistic {m['dm']['statistic']:+.2f}, p = {m['dm']['p_value']:.3g}).")
        elif not unanswered:
            lines.append(f"Window {wname}: no model could be tested against the random walk.")
        if worse:
            lines.append(f"Window {wname}: significantly worse than the random walk (p < 0.05): {', '.join(worse)}.")
        for name in unanswered:
            m = models[name]
            lines.append(f"Window {wname}: no verdict for {name}: it answered {m['answer_rate']:.1%} of its forecasts, under the "
                         f"{MIN_ANSWER_RATE:.0%} a verdict needs (relative MAE {m['mase']:.3f} on the ones it answered).")
    return lines


def run_evaluation(data_dir: Path, companies: list[Company], windows: list[Window], specs: list[str],
                   start: str | None = None, progress: Callable[[str], None] | None = None,
                   stride: int = 1, backend: str = "auto", precision: str = "auto", engine: "Engine | None" = None) -> tuple[WalkForward, dict]:
    """Load prices, build the named models (the random walk is always added; an LLM reads its news context from
    ``data_dir``), walk forward and score."""
    from .forecasters.registry import make_forecaster

    say = progress or (lambda _message: None)
    if BASELINE not in specs:
        specs = [BASELINE, *specs]
        say(f"adding {BASELINE}: every relative metric is measured against it")
    prices, skipped = load_prices(Path(data_dir), companies)
    models = {spec: make_forecaster(spec, data_dir=Path(data_dir), backend=backend, precision=precision) for spec in specs}
    result = walk_forward(prices, models, windows, start=start, progress=say, skipped=skipped, stride=stride, engine=engine)
    return result, score(result)
