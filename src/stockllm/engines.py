"""Where the walk-forward's forecasts run: in this process (``local``) or as Ray tasks (``ray``).

The models are fitted once, in the calling process (:func:`stockllm.evaluate._fit_all`); what grows with the
market is forecasting every company from every origin, which :func:`stockllm.evaluate.walk_companies` does for
a group of companies (:func:`~stockllm.evaluate.walk_company` for one) as a plain, picklable function. An engine
maps it over the companies:

* :class:`LocalEngine` — groups of companies one after another, the default; needs nothing beyond the package.
* :class:`RayEngine` — one Ray task per company × model × window (``ray.init(address)``: ``None`` starts a
  local Ray on this machine's cores, ``"auto"`` joins the running cluster, ``ray://host:10001`` a remote one).
  Each fitted model goes to Ray's object store once (``ray.put``) and every task reads it from there. The
  results are put back in the local engine's order (company, then window, then model) and a company's
  window skip is kept once, so the :class:`~stockllm.evaluate.WalkForward` equals the local one; only the
  timings differ. A model that declares ``device == "cuda"`` (the LLM on a GPU) gets tasks that each request
  a GPU, so Ray places them on GPU nodes.

statsforecast's own Ray support (its fugue backend) distributes ``StatsForecast.forecast`` /
``cross_validation`` over a panel; it does not fit here: our ARIMA/ETS are fitted once before the period and
moved forward at each origin with their intervals clipped to the daily limit, which a per-company task
reproduces exactly and statsforecast's distributed cross-validation would not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from .errors import StockLLMError
from .evaluate import CompanyWalk, Period, Window, walk_companies, walk_company, window_name
from .forecasters.base import Forecaster

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Walks every company (:func:`~stockllm.evaluate.walk_companies`), yielding their walks in ``prices`` order."""

    def walk(self, prices: Mapping[str, pd.DataFrame], models: Mapping[str, Forecaster], windows: Mapping[str, Sequence[Window]],
             period: Period, say: Callable[[str], None]) -> Iterator[CompanyWalk]: ...


class LocalEngine:
    """Every company in this process, ``group`` companies at a time (:func:`~stockllm.evaluate.walk_companies`:
    a batching model gets the origins of the whole group in one call, so its batches are full)."""

    def __init__(self, group: int = 8):
        self.group = max(1, group)

    def walk(self, prices, models, windows, period, say):
        codes = list(prices)
        for first in range(0, len(codes), self.group):
            chunk = codes[first: first + self.group]
            say(f"  {' '.join(chunk)} ({first + len(chunk)}/{len(codes)})")
            yield from walk_companies({code: prices[code] for code in chunk}, models, windows, period)


def _walk_one(code: str, frame: pd.DataFrame, name: str, model: Forecaster, window: Window, period: Period) -> CompanyWalk:
    """One company × model × window (the body of a Ray task; Ray resolves the object-store refs to values)."""
    return walk_company(code, frame, {name: model}, {name: [window]}, period)


class RayEngine:
    """Ray tasks per company × model × window on a local Ray or a cluster (module docstring)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise StockLLMError("--engine ray needs Ray: pip install 'stockllm[scale]' (or pip install 'ray[default]')") from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except ConnectionError as exc:
                raise StockLLMError(f"cannot join the Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
                                    "or drop --address to run a local Ray") from None
        self._task = ray.remote(_walk_one)

    def walk(self, prices, models, windows, period, say):
        ray = self._ray
        refs = {name: ray.put(model) for name, model in models.items()}
        order = list(dict.fromkeys(w for name in models for w in windows[name]))  # walk_company's window order
        pending: dict[str, list[tuple[Window, str, Any]]] = {}
        for code, frame in prices.items():
            frame_ref = ray.put(frame)
            pending[code] = [(window, name, self._options(models[name]).remote(code, frame_ref, name, refs[name], window, period))
                             for window in order for name in models if window in windows[name]]
        say(f"  ray: {sum(len(p) for p in pending.values())} tasks (company × model × window) for {len(prices)} companies "
            f"on {int(ray.cluster_resources().get('CPU', 0))} CPUs")
        for number, (code, tasks) in enumerate(pending.items(), 1):
            parts = ray.get([ref for _, _, ref in tasks])
            say(f"  {code} ({number}/{len(prices)})")
            yield _merge(list(models), [(window, name, part) for (window, name, _), part in zip(tasks, parts)])

    def _options(self, model: Forecaster):
        return self._task.options(num_gpus=1) if getattr(model, "device", None) == "cuda" else self._task


def _merge(names: list[str], parts: list[tuple[Window, str, CompanyWalk]]) -> CompanyWalk:
    """One company's walk from its per model × window parts, as :func:`walk_company` would have returned it."""
    merged = CompanyWalk([], [], [], {name: 0.0 for name in names})
    skipped_windows: set[str] = set()
    for window, name, part in parts:  # already in walk_company's order: window, then model
        merged.points.extend(part.points)
        merged.attempts.extend(part.attempts)
        merged.predict_s[name] += part.predict_s[name]
        if window_name(window) not in skipped_windows:  # every model's part skips a window for the same reason
            merged.skipped.extend(part.skipped)
            skipped_windows.add(window_name(window))
    return merged


def make_engine(name: str = "local", address: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``); ``address`` is Ray's (``auto`` for a running cluster)."""
    if name == "local":
        if address:
            raise StockLLMError("--address is for --engine ray; drop it or add --engine ray")
        return LocalEngine()
    if name == "ray":
        return RayEngine(address)
    raise StockLLMError(f"unknown --engine {name!r}; use one of {', '.join(ENGINES)}")
