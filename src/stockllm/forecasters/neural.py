"""Small PyTorch forecasters — an LSTM (the write-up's ``model.py``) and a 1-D CNN — on the LLM's windows.

They see what the LLM sees: the last ``past`` days of open, high, low, close and volume (the default
``seed-example`` fields) and answer the next ``horizon`` days of the same fields. Each window is normalised
on its own — prices as log ratios to the last input close, volume as log ratio to the window's mean — so
one network serves a NT$30 and a NT$1,000 share. One network is trained per (past, horizon) window on all
companies' histories from ``fit`` (which end before the evaluation period), with a time-ordered validation
split and early stopping; training happens on first use of a window (or :meth:`NeuralForecaster.prepare`).
"""

from __future__ import annotations

import copy
import os
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import StockLLMError
from .base import Forecast, make_forecast
from .baselines import within_limits

FEATURES = ["open", "high", "low", "close", "capacity"]
MAX_PAST = 60
"""Longest input a network gets when no ``past`` is fixed (the longest window of the dataset)."""


def normalise_windows(windows: np.ndarray, past: int) -> np.ndarray:
    """Features of windows (``... × days × FEATURES``, raw; the first ``past`` days are the input).

    Every day, future ones included, is expressed against the last input close and the mean input volume,
    so a target is only ever normalised with numbers known at its origin.
    """
    close = windows[..., past - 1, 3][..., None, None]
    volume = np.log1p(windows[..., :past, 4]).mean(axis=-1)[..., None, None]
    return np.concatenate([np.log(windows[..., :4] / close), np.log1p(windows[..., 4:5]) - volume], axis=-1)


def split_window_starts(count: int, span: int, val_frac: float) -> tuple[slice, slice]:
    """Time-ordered split of ``count`` sliding windows of ``span`` days: (train starts, validation starts).

    The last ``val_frac`` of windows validate; a training window must end (its last target day) before the
    first validation window's first input day, so no day is both learned from and validated on.
    """
    first_val = min(max(int(count * (1 - val_frac)), 1), count - 1)
    return slice(0, max(first_val - span + 1, 0)), slice(first_val, count)


def _traded(history: pd.DataFrame) -> np.ndarray:
    """The rows with every feature present, as a float array (suspended days have no prices)."""
    return history.dropna(subset=FEATURES)[FEATURES].to_numpy(float)


class _LSTM(nn.Module):
    def __init__(self, outputs: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(len(FEATURES), hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class _CNN(nn.Module):
    """Two same-length convolutions; the last position and the average over time feed the head."""

    def __init__(self, outputs: int, hidden: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(len(FEATURES), hidden, 3, padding=1), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(2 * hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2))
        return self.head(torch.cat([h[:, :, -1], h.mean(dim=2)], dim=1))


class _Trained:
    """A fitted network with the feature and target scalers it was trained with."""

    def __init__(self, net: nn.Module, x_mean, x_std, y_mean, y_std, epochs: int, val_loss: float):
        self.net, self.x_mean, self.x_std, self.y_mean, self.y_std = net, x_mean, x_std, y_mean, y_std
        self.epochs, self.val_loss = epochs, val_loss


class NeuralForecaster:
    """LSTM (``kind="lstm"``) or 1-D CNN (``kind="cnn"``) window forecaster; see the module docstring."""

    uses_full_history = False

    def __init__(self, kind: str, *, past: int | None = None, hidden: int = 32, epochs: int = 30, patience: int = 3,
                 batch_size: int = 512, learning_rate: float = 3e-3, val_frac: float = 0.15,
                 max_windows: int = 20000, seed: int = 3407):
        if kind not in ("lstm", "cnn"):
            raise StockLLMError(f"unknown network {kind!r}; use lstm or cnn")
        self.name, self.kind, self.past = kind, kind, past
        self.hidden, self.epochs, self.patience, self.batch_size = hidden, epochs, patience, batch_size
        self.learning_rate, self.val_frac, self.max_windows, self.seed = learning_rate, val_frac, max_windows, seed
        self._histories: list[np.ndarray] | None = None
        self._nets: dict[tuple[int, int], _Trained] = {}

    @property
    def min_history(self) -> int:
        return self.past or 1

    def fit(self, histories: Mapping[str, pd.DataFrame]) -> "NeuralForecaster":
        """Keep the training histories; networks are trained per window on first use (or by ``prepare``)."""
        self._histories = [_traded(h) for h in histories.values()]
        self._nets = {}
        return self

    def prepare(self, past: int, horizon: int) -> _Trained:
        """Train (once) the network of window ``past → horizon``."""
        key = (past, horizon)
        if key not in self._nets:
            self._nets[key] = self._train(past, horizon)
        return self._nets[key]

    def _windows(self, past: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x_train, y_train, x_val, y_val) of every company, split in time by :func:`split_window_starts`."""
        if self._histories is None:
            raise StockLLMError(f"{self.name} has not been fitted: call fit(histories) with data before the forecast period")
        span = past + horizon
        train, val = [], []
        for rows in self._histories:
            count = len(rows) - span + 1
            if count < 2:
                continue
            windows = normalise_windows(np.lib.stride_tricks.sliding_window_view(rows, span, axis=0).transpose(0, 2, 1), past)
            train_starts, val_starts = split_window_starts(count, span, self.val_frac)
            train.append(windows[train_starts])
            val.append(windows[val_starts])
        train = [w for w in train if len(w)]
        if not train or not val:
            raise StockLLMError(f"too little history to train {self.name} for window {past}:{horizon}; "
                                f"each company needs well over {span} traded days before the evaluation period")
        xy_train, xy_val = np.concatenate(train), np.concatenate(val)
        if len(xy_train) > self.max_windows:
            xy_train = xy_train[np.random.default_rng(self.seed).choice(len(xy_train), self.max_windows, replace=False)]
        return (xy_train[:, :past], xy_train[:, past:].reshape(len(xy_train), -1),
                xy_val[:, :past], xy_val[:, past:].reshape(len(xy_val), -1))

    def _train(self, past: int, horizon: int) -> _Trained:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        torch.manual_seed(self.seed)
        xt, yt, xv, yv = self._windows(past, horizon)
        x_mean, x_std = xt.mean(axis=(0, 1)), xt.std(axis=(0, 1)) + 1e-6
        y_mean, y_std = yt.mean(axis=0), yt.std(axis=0) + 1e-6

        def tensors(x, y):
            return (torch.tensor((x - x_mean) / x_std, dtype=torch.float32),
                    torch.tensor((y - y_mean) / y_std, dtype=torch.float32))

        (xt_t, yt_t), (xv_t, yv_t) = tensors(xt, yt), tensors(xv, yv)
        net = (_LSTM if self.kind == "lstm" else _CNN)(yt.shape[1], self.hidden)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        loss_fn = nn.MSELoss()
        generator = torch.Generator().manual_seed(self.seed)
        best, best_loss, stale, epochs = copy.deepcopy(net.state_dict()), float("inf"), 0, 0
        for epochs in range(1, self.epochs + 1):
            net.train()
            for batch in torch.randperm(len(xt_t), generator=generator).split(self.batch_size):
                optimiser.zero_grad()
                loss_fn(net(xt_t[batch]), yt_t[batch]).backward()
                optimiser.step()
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xv_t), yv_t))
            if val_loss < best_loss - 1e-5:
                best, best_loss, stale = copy.deepcopy(net.state_dict()), val_loss, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        net.load_state_dict(best)
        net.eval()
        return _Trained(net, x_mean, x_std, y_mean, y_std, epochs, best_loss)

    def predict(self, history: pd.DataFrame, horizon: int, *, code: str | None = None, past: int | None = None) -> Forecast:
        """Forecast from the last ``past`` traded days of ``history`` (the evaluation window's, else the one fixed
        at construction, else up to ``MAX_PAST``); ``history`` may be the whole past up to the origin."""
        rows = _traded(history)
        past = past or self.past or min(len(rows), MAX_PAST)
        if past < 1 or len(rows) < past:
            raise StockLLMError(f"{self.name} needs {past} traded days of history, got {len(rows)}")
        block = rows[-past:]
        trained = self.prepare(past, horizon)
        x = normalise_windows(block, past)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one tiny input: thread hand-offs cost 10-50x the arithmetic on a busy machine
        try:
            with torch.no_grad():
                scaled = trained.net(torch.tensor(((x - trained.x_mean) / trained.x_std)[None], dtype=torch.float32))
        finally:
            torch.set_num_threads(threads)
        out = (scaled.numpy()[0] * trained.y_std + trained.y_mean).reshape(horizon, len(FEATURES))
        close, volume = block[-1, 3], np.log1p(block[:, 4]).mean()
        prices = close * np.exp(out[:, :4])
        forecast = {column: [float(v) for v in prices[:, i]] for i, column in enumerate(FEATURES[:4])}
        forecast["capacity"] = [float(max(np.expm1(v + volume), 1.0)) for v in out[:, 4]]
        return make_forecast(history, within_limits(float(close), forecast), self.name)
