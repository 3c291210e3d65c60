"""Forecast-accuracy metrics and the Diebold-Mariano test, as plain functions of arrays.

Kept free of pandas tables and of the evaluation loop so each formula can be checked by hand on a tiny
series (``tests/test_evaluate.py`` does). Definitions are spelled out in ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats


def mae(errors: Sequence[float]) -> float:
    return float(np.mean(np.abs(np.asarray(errors, dtype=float))))


def rmse(errors: Sequence[float]) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(errors, dtype=float)))))


def mape(forecast: Sequence[float], actual: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent of the actual value."""
    f, a = np.asarray(forecast, dtype=float), np.asarray(actual, dtype=float)
    return float(np.mean(np.abs(f - a) / np.abs(a)) * 100.0)


def relative_mae(groups: Iterable[tuple[Sequence[float], Sequence[float]]]) -> float:
    """Relative MAE vs the random walk: per group (company) MAE(model) / MAE(random walk), weighted by count.

    Reported under the ``mase`` key; it is not Hyndman's MASE (whose scale is the in-sample naive MAE) but the
    model's MAE relative to the random walk's on the very same forecasts.

    Each group is ``(model_errors, random_walk_errors)`` over the same forecast points. Scaling per company
    keeps a NT$1,000 share from drowning a NT$30 one; weighting by the number of points makes every forecast
    count once. The random walk scored against itself gives every ratio exactly ``1.0`` and the weighted sum
    ``n / n``, so its relative MAE is exactly 1.0, not 0.9999999. Groups where the random walk made no error at all
    are left out (their ratio is undefined); ``nan`` when no group is left.
    """
    weighted, count = 0.0, 0
    for model_errors, rw_errors in groups:
        scale = mae(rw_errors) if len(rw_errors) else 0.0
        if scale == 0.0:
            continue
        n = len(model_errors)
        weighted += n * (mae(model_errors) / scale)
        count += n
    return weighted / count if count else math.nan


@dataclass(frozen=True)
class DirectionScore:
    """Up/down skill on the points where both the forecast and the actual move.

    ``majority`` is the share of the commoner actual direction on those same points: what always saying
    "up" (or always "down") would have scored, the bar ``accuracy`` must clear to mean anything.
    ``coverage`` is the share of moving actuals on which the forecast committed to a direction.
    """

    n: int
    accuracy: float
    majority: float
    mcc: float
    coverage: float


def direction_score(predicted_change: Sequence[float], actual_change: Sequence[float]) -> DirectionScore:
    """Score the signs of predicted vs actual changes (from the origin's close). Zero means "no call" / "flat"."""
    p = np.sign(np.asarray(predicted_change, dtype=float))
    a = np.sign(np.asarray(actual_change, dtype=float))
    moving = a != 0
    both = moving & (p != 0)
    n = int(both.sum())
    coverage = float(both.sum() / moving.sum()) if moving.any() else math.nan
    if n == 0:
        return DirectionScore(0, math.nan, math.nan, math.nan, coverage)
    p, a = p[both] > 0, a[both] > 0
    up_share = float(a.mean())
    return DirectionScore(n, float((p == a).mean()), max(up_share, 1 - up_share), matthews(p, a), coverage)


def matthews(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Matthews correlation of two boolean arrays; 0.0 when a row or column of the 2×2 table is empty."""
    tp = float(np.sum(predicted & actual))
    tn = float(np.sum(~predicted & ~actual))
    fp = float(np.sum(predicted & ~actual))
    fn = float(np.sum(~predicted & actual))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def coverage(actual: Sequence[float], lower: Sequence[float], upper: Sequence[float]) -> float:
    """Share of actual values inside their ``[lower, upper]`` interval."""
    a = np.asarray(actual, dtype=float)
    return float(np.mean((np.asarray(lower, dtype=float) <= a) & (a <= np.asarray(upper, dtype=float))))


@dataclass(frozen=True)
class DMResult:
    """Diebold-Mariano statistic with the Harvey-Leybourne-Newbold correction, and its p-value."""

    statistic: float
    p_value: float
    n: int
    mean_difference: float


def diebold_mariano(loss_a: Sequence[float], loss_b: Sequence[float], horizon: int = 1, alternative: str = "two-sided") -> DMResult:
    """Test equal expected loss of forecasts ``a`` and ``b`` (Diebold & Mariano 1995, HLN 1997 correction).

    The test runs on ``d_t = loss_a - loss_b`` (:func:`diebold_mariano_differences`). Negative statistics favour
    ``a``. ``alternative``: ``"two-sided"``, ``"less"`` (``a`` has lower loss) or ``"greater"``.
    """
    return diebold_mariano_differences(np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float), horizon, alternative)


def diebold_mariano_differences(d: Sequence[float], horizon: int = 1, alternative: str = "two-sided") -> DMResult:
    """The Diebold-Mariano test of a loss-difference series ``d_t`` having mean zero (HLN-corrected).

    Its long-run variance uses the autocovariances up to lag ``horizon - 1`` (``h``-step forecasts made every
    period overlap, so their loss differences are MA(h-1)). The statistic is scaled by
    ``sqrt((T + 1 - 2h + h(h-1)/T) / T)`` and compared with Student's t on ``T - 1`` degrees of freedom, as R's
    ``forecast::dm.test`` does.
    """
    d = np.asarray(d, dtype=float)
    t = len(d)
    if t < 2 or horizon < 1:
        return DMResult(math.nan, math.nan, t, float(d.mean()) if t else math.nan)
    mean = float(d.mean())
    centred = d - mean
    autocov = [float(np.dot(centred[k:], centred[: t - k]) / t) for k in range(min(horizon, t))]
    variance = (autocov[0] + 2.0 * sum(autocov[1:])) / t
    if variance <= 0:
        return DMResult(math.nan, math.nan, t, mean)
    correction = math.sqrt((t + 1 - 2 * horizon + horizon * (horizon - 1) / t) / t)
    statistic = mean / math.sqrt(variance) * correction
    if alternative == "two-sided":
        p_value = 2.0 * stats.t.sf(abs(statistic), df=t - 1)
    elif alternative == "less":
        p_value = stats.t.cdf(statistic, df=t - 1)
    elif alternative == "greater":
        p_value = stats.t.sf(statistic, df=t - 1)
    else:
        raise ValueError(f"alternative must be two-sided, less or greater, not {alternative!r}")
    return DMResult(float(statistic), float(p_value), t, mean)
