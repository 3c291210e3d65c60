"""Write an evaluation's results: ``report.md``, ``metrics.json``, ``forecasts.csv``, ``ranking.json`` and PNG plots.

Rendering only: the numbers come from :func:`stockllm.evaluate.score` and, for ranking the companies (daily IC
and Rank IC, the top-k portfolio), from :func:`stockllm.ranking.write_ranking_report`. Every file goes through the store's
atomic writes (plots via a temp file + ``os.replace``), so an interrupted run never leaves half a report.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import ranking, store
from .evaluate import BASELINE, MIN_ANSWER_RATE, SIGNIFICANCE, WalkForward, verdicts, window_name
from .forecasters.base import Forecast

TAIWAN_UP, TAIWAN_DOWN = "#d62728", "#2ca02c"
"""Taiwan's convention: red candles rise, green ones fall."""


def write_report(result: WalkForward, scores: dict, out_dir: Path, command: str = "") -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = verdicts(scores)
    # The numbers first: a plot or ranking that fails must not cost a long run its metrics.
    store.atomic_write_json(out_dir / "metrics.json", _json_safe({
        "windows": scores,
        "verdict": lines,
        "settings": {"start": result.start, "end": result.end, "fit_end": result.fit_end, "stride": result.stride,
                     "windows": [window_name(w) for w in result.windows], "models": result.models,
                     "companies": sorted(result.prices), "command": command},
        "skipped": [{"code": s.code, "window": s.window, "reason": s.reason} for s in result.skipped],
        "timings": result.timings,
    }))
    store.atomic_write_text(out_dir / "forecasts.csv", result.points.to_csv(index=False))
    plots = {
        "error_by_horizon": _save_figure(_error_by_horizon(result, scores), out_dir / "error_by_horizon.png"),
        "calibration": _save_figure(_calibration(result, scores), out_dir / "calibration.png"),
        "example": _save_figure(_example_kline(result), out_dir / "example_forecasts.png"),
    }
    plots = {kind: path for kind, path in plots.items() if path is not None}
    plots.update(_model_klines(result, out_dir))
    ranked = ranking.write_ranking_report(result.points, result.prices, out_dir)
    if "plot" in ranked:
        plots["top-k portfolio"] = ranked["plot"]
    store.atomic_write_text(out_dir / "report.md", render_markdown(result, scores, lines, plots, command, ranked["markdown"].read_text("utf-8")))
    return {"report": out_dir / "report.md", "metrics": out_dir / "metrics.json", "forecasts": out_dir / "forecasts.csv",
            "ranking": ranked["json"], **plots}


def _json_safe(value):
    """NaN/inf → null (JSON has no NaN), numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}" + (" *" if value < SIGNIFICANCE else "")


def _origins_sentence(stride: int) -> str:
    if stride == 1:
        return "Every trading day of the period is a forecast origin."
    return (f"Every {stride}th trading day of the period is a forecast origin (`--stride {stride}`), the same dates for "
            f"every company and model.")


def render_markdown(result: WalkForward, scores: dict, lines: list[str], plots: dict[str, Path], command: str = "",
                    ranking_tables: str = "") -> str:
    evaluated = sorted({code for code in result.points["code"].unique()})
    out = [
        "# Walk-forward evaluation",
        "",
        f"Evaluation period **{result.start} → {result.end}**; models were fitted only on days before **{result.fit_end}** "
        f"(a gap of {max(h for _, h in result.windows)} trading days, the longest horizon). "
        f"{_origins_sentence(result.stride)} Each model saw only data up to its origin, and each forecast day is "
        f"scored against the stored row of its date (a day without one is not scored). "
        f"{len(evaluated)} companies evaluated, {len({s.code for s in result.skipped if s.window is None})} skipped entirely.",
        "",
    ]
    if command:
        out += ["Produced by:", "", "```", command, "```", ""]
    out += ["## Verdict", "", *[f"- {line}" for line in lines], "",
            "rel. MAE = the model's MAE relative to the random walk's on the same forecast days, per company, weighted by "
            "forecast days (`mase` in metrics.json; not Hyndman's MASE): below 1.000 is better than \"tomorrow = today\". "
            "DM = Diebold-Mariano test with the Harvey-Leybourne-Newbold correction against the random walk on one "
            "loss-difference series over origin dates, each date weighted by its number of forecast days, so the test "
            "weighs forecasts as rel. MAE does and its mean difference is rel. MAE − 1 (negative statistic = model "
            f"better; `*` = p < 0.05). A verdict needs an answer rate of at least {MIN_ANSWER_RATE:.0%} "
            "(answered = valid + invalid). Definitions: `docs/evaluation.md`.", ""]
    for window in result.windows:
        wname = window_name(window)
        models = scores.get(wname, {})
        out += [f"## Window {wname} (past {window[0]} → next {window[1]} trading days)", "",
                "| model | forecasts | valid | invalid | failed | answered | MAE (NT$) | RMSE (NT$) | MAPE % | rel. MAE | DM stat | DM p | direction acc. | majority | MCC | 80% coverage |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in models.items():
            dm = m.get("dm", {})
            d = m.get("direction", {})
            out.append("| " + " | ".join([
                name, str(m["forecasts"]), str(m["valid"]), str(m["invalid"]), str(m["failed"]), f"{m['answer_rate']:.1%}",
                _fmt(m.get("mae"), 2), _fmt(m.get("rmse"), 2), _fmt(m.get("mape"), 2), _fmt(m.get("mase")),
                _fmt(dm.get("statistic"), 2), _p(dm.get("p_value")),
                _fmt(d.get("accuracy")), _fmt(d.get("majority")), _fmt(d.get("mcc")), _fmt(m.get("coverage80")),
            ]) + " |")
        scored = {n: m for n, m in models.items() if "mase_ohlc" in m}
        if scored:
            out += ["", "rel. MAE by field (open, high, low, close; random walk = last day's candle):", "",
                    "| model | open | high | low | close |", "|---|---|---|---|---|"]
            out += [f"| {n} | " + " | ".join(_fmt(m["mase_ohlc"][c]) for c in ("open", "high", "low", "close")) + " |" for n, m in scored.items()]
        problems = [(n, kind, reason, count) for n, m in models.items() for kind in ("failure_reasons", "invalid_reasons")
                    for reason, count in m.get(kind, {}).items()]
        if problems:
            out += ["", "Failed or invalid forecasts (most common reasons):", ""]
            out += [f"- {n}: {'failed' if kind == 'failure_reasons' else 'invalid'} ×{count}: {reason}" for n, kind, reason, count in problems]
        out.append("")
    out += ["Direction accuracy counts only days where both the forecast and the actual close moved from the origin's close; "
            "`majority` is the share of the commoner actual direction on those days (what always guessing it would score). "
            "The random walk never calls a direction; `bestfour` (twstock BestFourPoint) is scored on direction only.", ""]
    if ranking_tables:
        out += ["## Ranking the companies: IC, Rank IC and a top-k portfolio", "",
                "Per origin date, the cross-sectional correlation of each model's predicted return (forecast close on the "
                "horizon's last day / origin close − 1) with the realised one: Pearson (IC) and Spearman (Rank IC), their "
                "mean, ICIR = mean / std and an overlap-aware t. Top-k: hold the k highest predicted returns, swap at most "
                "n_drop a day, next-open fills with Taiwan fees, tax, lots, ticks and limits, against the cost-free "
                "equal-weight universe (dividends are not counted in either). Definitions: `stockllm.ranking`; "
                "numbers also in `ranking.json`.", "", ranking_tables]
    if result.skipped:
        out += ["## Skipped", "", "| company | window | reason |", "|---|---|---|"]
        out += [f"| {s.code} | {s.window or 'all'} | {s.reason} |" for s in result.skipped]
        out.append("")
    out += ["## Run time", "", "| model | fit (s) | forecasts | predict (s) | forecasts/s |", "|---|---|---|---|---|"]
    for name, t in result.timings.items():
        rate = t["forecasts"] / t["predict_s"] if t["predict_s"] else math.nan
        out.append(f"| {name} | {t['fit_s']:.1f} | {int(t['forecasts'])} | {t['predict_s']:.1f} | {_fmt(rate, 0 if rate >= 10 else 2)} |")
    out.append("")
    if plots:
        out += ["## Plots", ""] + [f"![{kind}]({path.name})" for kind, path in plots.items()] + [""]
    return "\n".join(out)


# --- plots -------------------------------------------------------------------------------------------

def _colours(models: list[str]) -> dict[str, str]:
    """One colour per model across every plot; the random walk is black."""
    palette = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    others = [m for m in models if m != BASELINE]
    return {BASELINE: "black", **{m: palette[i % len(palette)] for i, m in enumerate(others)}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure, path: Path) -> Path | None:
    """Save a matplotlib figure atomically (temp file in the same folder, then ``os.replace``)."""
    if figure is None:
        return None
    return store.atomic_save_figure(figure, path, dpi=110, bbox_inches="tight")


def _by_step_panels(result: WalkForward, scores: dict, key: str, value, ylabel: str, title: str, decorate=None):
    """One panel per window holding ``scores[window][model][key]`` (a by-horizon-day mapping) per model.

    ``value`` reads the plotted number from one day's entry; ``decorate(ax, window)`` adds what a plot
    needs beyond the shared axes. ``None`` when no window has ``key``.
    """
    plt = _pyplot()
    windows = [w for w in result.windows if any(key in m for m in scores.get(window_name(w), {}).values())]
    if not windows:
        return None
    colours = _colours(result.models)
    figure, axes = plt.subplots(1, len(windows), figsize=(4.5 * len(windows), 3.6), squeeze=False)
    for ax, window in zip(axes[0], windows):
        for name, m in scores[window_name(window)].items():
            if key in m:
                steps = sorted(m[key])
                ax.plot(steps, [value(m[key][s]) for s in steps], marker="o", label=name,
                        linewidth=2.5 if name == BASELINE else 1.2, color=colours[name])
        if decorate is not None:
            decorate(ax, window)
        ax.set_title(f"window {window_name(window)}")
        ax.set_xlabel("trading days after the origin")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(title)
    return figure


def _error_by_horizon(result: WalkForward, scores: dict):
    """MAPE of the close by horizon day, one panel per window, one line per model."""
    def ticks(ax, window) -> None:
        ax.set_xticks(range(1, window[1] + 1, max(1, window[1] // 10)))

    return _by_step_panels(result, scores, "by_step", lambda day: day["mape"], "MAPE of close (%)",
                           "Close-price error by horizon day", ticks)


def _calibration(result: WalkForward, scores: dict):
    """Observed coverage of the 80% intervals by horizon day, against the nominal 80%."""
    def nominal(ax, _window) -> None:
        ax.axhline(0.8, color="grey", linestyle="--", label="nominal 80%")
        ax.set_ylim(0, 1)

    return _by_step_panels(result, scores, "coverage80_by_step", lambda day: day, "share of actual closes inside",
                           "80% interval calibration", nominal)


def _candles(ax, frame: pd.DataFrame, positions: np.ndarray, alpha: float = 1.0) -> None:
    """Draw OHLC candles at x ``positions`` (Taiwan colours)."""
    for x, (_, row) in zip(positions, frame.iterrows()):
        color = TAIWAN_UP if row["close"] >= row["open"] else TAIWAN_DOWN
        ax.vlines(x, row["low"], row["high"], color=color, linewidth=0.8, alpha=alpha)
        ax.bar(x, abs(row["close"] - row["open"]) or row["close"] * 0.001, bottom=min(row["open"], row["close"]),
               width=0.6, color=color, alpha=alpha)


def _example(result: WalkForward, lookback: int = 30):
    """(window, code, origin, past rows, following rows, forecast points) of the example shown in the plots:
    2330 (else the first company) at its last origin of the longest window; ``None`` when nothing was forecast."""
    window = max(result.windows, key=lambda w: w[1])
    rows = result.points[(result.points["window"] == window_name(window)) & ~result.points["model"].isin(result.direction_only)]
    if rows.empty:
        return None
    code = "2330" if "2330" in set(rows["code"]) else sorted(rows["code"].unique())[0]
    rows = rows[rows["code"] == code]
    origin = rows["origin"].max()
    frame = result.prices[code]
    at = int(np.searchsorted(frame["date"].to_numpy(), origin))
    return (window, code, origin, frame.iloc[max(0, at + 1 - lookback): at + 1], frame.iloc[at + 1: at + 1 + window[1]],
            rows[rows["origin"] == origin])


def _model_klines(result: WalkForward, out_dir: Path) -> dict[str, Path]:
    """The example forecast of each model as a K-line chart (``charts.kline_chart``: past candles + hollow forecast)."""
    from .charts import kline_chart

    example = _example(result)
    if example is None:
        return {}
    window, code, origin, past, _, rows = example
    paths = {}
    for name, group in rows.groupby("model", sort=False):
        group = group.sort_values("step")
        frame = pd.DataFrame({"open": group["f_open"].to_numpy(), "high": group["f_high"].to_numpy(), "low": group["f_low"].to_numpy(),
                              "close": group["f_close"].to_numpy(), "capacity": group["f_capacity"].to_numpy()},
                             index=pd.Index(group["target_date"].tolist(), name="date"))
        if group["f_lo"].notna().all():
            frame["close_lo"], frame["close_hi"] = group["f_lo"].to_numpy(), group["f_hi"].to_numpy()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        paths[f"kline {name}"] = kline_chart(past, Forecast(frame=frame, model=name), out_dir / f"kline_{safe}.png",
                                             title=f"{code} {name}: window {window_name(window)} from {origin}")
    return paths


def _example_kline(result: WalkForward):
    """The example's past candles, the days that followed (faded) and every model's forecast closes on one chart."""
    example = _example(result)
    if example is None:
        return None
    window, code, origin, past, future, rows = example
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(10, 4.5))
    _candles(ax, past, np.arange(len(past)))
    _candles(ax, future, np.arange(len(past), len(past) + len(future)), alpha=0.35)
    steps = np.arange(len(past) - 1, len(past) + window[1])
    colours = _colours(result.models)
    for name, group in rows.groupby("model", sort=False):
        group = group.sort_values("step")
        closes = [float(past["close"].iloc[-1]), *group["f_close"]]
        ax.plot(steps[: len(closes)], closes, marker=".", label=name, linewidth=2.2 if name == BASELINE else 1.2, color=colours[name])
    dates = [*past["date"], *future["date"]]
    ticks = list(range(0, len(dates), max(1, len(dates) // 8)))
    ax.set_xticks(ticks, [dates[i][5:] for i in ticks])
    ax.axvline(len(past) - 0.5, color="grey", linestyle=":")
    ax.set_title(f"{code}: forecasts from {origin} (window {window_name(window)}); faded candles = what happened")
    ax.set_ylabel("price (NT$)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return figure
