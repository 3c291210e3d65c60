"""Chat turns → token ids, the same way for training and for inference.

Both sides render text with the tokenizer's own ``apply_chat_template`` (so the model's special tokens are
used, as the write-up does), and both tokenise the prompt — everything up to and including the assistant
header — on its own. A training example is ``prompt ids + answer ids``; inference feeds exactly the prompt
ids. Splitting at the header also gives the loss mask: labels are ``-100`` on the prompt, so only the
assistant answer (and its end-of-turn token, which teaches the model to stop) carries loss.
"""

from __future__ import annotations

from typing import Any

from ..errors import StockLLMError

IGNORE_INDEX = -100
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>")


def prompt_text(tokenizer: Any, messages: list[dict]) -> str:
    """The rendered prompt for the turns before the answer, ending with the assistant header."""
    turns = [m for m in messages if m["role"] != "assistant"]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, messages: list[dict]) -> list[int]:
    """Token ids the model is given at inference (the template already holds any BOS token)."""
    return tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def encode_example(tokenizer: Any, messages: list[dict]) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` of a user + assistant example; labels mask everything but the answer."""
    if not messages or messages[-1]["role"] != "assistant":
        raise StockLLMError("a training example must end with the assistant's answer turn")
    prompt = prompt_text(tokenizer, messages[:-1])
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise StockLLMError("this model's chat template renders the prompt differently inside a full conversation; use another model")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an answer: the end-of-sequence token and the template's end-of-turn token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
    return sorted(set(ids))
