"""Long work in the app: forecasters kept loaded per spec, slow models in their own process, cancel and progress.

Why a process per slow model: a fine-tuned LLM (or ARIMA's compiler, or an LSTM fit) can take minutes on a
CPU. Running it in a worker process keeps the model loaded between calls, lets a baseline forecast in another
browser tab answer meanwhile, and makes *cancel* real — the worker is ended, not merely forgotten — without
touching the model's own code: the worker talks to the model only through the
:class:`~stockllm.forecasters.base.Forecaster` interface and :func:`~stockllm.forecasters.registry.make_forecaster`.

:class:`CancelToken` is one job's cancel switch, :class:`JobBoard` finds the running job of a browser session
so its Cancel button can reach it, and :func:`run_job` runs a job in a thread while the page is told how far it got.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import pandas as pd

from ..errors import StockLLMError
from ..forecasters.base import Forecast, Forecaster
from ..forecasters.registry import make_forecaster

log = logging.getLogger("stockllm.app")

QUICK_SPECS = frozenset({"random_walk", "drift", "bestfour"})
"""Models that answer in milliseconds and load nothing: they run in the app's own process."""

POLL_S = 0.2


class Cancelled(StockLLMError):
    """The user pressed Cancel; the job stopped and nothing more of it will be shown."""


class ModelFailed(StockLLMError):
    """A model could not forecast; ``attempts`` holds what an LLM generated on each try (empty for others)."""

    def __init__(self, message: str, attempts: list[dict] | None = None):
        super().__init__(message)
        self.attempts = attempts or []


def describe(exc: BaseException) -> str:
    """One readable line for any exception: the user's fix for a :class:`StockLLMError`, else what broke."""
    if isinstance(exc, StockLLMError):
        return str(exc)
    log.error("unexpected error in the app", exc_info=exc)
    return f"unexpected {type(exc).__name__}: {exc} — this is a bug in stockllm; the server log has the details"


class CancelToken:
    """One job's cancel switch, checked between steps and polled while a worker process computes; what the job
    holds (a worker's lease) is given back by :meth:`finish`."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._on_finish: list[Callable[[], None]] = []

    def on_finish(self, release: Callable[[], None]) -> None:
        self._on_finish.append(release)

    def finish(self) -> None:
        while self._on_finish:
            self._on_finish.pop()()

    def cancel(self) -> None:
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled("cancelled")


class JobBoard:
    """The running job of each (browser session, tab), so the tab's Cancel button reaches the right one."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], CancelToken] = {}
        self._lock = threading.Lock()

    def start(self, session: str, tab: str) -> CancelToken:
        token = CancelToken()
        with self._lock:
            previous = self._jobs.get((session, tab))
            if previous is not None:
                previous.cancel()  # a new run in the same tab replaces the old one
            self._jobs[(session, tab)] = token
        return token

    def cancel(self, session: str, tab: str) -> bool:
        with self._lock:
            token = self._jobs.pop((session, tab), None)
        if token is None:
            return False
        token.cancel()
        return True

    def finish(self, session: str, tab: str, token: CancelToken) -> None:
        with self._lock:
            if self._jobs.get((session, tab)) is token:
                del self._jobs[(session, tab)]
        token.finish()


# --- a model in its own process -----------------------------------------------------------------------------

def _serve(spec: str, conn) -> None:
    """Worker process: build ``spec`` once, then answer ``fit`` / ``predict`` requests until the pipe closes."""
    began = time.perf_counter()
    try:
        conn.send(("status", "loading the model"))
        model = make_forecaster(spec)
        conn.send(("status", f"model loaded in {time.perf_counter() - began:.1f} s"))
        if hasattr(model, "progress"):  # the LLM says which attempt it is on
            model.progress = lambda text: conn.send(("status", text))
    except BaseException as exc:  # noqa: BLE001 — reported to the page; the process ends
        conn.send(("error", (describe(exc), [])))
        return
    while True:
        try:
            method, args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            if method == "fit":
                model.fit(*args)
                conn.send(("done", None))
            else:
                conn.send(("done", model.predict(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 — every failure goes back as one readable message
            conn.send(("error", (describe(exc), list(getattr(exc, "attempts", None) or []))))


def _acquire(lock: threading.Lock, cancel: threading.Event | None, on_wait: Callable[[], Any]) -> None:
    """Take ``lock``, saying so once if it must wait; a cancel while waiting raises :class:`Cancelled`."""
    if lock.acquire(blocking=False):
        return
    on_wait()
    while not lock.acquire(timeout=POLL_S):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")


class WorkerForecaster:
    """The :class:`Forecaster` ``spec`` running in a worker process that keeps it loaded between calls.

    One request at a time per worker (a second caller waits for the first); ``cancel`` ends the worker while
    it computes for that caller, and the next request starts a fresh one. A job that fits the model and then
    forecasts with it first takes the worker's :meth:`lease`, so no other job refits it in between.
    """

    def __init__(self, spec: str):
        self.spec = spec
        self.name = spec
        self._lock = threading.Lock()
        self._lease = threading.Lock()
        self._holder: CancelToken | None = None
        self._process: Any = None
        self._conn: Any = None

    def _ensure(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of the web server's threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.spec, child), daemon=True, name=f"stockllm-{self.spec}")
        self._process.start()
        child.close()

    def stop(self) -> None:
        """End the worker (its model is unloaded); the next request starts a new one."""
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=10)
            self._conn.close()
        self._process = self._conn = None

    def lease(self, token: CancelToken, status: Callable[[str], None] | None = None) -> None:
        """Reserve the worker for ``token``'s job until the job finishes (waiting while another job holds it)."""
        if self._holder is token:
            return
        _acquire(self._lease, token.event, lambda: status and status(f"{self.spec} is busy with another job; waiting"))
        self._holder = token

        def release() -> None:
            self._holder = None
            self._lease.release()

        token.on_finish(release)

    def _call(self, method: str, args: tuple, kwargs: dict, cancel: threading.Event | None,
              status: Callable[[str], None] | None) -> Any:
        _acquire(self._lock, cancel, lambda: status and status(f"{self.spec} is busy with another request; waiting"))
        try:
            self._ensure()
            self._conn.send((method, args, kwargs))
            while True:
                if cancel is not None and cancel.is_set():
                    self.stop()
                    raise Cancelled("cancelled")
                if self._conn.poll(POLL_S):
                    kind, payload = self._conn.recv()
                    if kind == "status":
                        if status:
                            status(f"{self.spec}: {payload}")
                        continue
                    if kind == "error":
                        message, attempts = payload
                        raise ModelFailed(message, attempts)
                    return payload
                if not self._process.is_alive():
                    code = self._process.exitcode
                    self.stop()
                    raise StockLLMError(f"the {self.spec} worker process ended unexpectedly (exit code {code}); "
                                        "it is restarted on the next request — check the server log and free memory")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.stop()
            raise StockLLMError(f"lost contact with the {self.spec} worker process; it is restarted on the next request") from None
        finally:
            self._lock.release()

    def fit(self, histories: Mapping[str, pd.DataFrame], *, cancel: threading.Event | None = None,
            status: Callable[[str], None] | None = None) -> "WorkerForecaster":
        self._call("fit", (dict(histories),), {}, cancel, status)
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None, cancel: threading.Event | None = None,
                status: Callable[[str], None] | None = None) -> Forecast:
        return self._call("predict", (history, horizon), {"code": code}, cancel, status)


class Tracked:
    """A :class:`Forecaster` bound to one job: checks its cancel token, counts calls for progress, reports status."""

    def __init__(self, model: Forecaster | WorkerForecaster, token: CancelToken, status: Callable[[str], None],
                 on_predict: Callable[[int], None] | None = None):
        self.model, self.token, self.status, self.on_predict = model, token, status, on_predict
        self.name = model.name
        self.calls = 0

    def _options(self) -> dict:
        if not isinstance(self.model, WorkerForecaster):
            return {}
        self.model.lease(self.token, self.status)
        return {"cancel": self.token.event, "status": self.status}

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "Tracked":
        self.token.check()
        self.model.fit(histories, **self._options())
        return self

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None) -> Forecast:
        self.token.check()
        forecast = self.model.predict(history, horizon, code=code, **self._options())
        self.calls += 1
        if self.on_predict:
            self.on_predict(self.calls)
        return forecast


class ForecasterPool:
    """One forecaster per spec for the app's lifetime: quick baselines in-process, every other model in a worker."""

    def __init__(self) -> None:
        self._models: dict[str, Forecaster | WorkerForecaster] = {}
        self._lock = threading.Lock()

    def get(self, spec: str) -> Forecaster | WorkerForecaster:
        with self._lock:
            if spec not in self._models:
                self._models[spec] = make_forecaster(spec) if spec in QUICK_SPECS else WorkerForecaster(spec)
            return self._models[spec]

    def bound(self, spec: str, token: CancelToken, status: Callable[[str], None],
              on_predict: Callable[[int], None] | None = None) -> Tracked:
        return Tracked(self.get(spec), token, status, on_predict)

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                if isinstance(model, WorkerForecaster):
                    model.stop()
            self._models.clear()


# --- running a job while the page watches ----------------------------------------------------------------

@dataclass
class Progress:
    """What a running job last said (read by the page every :data:`POLL_S` seconds)."""

    began: float = field(default_factory=time.monotonic)
    text: str = "starting"

    def say(self, text: str) -> None:
        self.text = text

    def line(self) -> str:
        return f"⏳ {self.text} — {time.monotonic() - self.began:.0f} s"


def run_job(work: Callable[[Progress], Any], token: CancelToken, every: float = 0.5) -> Iterator[tuple[str, Any]]:
    """Run ``work(progress)`` in a thread; yield ``("progress", line)`` while it runs, then one of
    ``("done", result)``, ``("error", message)`` or ``("cancelled", message)``."""
    progress = Progress()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work(progress)
        except BaseException as exc:  # noqa: BLE001 — every failure becomes a message on the page
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="stockllm-app-job")
    thread.start()
    while thread.is_alive():
        thread.join(timeout=every)
        if token.cancelled:
            yield "cancelled", f"cancelled after {time.monotonic() - progress.began:.0f} s"
            return
        if thread.is_alive():
            yield "progress", progress.line()
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, Cancelled):
            yield "cancelled", f"cancelled after {time.monotonic() - progress.began:.0f} s"
        else:
            yield "error", describe(exc)
        return
    yield "done", outcome.get("result")
