"""Walk-forward evaluation: every model forecasts every day of a held-out period from data up to that day.

How leakage is prevented (see ``docs/evaluation.md``):

* One evaluation period for all companies, from ``start`` to the end of the data (default: the last
  ``test_frac`` of the stored trading days, the dataset's default test fraction). A per-company period would
  let a model trained on one company's late days forecast another company on those same market days.
* Models learn (``fit``) only from days before ``fit_end``, which lies ``gap`` trading days before
  ``start`` — ``gap`` is the longest horizon evaluated, the dataset's split rule — so no target day of the
  period, nor any day next to it, is ever in training data.
* At each origin a model receives the rows up to and including the origin and nothing else: the whole
  history for baselines that use it (``uses_full_history``), the last ``past`` rows for window models
  (the LLM, LSTM, CNN). Actuals are the next ``horizon`` stored rows (by position, since an unforeseen
  closure can shift a calendar date).

Every forecast is checked with :func:`stockllm.validation.validate_forecast`; invalid ones are counted (and
still scored: they are what the model said), failures (an exception the model raised as a
:class:`StockLLMError`, e.g. an unparseable LLM answer, or the wrong number of days) are counted and left
out of the error metrics, and each model is scored against the random walk on exactly the points it answered.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from . import metrics, store
from .errors import StockLLMError
from .forecasters.base import Forecast, Forecaster, future_dates
from .universe import Company
from .validation import validate_forecast

DEFAULT_TEST_FRAC = 0.1
"""Share of stored trading days held out when no ``start`` is given (the dataset's default ``--test-frac``)."""

BASELINE = "random_walk"
PRICE_FIELDS = ["open", "high", "low", "close"]
SIGNIFICANCE = 0.05

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


@dataclass
class WalkForward:
    """Everything one evaluation run produced, before scoring.

    ``points``: one row per model × window × company × origin × horizon day (forecast and actual values).
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
    direction_only: list[str] = field(default_factory=list)
    prices: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


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


def period_bounds(prices: Mapping[str, pd.DataFrame], start: str | None, gap: int, test_frac: float = DEFAULT_TEST_FRAC) -> tuple[str, str]:
    """(start, fit_end): the first day of the evaluation period and the first day models may not learn from.

    Both are stored trading days (the union over companies); ``fit_end`` is ``gap`` of them before ``start``.
    """
    days = sorted(set().union(*(frame["date"] for frame in prices.values())))
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


def _history_for(model: Forecaster, history: pd.DataFrame, past: int) -> pd.DataFrame:
    """What ``model`` is shown at an origin: the whole past for baselines, the last ``past`` rows for window models."""
    return history if getattr(model, "uses_full_history", False) else history.iloc[-past:]


def _check_training_range(name: str, model: Forecaster, fit_end: str) -> None:
    """Refuse a pre-trained model (the LLM) whose training data reach into the gap or the period."""
    trained_until = getattr(model, "trained_until", None)
    if trained_until and str(trained_until)[:10] >= fit_end:
        raise StockLLMError(f"model {name} was trained on data up to {str(trained_until)[:10]}, which is not before {fit_end} "
                            f"(the gap before the evaluation period); pass a later --start so it is judged on unseen days")


def walk_forward(prices: Mapping[str, pd.DataFrame], models: Mapping[str, Forecaster], windows: list[Window],
                 start: str | None = None, test_frac: float = DEFAULT_TEST_FRAC,
                 progress: Callable[[str], None] | None = None, skipped: list[Skip] | None = None) -> WalkForward:
    """Run every model over every window, company and origin of the evaluation period (module docstring)."""
    say = progress or (lambda _message: None)
    if BASELINE not in models:
        raise StockLLMError(f"the evaluation needs the {BASELINE} model: every MASE and Diebold-Mariano test is relative to it")
    gap = max(horizon for _, horizon in windows)
    start, fit_end = period_bounds(prices, start, gap, test_frac)
    end = max(frame["date"].iloc[-1] for frame in prices.values())
    skipped = list(skipped or [])
    say(f"evaluation period {start} → {end}; models learn from days before {fit_end} (gap {gap} trading days)")

    training = {code: frame[frame["date"] < fit_end].reset_index(drop=True) for code, frame in prices.items()}
    ready, timings = _fit_all(models, {code: frame for code, frame in training.items() if len(frame)}, windows, fit_end, skipped, say)

    points: list[tuple] = []
    attempts: list[tuple] = []
    for window in windows:
        past, horizon = window
        wname = window_name(window)
        for number, (code, frame) in enumerate(prices.items(), 1):
            say(f"  window {wname}: {code} ({number}/{len(prices)})")
            dates = frame["date"].tolist()
            first = int(np.searchsorted(dates, start))
            origins = range(max(first - 1, past - 1), len(frame) - horizon)
            if first >= len(frame):
                skipped.append(Skip(code, wname, f"no stored day on or after {start} (data end {dates[-1]})"))
                continue
            if not len(origins):
                skipped.append(Skip(code, wname, f"too little history: {len(frame)} traded days, {len(frame) - first} in the period; "
                                                 f"window {wname} needs {past} input days before and {horizon} after an origin"))
                continue
            closes = frame["close"].to_numpy(float)
            actual = frame[PRICE_FIELDS].to_numpy(float)
            for origin in origins:
                history = frame.iloc[: origin + 1]
                expected = future_dates(history, horizon)
                for name, model in models.items():
                    if window not in ready[name]:
                        continue
                    began = time.perf_counter()
                    status, problem, forecast = _forecast(model, _history_for(model, history, past), horizon, code, closes[origin], expected)
                    timings[name]["predict_s"] += time.perf_counter() - began
                    timings[name]["forecasts"] += 1
                    attempts.append((name, wname, code, dates[origin], status, problem))
                    if forecast is not None:
                        key = (name, wname, code, dates[origin])
                        points.extend(_points(key, forecast, closes[origin], dates[origin + 1: origin + 1 + horizon],
                                              actual[origin + 1: origin + 1 + horizon], status == "valid"))
        say(f"  window {wname}: {sum(1 for a in attempts if a[1] == wname)} forecasts")

    return WalkForward(
        points=pd.DataFrame(points, columns=POINT_COLUMNS),
        attempts=pd.DataFrame(attempts, columns=["model", "window", "code", "origin", "status", "problem"]),
        skipped=skipped, windows=list(windows), models=list(models), start=start, fit_end=fit_end, end=end,
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
        _check_training_range(name, model, fit_end)
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


POINT_COLUMNS = ["model", "window", "code", "origin", "step", "target_date", "origin_close",
                 "f_open", "f_high", "f_low", "f_close", "f_capacity", "f_lo", "f_hi", "f_direction",
                 "open", "high", "low", "close", "valid"]


def _points(key: tuple, forecast: Forecast, origin_close: float, target_dates: list[str], actual: np.ndarray, valid: bool) -> list[tuple]:
    """One ``POINT_COLUMNS`` row per forecast day: what the model said beside what happened.

    The called direction is the sign of the forecast close minus the origin's close, or the model's own
    ``info["direction"]`` for direction-only models.
    """
    f = forecast.frame
    horizon = len(target_dates)
    nothing = np.full(horizon, np.nan)
    said = np.column_stack([f[c].to_numpy(float) for c in PRICE_FIELDS])
    volume = f["capacity"].to_numpy(float) if "capacity" in f.columns else nothing
    lo, hi = (f["close_lo"].to_numpy(float), f["close_hi"].to_numpy(float)) if forecast.has_interval() else (nothing, nothing)
    direction = forecast.info.get("direction")
    return [(*key, k + 1, target_dates[k], origin_close, *said[k], volume[k], lo[k], hi[k],
             float(np.sign(direction if direction is not None else said[k, 3] - origin_close)), *actual[k], valid)
            for k in range(horizon)]


def _forecast(model: Forecaster, history: pd.DataFrame, horizon: int, code: str, previous_close: float,
              expected: list[str]):
    """(status, first problem, forecast or None) of one prediction."""
    min_history = getattr(model, "min_history", 1)
    if len(history) < min_history:
        return "failed", f"needs {min_history} days of history, has {len(history)}", None
    try:
        forecast = model.predict(history, horizon, code=code)
    except StockLLMError as exc:
        return "failed", str(exc), None
    closes = forecast.frame["close"].to_numpy(float) if "close" in forecast.frame.columns else np.array([])
    if len(closes) != horizon or not np.all(np.isfinite(closes)):
        return "failed", f"gave {len(closes)} usable days instead of {horizon}", None
    problems = validate_forecast(forecast.frame, previous_close, expected)
    return ("invalid", problems[0], forecast) if problems else ("valid", "", forecast)


# --- scoring -----------------------------------------------------------------------------------------

def _scale_by_company(rows: pd.DataFrame, column: str) -> pd.Series:
    """The random walk's MAE of ``column`` per company on the scored points (the MASE denominators)."""
    return (rows[f"rw_{column}"] - rows[column]).abs().groupby(rows["code"]).mean()


def _dm_against_baseline(rows: pd.DataFrame, horizon: int) -> metrics.DMResult:
    """Diebold-Mariano of the model vs the random walk on close errors scaled per company.

    Loss of a forecast = mean over its horizon days of |error| / (random walk's MAE for that company), so every
    company weighs the same; losses are averaged across companies per origin date (companies move together on
    the same day, so pooling them as independent would overstate significance), giving one loss-difference
    series over origin dates, tested with ``h = horizon`` (overlapping multi-day forecasts).
    """
    scale = _scale_by_company(rows, "close").replace(0.0, np.nan)
    per_row = pd.DataFrame({
        "origin": rows["origin"],
        "model": (rows["f_close"] - rows["close"]).abs() / rows["code"].map(scale),
        "baseline": (rows["rw_close"] - rows["close"]).abs() / rows["code"].map(scale),
    }).dropna()
    by_date = per_row.groupby("origin")[["model", "baseline"]].mean().sort_index()
    return metrics.diebold_mariano(by_date["model"], by_date["baseline"], horizon=horizon)


def _error_metrics(rows: pd.DataFrame, horizon: int, is_baseline: bool) -> dict:
    """MAE/RMSE/MAPE/MASE of close, MASE of each OHLC field, per-step errors and the DM test vs the random walk."""
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
        dm = _dm_against_baseline(rows, horizon)
        out["dm"] = {"statistic": dm.statistic, "p_value": dm.p_value, "dates": dm.n, "mean_loss_difference": dm.mean_difference}
    return out


def _mase(rows: pd.DataFrame, column: str) -> float:
    groups = (((g[f"f_{column}"] - g[column]).to_numpy(), (g[f"rw_{column}"] - g[column]).to_numpy()) for _, g in rows.groupby("code"))
    return metrics.relative_mae(groups)


def score(result: WalkForward) -> dict:
    """Metrics per window and model (the ``metrics.json`` ``windows`` object); definitions in docs/evaluation.md."""
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
                        entry.update(_error_metrics(paired, horizon, name == BASELINE))
            out[wname][name] = entry
    return out


def verdicts(scores: dict) -> list[str]:
    """Plain sentences: per window, which models beat the random walk (lower loss, DM p < 0.05) — or that none did."""
    lines = []
    for wname, models in scores.items():
        tested = {name: m for name, m in models.items() if "dm" in m and not math.isnan(m["dm"]["p_value"])}
        better = sorted((m["dm"]["p_value"], name) for name, m in tested.items()
                        if m["dm"]["mean_loss_difference"] < 0 and m["dm"]["p_value"] < SIGNIFICANCE)
        worse = sorted(name for name, m in tested.items() if m["dm"]["mean_loss_difference"] > 0 and m["dm"]["p_value"] < SIGNIFICANCE)
        if better:
            names = ", ".join(f"{name} (MASE {models[name]['mase']:.3f}, p = {p:.3g})" for p, name in better)
            lines.append(f"Window {wname}: {names} beat the random walk at the 5% level.")
        elif tested:
            closest = min(tested, key=lambda n: tested[n]["mase"])
            m = tested[closest]
            lines.append(f"Window {wname}: no model beats the random walk at the 5% level; the lowest MASE is {closest}'s "
                         f"({m['mase']:.3f}, DM statistic {m['dm']['statistic']:+.2f}, p = {m['dm']['p_value']:.3g}).")
        else:
            lines.append(f"Window {wname}: no model could be tested against the random walk.")
        if worse:
            lines.append(f"Window {wname}: significantly worse than the random walk (p < 0.05): {', '.join(worse)}.")
    return lines


def run_evaluation(data_dir: Path, companies: list[Company], windows: list[Window], specs: list[str],
                   start: str | None = None, progress: Callable[[str], None] | None = None) -> tuple[WalkForward, dict]:
    """Load prices, build the named models (the random walk is always added), walk forward and score."""
    from .forecasters.registry import make_forecaster

    say = progress or (lambda _message: None)
    if BASELINE not in specs:
        specs = [BASELINE, *specs]
        say(f"adding {BASELINE}: every relative metric is measured against it")
    prices, skipped = load_prices(Path(data_dir), companies)
    models = {spec: make_forecaster(spec) for spec in specs}
    result = walk_forward(prices, models, windows, start=start, progress=say, skipped=skipped)
    return result, score(result)
