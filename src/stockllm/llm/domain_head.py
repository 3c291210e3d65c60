"""The domain output head: the LM head and its softmax restricted to the tokens an answer can contain.

An answer is a few hundred distinct tokens (digits, punctuation, the template's words, end of turn), while
Gemma's output layer scores all 262,144 words: 168M of the model's 270M parameters, read for every
generated token and multiplied at every answer position in training. The domain head keeps only the rows of
the base model's own output matrix for the tokens of the training answers (plus the stop tokens):

* **training**: the loss is the cross-entropy of the softmax over the domain tokens alone, i.e. the full
  model's distribution restricted to the domain and renormalised
  (``-log p(y) / sum_{d in D} p(d)``, see :func:`domain_loss`);
* **generation**: logits are computed for the domain rows only, so greedy decoding and sampling pick domain
  tokens; the generator maps each logit column back to its vocabulary id;
* the prompt still uses the full vocabulary (only the output side is restricted);
* the id list is stored in the model dir (``domain_head.json``); a model dir without it (trained before
  the domain head existed) is served with the full head, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .. import store
from ..errors import StockLLMError
from .chat import IGNORE_INDEX

DOMAIN_FILE = "domain_head.json"


def domain_token_ids(label_rows: Iterable[list[int]], extra: Iterable[int] = ()) -> list[int]:
    """Sorted distinct token ids of every answer label (``labels != -100``), plus ``extra`` (stop tokens)."""
    ids = {int(token) for row in label_rows for token in row if token != IGNORE_INDEX}
    ids.update(int(token) for token in extra)
    return sorted(ids)


def save_domain(model_dir: Path | str, token_ids: list[int], vocab_size: int) -> None:
    store.atomic_write_json(Path(model_dir) / DOMAIN_FILE, {"token_ids": token_ids, "vocab_size": vocab_size,
                                                           "source": "tokens of the training and validation answers + stop tokens"})


def load_domain(model_dir: Path | str) -> list[int] | None:
    """The stored domain token ids, or None for a model dir trained with the full head."""
    path = Path(model_dir) / DOMAIN_FILE
    if not path.exists():
        return None
    try:
        ids = json.loads(path.read_text("utf-8"))["token_ids"]
    except (ValueError, KeyError, TypeError):
        raise StockLLMError(f"{path} is not a domain-head file (expected {{\"token_ids\": [...]}}); retrain or delete it to use the full head") from None
    if not ids or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise StockLLMError(f"{path} holds no valid token ids; retrain or delete it to use the full head")
    return sorted(set(ids))


def _softcap(lm: Any, logits: torch.Tensor) -> torch.Tensor:
    """Gemma 2's final logit soft-capping, where the config asks for it (Gemma 3 and Llama do not)."""
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    cap = getattr(config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


class DomainHead:
    """The sliced head of one causal LM: ``ids`` (domain position → vocabulary id) and its inverse."""

    def __init__(self, token_ids: list[int], vocab_size: int):
        if max(token_ids) >= vocab_size:
            raise StockLLMError(f"the domain head names token {max(token_ids)}, beyond this model's {vocab_size} tokens; "
                                "the model dir belongs to another base model")
        self.ids = torch.tensor(token_ids, dtype=torch.long)
        self.position = torch.full((vocab_size,), -1, dtype=torch.long)
        self.position[self.ids] = torch.arange(len(token_ids))

    def weight(self, lm: Any) -> torch.Tensor:
        """The base model's own output rows for the domain tokens (built once per call; a few hundred rows)."""
        return lm.get_output_embeddings().weight.index_select(0, self.ids.to(lm.get_output_embeddings().weight.device))

    def logits(self, lm: Any, hidden: torch.Tensor) -> torch.Tensor:
        """Domain logits (``[..., len(ids)]``) of hidden states, with the model's soft-capping."""
        head = lm.get_output_embeddings()
        out = hidden @ self.weight(lm).T
        if getattr(head, "bias", None) is not None:
            out = out + head.bias.index_select(0, self.ids.to(out.device))
        return _softcap(lm, out.float())

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids → domain positions; a label outside the domain is an error, not a silent skip."""
        mapped = self.position.to(labels.device)[labels]
        if (mapped < 0).any():
            missing = sorted(set(labels[mapped < 0].tolist()))[:5]
            raise StockLLMError(f"answer tokens {missing} are outside the domain head; rebuild it from these examples")
        return mapped


def domain_loss(lm: Any, domain: DomainHead, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-summed cross-entropy of the domain-restricted softmax (hidden: answer positions, labels: their targets)."""
    return nn.functional.cross_entropy(domain.logits(lm, hidden), domain.targets(labels), reduction="sum")


class DomainLogits(nn.Module):
    """The output layer for generation: scores only the domain rows, so a step's logits have ``len(ids)``
    columns, column ``i`` being token ``ids[i]`` (:class:`~stockllm.llm.generation.TransformersGenerator` maps
    them back), instead of Gemma's 262,144."""

    def __init__(self, lm: Any, domain: DomainHead):
        super().__init__()
        self.register_buffer("rows", domain.weight(lm).detach().clone(), persistent=False)
        self.register_buffer("ids", domain.ids.clone(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.rows.T


def use_domain_head(lm: Any, domain: DomainHead) -> None:
    """Swap ``lm``'s output layer for the domain head (generation only; soft-capped models keep their cap in
    ``forward``, applied after the head)."""
    lm.set_output_embeddings(DomainLogits(lm, domain))
