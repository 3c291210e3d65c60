"""The served backend: the same prompts sent to an OpenAI-compatible ``/v1/completions`` server.

Any server that runs the base model with the model dir's LoRA adapter will do: vLLM on a GPU box
(``vllm serve BASE --enable-lora --lora-modules stockllm=MODEL_DIR``) or llama.cpp's server on a CPU
(``python -m llama_cpp.server --model BASE.gguf --lora_path MODEL_DIR/adapter_model.gguf``); docs/llm.md has
the commands. The server is named by ``STOCKLLM_OPENAI_BASE_URL`` (or the ``base_url`` option), the model by
``STOCKLLM_OPENAI_MODEL`` (default ``stockllm``, the adapter's name in the commands above); a key in
``OPENAI_API_KEY`` is sent as a bearer token and never logged.

The completions API takes text, so each prompt — token ids from :func:`stockllm.llm.chat.encode_prompt` — is
rendered back to text with the model dir's tokenizer, special tokens included, and without its leading BOS
token, which the server adds itself when it tokenises (vLLM, and llama.cpp with ``add_bos_token`` GGUFs). The
server stops at the model's end-of-turn token (``stop_token_ids`` is sent too, for vLLM) or the token budget;
an answer of several lines is asked a line at a time (see ``_complete``). A model dir's domain head is sent as ``logit_bias`` (+100 on each
answer token), so greedy answers pick from the same tokens as the other backends. Requests run concurrently
from a thread pool; a timeout or a server error is a one-line :class:`StockLLMError`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests as http

from ..errors import StockLLMError
from .chat import stop_token_ids
from .domain_head import load_domain
from .generation import SAMPLE_TEMPERATURE, SAMPLE_TOP_P, GenerationRequest, cut_after_lines

BASE_URL_ENV = "STOCKLLM_OPENAI_BASE_URL"
MODEL_ENV = "STOCKLLM_OPENAI_MODEL"
KEY_ENV = "OPENAI_API_KEY"
DEFAULT_MODEL = "stockllm"
DEFAULT_TIMEOUT = 300.0  # seconds for one whole answer
DEFAULT_CONCURRENCY = 8
DOMAIN_BIAS = 100.0  # the largest logit bias OpenAI's API allows
# no repetition penalty, top-k or min-p (llama.cpp's server defaults to 1.1, 40 and 0.05): the other backends use none
PLAIN_SAMPLING = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}


class OpenAIGenerator:
    """A :class:`~stockllm.llm.generation.Generator` on an OpenAI-compatible completions server."""

    name = "openai"

    def __init__(self, tokenizer: Any, *, base_url: str, model: str = DEFAULT_MODEL, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, concurrency: int = DEFAULT_CONCURRENCY, domain: list[int] | None = None):
        if timeout <= 0 or concurrency < 1:
            raise StockLLMError(f"the served backend needs a positive timeout and concurrency (got {timeout}, {concurrency})")
        if not base_url.startswith(("http://", "https://")):
            raise StockLLMError(f"{BASE_URL_ENV} must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
        self.tokenizer = tokenizer
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.timeout = timeout
        self.concurrency = concurrency
        self.stop_ids = stop_token_ids(tokenizer)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # the domain head as a server takes it: +100 on every answer token outweighs any other token's logit
        self.logit_bias = {str(token): DOMAIN_BIAS for token in domain} if domain else None

    @classmethod
    def from_model_dir(cls, model_dir: Path | str, *, base_url: str | None = None, model: str | None = None,
                       timeout: float = DEFAULT_TIMEOUT, concurrency: int = DEFAULT_CONCURRENCY) -> "OpenAIGenerator":
        """The model dir's tokenizer and the server named by the options or ``STOCKLLM_OPENAI_BASE_URL`` /
        ``STOCKLLM_OPENAI_MODEL``; the key, if any, from ``OPENAI_API_KEY``."""
        from transformers import AutoTokenizer

        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise StockLLMError(f"the openai backend needs the server's URL: set {BASE_URL_ENV}=http://HOST:PORT/v1 "
                                "(a vLLM or llama.cpp server with the model dir's adapter; see docs/llm.md)")
        if not (Path(model_dir) / "tokenizer_config.json").exists():
            raise StockLLMError(f"{model_dir} has no tokenizer; give a trained model dir (run `stockllm train`)")
        return cls(AutoTokenizer.from_pretrained(str(model_dir)), base_url=base_url,
                   model=model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL, api_key=os.environ.get(KEY_ENV),
                   timeout=timeout, concurrency=concurrency, domain=load_domain(model_dir))

    def prompt_text(self, prompt_ids: list[int]) -> str:
        """The prompt as the server should see it: the ids rendered to text, less a leading BOS it adds itself."""
        bos = self.tokenizer.bos_token_id
        ids = prompt_ids[1:] if bos is not None and prompt_ids[:1] == [bos] else prompt_ids
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(self, requests: list[GenerationRequest], *, sample: bool = False, seed: int = 0,
                 samples: int = 1) -> list[list[str]]:
        """``samples`` answers per request, fetched concurrently: greedy (temperature 0) unless ``sample``,
        when each sample is a request of its own with its own seed."""
        if samples < 1:
            raise StockLLMError(f"samples must be at least 1 (got {samples})")
        copies = samples if sample else 1
        jobs = [(index, copy) for index in range(len(requests)) for copy in range(copies)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            texts = list(pool.map(lambda job: self._complete(requests[job[0]], sample, seed + 1000 * job[0] + job[1]), jobs))
        answers: list[list[str]] = [[] for _ in requests]
        for (index, _), text in zip(jobs, texts):
            answers[index].append(text)
        return [found if sample else found * samples for found in answers]

    def _complete(self, request: GenerationRequest, sample: bool, seed: int) -> str:
        """One answer. With ``request.lines`` it is written a line per completion (stop at the newline, end of
        turn biased away before the last line), each later line opened by its forced date: a completions API cannot force tokens
        mid-answer, and a llama.cpp or vLLM server reuses the cached prompt prefix, so rounds cost little."""
        prompt = self.prompt_text(request.prompt_ids)
        if not request.lines:
            return self._post(prompt, request.max_new_tokens, sample, seed)[0]
        answer, budget = "", request.max_new_tokens
        for line in range(request.lines):
            piece, used, finished = self._post(prompt + answer, budget, sample, seed + line, one_line=True,
                                               refuse_end=line < request.lines - 1)
            answer, budget = answer + piece, budget - used
            if not finished or budget <= 0:
                break
            answer += "\n"
            if line < len(request.line_prefixes):
                answer += self.tokenizer.decode(list(request.line_prefixes[line]))
        return cut_after_lines(answer, request.lines)

    def _post(self, prompt: str, max_tokens: int, sample: bool, seed: int, one_line: bool = False,
              refuse_end: bool = False) -> tuple[str, int, bool]:
        """One completion: its text, the tokens it used, and whether it ended on the newline asked for.
        Not streamed: a streaming llama.cpp server answers a failed request with an empty 200 stream, which
        would pass for an empty answer."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": SAMPLE_TEMPERATURE if sample else 0.0, "top_p": SAMPLE_TOP_P if sample else 1.0,
                "seed": seed, "stop_token_ids": self.stop_ids, **PLAIN_SAMPLING}
        bias = dict(self.logit_bias or {})
        if one_line:
            body["stop"] = ["\n"]
        if refuse_end:
            bias.update({str(token): -DOMAIN_BIAS for token in self.stop_ids})  # no end of turn before the last line
        if bias:
            body["logit_bias"] = bias
        try:
            reply = http.post(self.url, json=body, headers=self._headers, timeout=self.timeout)
        except http.Timeout:
            raise StockLLMError(f"the completions server at {self.url} did not answer within {self.timeout:g} s; "
                                "raise the timeout or lower the concurrency") from None
        except http.ConnectionError as exc:
            raise StockLLMError(f"cannot reach the completions server at {self.url} ({type(exc).__name__}); "
                                f"is it running and is {BASE_URL_ENV} right?") from None
        if reply.status_code != 200:
            raise StockLLMError(f"the completions server at {self.url} answered {reply.status_code}: {_error_message(reply)}")
        try:
            payload = reply.json()
            choice = payload["choices"][0]
            text = choice["text"]
            used = int((payload.get("usage") or {}).get("completion_tokens") or len(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
        except (ValueError, KeyError, TypeError, IndexError):
            raise StockLLMError(f"the server at {self.url} is not an OpenAI-compatible completions server "
                                f"(reply {_one_line(reply.text, 80)!r})") from None
        return text, used, choice.get("finish_reason") == "stop"


def _error_message(reply: http.Response) -> str:
    """The server's own error message (OpenAI's ``error.message``, FastAPI's ``detail``) on one line."""
    try:
        payload = reply.json()
    except ValueError:
        return _one_line(reply.text or reply.reason)
    if isinstance(payload, dict):
        payload = payload.get("error", payload.get("detail", payload))
        if isinstance(payload, dict):
            payload = payload.get("message", payload)
    return _one_line(payload)


def _one_line(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
