"""The write-up's inference API: ``StockPredictor(model_dir, data_dir).inference(code='2330', past=5, future=5, context="")``.

The prompt comes from the stored prices with :func:`stockllm.dataset.inference_messages` and the dataset
spec saved in the model dir, so it is worded exactly like the model's training examples; the answer is
generated, parsed and validated by :class:`~stockllm.llm.forecaster.LLMForecaster`.
"""

from __future__ import annotations

from pathlib import Path

from .. import store
from ..dataset import inference_messages
from ..forecasters.base import Forecast
from .forecaster import DEFAULT_ATTEMPTS, LLMForecaster
from ..universe import resolve


def context_text(context: str | None) -> str | None:
    """``""``/``"auto"``/``None`` → the context the model was trained with (from the data dir);
    ``"none"`` → no context; anything else → that text as the context."""
    if context is None or context.strip().lower() in ("", "auto"):
        return None
    return "" if context.strip().lower() == "none" else context


class StockPredictor:
    """A fine-tuned model dir plus a data dir; loads the model once, forecasts any stored company."""

    def __init__(self, model_dir: Path | str, data_dir: Path | str = "data", *, samples: int = 1,
                 attempts: int = DEFAULT_ATTEMPTS, backend: str = "auto",
                 precision: str = "auto"):
        self.model_dir = Path(model_dir)
        self.data_dir = Path(data_dir)
        self.forecaster = LLMForecaster.from_model_dir(self.model_dir, backend=backend, precision=precision, data_dir=self.data_dir,
                                                       samples=samples, attempts=attempts)

    @property
    def spec(self):
        return self.forecaster.spec

    def messages(self, code: str, past: int = 5, future: int = 5, context: str | None = "", as_of: str | None = None) -> list[dict]:
        """The chat turns the model is asked (the user turn of a training example for the same window)."""
        return inference_messages(self.data_dir, resolve(code), past, future, self.spec, as_of=as_of, context_text=context_text(context))

    def inference(self, code: str = "2330", past: int = 5, future: int = 5, context: str | None = "", as_of: str | None = None) -> Forecast:
        """Forecast the ``future`` trading days after ``as_of`` (default: the last stored day) from ``past`` days."""
        company = resolve(code)
        history = store.read_prices(self.data_dir, company.code)
        if as_of is not None:
            history = history[history["date"] <= as_of]
        messages = self.messages(company.code, past, future, context, as_of)
        forecast = self.forecaster.forecast_messages(messages, history, future)
        forecast.info.update({"code": company.code, "name_zh": company.name_zh, "past": past, "as_of": history["date"].iloc[-1]})
        return forecast
