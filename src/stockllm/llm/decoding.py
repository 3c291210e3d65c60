"""Cheaper decoding steps on a CPU: a KV cache written in place and attention that shares key/value heads.

A batched decoding step of the packaged Gemma 3 (batch 32, a few hundred cached tokens) spent most of its
time copying memory, not multiplying: transformers' ``DynamicCache`` appends each new key and value with
``torch.cat``, which copies the whole cache of every layer at every step, and its attention (sdpa or eager,
with a padding mask) repeats the one key/value head for each of the four query heads, another copy of the
cache per layer and step. Both copies grow with the cached length, so a step at 500 tokens cost about twice a
step at 100.

* :class:`InPlaceCache` is a ``DynamicCache`` whose layers write new keys and values into preallocated room
  and return views of it: no copy of the past per step (a full room grows by half, so the copies are
  amortised; a sliding-window layer keeps its last window plus ``MIN_ROOM`` positions and moves that window
  to the front when full, so a long prompt costs it no more memory than ``DynamicCache``).
* :func:`grouped_attention` is eager attention computed per key/value head: the query heads that share a key
  head are stacked into one matrix, so the keys and values are read, never repeated.

Both give the same numbers as transformers' own cache and attention (tested on the tiny Llama and on greedy
answers); :func:`in_place_decoding` switches a model to them for the duration of a ``with`` block.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

ATTENTION = "stockllm_grouped"
MIN_ROOM = 64  # token slots a layer allocates beyond its first update


def grouped_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      softcap: float | None = None, **_: Any) -> tuple[torch.Tensor, None]:
    """Eager attention with the query heads of each key/value head stacked: ``query`` [B, Hq, q, D], ``key`` and
    ``value`` [B, Hkv, n, D], ``attention_mask`` additive [B, 1, q, ≥n] (eager's mask). Returns [B, q, Hq, D].
    Dropout is not applied: this is for inference only."""
    batch, heads, length, dim = query.shape
    kv_heads, seen = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scaling = dim ** -0.5 if scaling is None else scaling
    stacked = query.reshape(batch, kv_heads, group * length, dim)
    scores = torch.matmul(stacked, key.transpose(-1, -2)) * scaling
    softcap = softcap if softcap is not None else getattr(module, "attn_logit_softcapping", None)
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.view(batch, kv_heads, group, length, seen)
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, None, :, :seen]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs.view(batch, kv_heads, group * length, seen), value)
    return out.view(batch, heads, length, dim).transpose(1, 2), None


AttentionInterface.register(ATTENTION, grouped_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)


class _Room:
    """Preallocated key/value storage of one layer for ``size`` positions; ``start`` is the absolute position of
    slot 0, and the layer holds positions [start, end)."""

    def __init__(self, like: torch.Tensor, size: int):
        self.keys = like.new_empty(*like.shape[:2], size, like.shape[-1])
        self.values = torch.empty_like(self.keys)
        self.start, self.end = 0, 0

    @property
    def size(self) -> int:
        return self.keys.shape[-2]

    def write(self, keys: torch.Tensor, values: torch.Tensor, keep_from: int) -> None:
        """Append ``keys``/``values``; positions before ``keep_from`` are dropped when the room is full (a full
        room that may drop nothing grows by half)."""
        count = keys.shape[-2]
        if self.end - self.start + count > self.size:
            keep_from = max(keep_from, self.start)
            kept_keys, kept_values = self.view(keep_from)
            size = self.size if keep_from > self.start else self.size * 3 // 2
            self.reset(kept_keys, kept_values, keep_from, max(size, kept_keys.shape[-2] + count + MIN_ROOM))
        slot = self.end - self.start
        self.keys[:, :, slot:slot + count] = keys
        self.values[:, :, slot:slot + count] = values
        self.end += count

    def reset(self, keys: torch.Tensor, values: torch.Tensor, start: int, size: int | None = None) -> None:
        """Hold exactly ``keys``/``values`` as positions [start, start + n), in a new room of ``size`` if given."""
        count = keys.shape[-2]
        if size is not None or count + MIN_ROOM > self.size:
            fresh = _Room(keys, size or count + MIN_ROOM)
            self.keys, self.values = fresh.keys, fresh.values
        self.keys[:, :, :count] = keys
        self.values[:, :, :count] = values
        self.start, self.end = start, start + count

    def view(self, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the absolute positions [first, end)."""
        a, b = first - self.start, self.end - self.start
        return self.keys[:, :, a:b], self.values[:, :, a:b]


class _InPlaceLayer(DynamicLayer):
    """A full-attention layer: every position kept, written in place (room for half the prompt again at first)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            length = key_states.shape[-2]
            self.room = _Room(key_states, length + max(MIN_ROOM, length // 2))
        self.room.write(key_states, value_states, keep_from=0)
        self.keys, self.values = self.room.view(0)
        return self.keys, self.values


class _InPlaceSlidingLayer(DynamicSlidingWindowLayer):
    """A sliding-window layer: returns what ``DynamicSlidingWindowLayer`` returns (the last ``window - 1``
    cached positions and the new ones) and keeps at most ``window + MIN_ROOM`` positions: a prompt is
    attended whole but only its last ``window - 1`` positions are kept; a step is written in place."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.room = _Room(key_states, self.sliding_window + MIN_ROOM)
        first = max(self.cumulative_length - self.sliding_window + 1, 0)
        if key_states.shape[-2] == 1:
            self.room.write(key_states, value_states, keep_from=first)
            keys, values = self.room.view(first)
        else:
            past_keys, past_values = self.room.view(first)
            keys, values = torch.cat([past_keys, key_states], dim=-2), torch.cat([past_values, value_states], dim=-2)
            kept = min(keys.shape[-2], self.sliding_window - 1)
            self.room.reset(keys[:, :, -kept:], values[:, :, -kept:], first + keys.shape[-2] - kept)
        self.cumulative_length += key_states.shape[-2]
        self.keys, self.values = keys[:, :, -(self.sliding_window - 1):], values[:, :, -(self.sliding_window - 1):]
        return keys, values


class InPlaceCache(DynamicCache):
    """``DynamicCache`` for ``config`` with in-place layers (see the module docstring)."""

    def __init__(self, config: Any):
        super().__init__(config=config)
        for index, layer in enumerate(self.layers):
            if type(layer) is DynamicSlidingWindowLayer:
                self.layers[index] = _InPlaceSlidingLayer(sliding_window=layer.sliding_window)
            elif type(layer) is DynamicLayer:
                self.layers[index] = _InPlaceLayer()


@contextmanager
def in_place_decoding(model: Any) -> Iterator[InPlaceCache]:
    """Within the block ``model`` attends with :func:`grouped_attention`; yields a fresh :class:`InPlaceCache`
    to pass as ``past_key_values``. The model's own attention is restored afterwards (training uses it)."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield InPlaceCache(config)
    finally:
        config._attn_implementation = before
