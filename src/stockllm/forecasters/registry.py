"""Forecasters by name: ``make_forecaster("arima")``, ``make_forecaster("llm:outputs/model")``.

The one place that maps the names users type (``--models``, ``backtest --model``, the app) to forecaster
objects. Heavy modules (torch, statsforecast, the LLM stack) are imported only when their model is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StockLLMError
from .base import Forecaster


def _random_walk() -> Forecaster:
    from .baselines import RandomWalk

    return RandomWalk()


def _drift() -> Forecaster:
    from .baselines import Drift

    return Drift()


def _statistical(kind: str) -> Callable[[], Forecaster]:
    def build() -> Forecaster:
        from .baselines import StatsForecaster

        return StatsForecaster(kind)

    return build


def _neural(kind: str) -> Callable[[], Forecaster]:
    def build() -> Forecaster:
        from .neural import NeuralForecaster

        return NeuralForecaster(kind)

    return build


def _bestfour() -> Forecaster:
    from .baselines import BestFourBaseline

    return BestFourBaseline()


BUILDERS: dict[str, Callable[[], Forecaster]] = {
    "random_walk": _random_walk,
    "drift": _drift,
    "arima": _statistical("arima"),
    "ets": _statistical("ets"),
    "lstm": _neural("lstm"),
    "cnn": _neural("cnn"),
    "bestfour": _bestfour,
}

VALID_SPECS = [*BUILDERS, "llm:DIR"]


def make_forecaster(spec: str, *, data_dir: Path | str | None = None, backend: str = "auto",
                    precision: str = "auto") -> Forecaster:
    """The forecaster named by ``spec``: one of ``VALID_SPECS``; ``llm:DIR`` loads a fine-tuned model dir.

    ``data_dir`` is where an LLM trained with a news context reads the news of each forecast day; without it
    such a model cannot build its prompt. ``backend`` is where an LLM generates (``llm.backends.GENERATION_BACKENDS``),
    ``precision`` its number format there (``llm.backends.PRECISIONS``).
    """
    name = spec.strip()
    if name.startswith("llm:"):
        model_dir = name[len("llm:"):].strip()
        if not model_dir:
            raise StockLLMError("model spec 'llm:' needs a model directory, e.g. llm:outputs/model")
        from ..llm.backends import read_training_info
        from ..llm.forecaster import LLMForecaster

        forecaster = LLMForecaster.from_model_dir(model_dir, data_dir=data_dir, backend=backend, precision=precision)
        if getattr(forecaster, "trained_until", None) is None:
            forecaster.trained_until = trained_until(read_training_info(model_dir))
        return forecaster
    if name in BUILDERS:
        return BUILDERS[name]()
    raise StockLLMError(f"unknown model {spec!r}; valid models: {', '.join(VALID_SPECS)}")


def trained_until(training_info: dict) -> str | None:
    """Last day a fine-tuned model learned from — its train split's — read from ``training_info.json``.

    The validation split only reports a loss (no checkpoint is chosen by it), so it does not count. The
    evaluation and the backtest refuse to judge a model on days it has learned from (:func:`refuse_if_trained_on`).
    """
    train = (training_info.get("data_range") or {}).get("train") or {}
    return train.get("last")


def refuse_if_trained_on(name: str, model: Forecaster, first_unseen: str, period: str) -> None:
    """Refuse a pre-trained model (the LLM) whose training data reach ``first_unseen`` or later.

    Its ``trained_until`` (the last day of its train split, :func:`trained_until`) must lie before the first day
    it is judged or trades on, else it would be scored on days it has learned from. ``period`` names what
    starts at ``first_unseen`` in the message. Models without ``trained_until`` (the baselines, fitted by
    the caller on earlier days only) pass. Shared by ``evaluate`` and the backtest.
    """
    until = getattr(model, "trained_until", None)
    if until and str(until)[:10] >= str(first_unseen)[:10]:
        raise StockLLMError(f"model {name} was trained on data up to {str(until)[:10]}, which is not before {str(first_unseen)[:10]} "
                            f"({period}); pass a later --start so it is judged on unseen days")


def parse_model_list(text: str) -> list[str]:
    """Split a ``--models`` value (comma separated) into specs, refusing empty and duplicate entries."""
    specs = [part.strip() for part in text.split(",") if part.strip()]
    if not specs:
        raise StockLLMError(f"--models is empty; give a comma-separated list of: {', '.join(VALID_SPECS)}")
    duplicates = sorted({s for s in specs if specs.count(s) > 1})
    if duplicates:
        raise StockLLMError(f"--models lists {', '.join(duplicates)} more than once; name each model once")
    return specs
