"""The served backend against a real llama.cpp server (llama-cpp-python[server]) on 127.0.0.1 running the tiny
trained model's GGUF base and adapter: same prompts, same answers, concurrency, and one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests as http

from stockllm.errors import StockLLMError
from stockllm.llm.generation import GenerationRequest, cut_after_lines
from stockllm.llm.gguf_export import model_dir_ggufs
from stockllm.llm.served import BASE_URL_ENV, OpenAIGenerator
from test_llamacpp import generator, reference, requests, trained_dir  # noqa: F401  (module fixtures shared with llama.cpp)

STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_dir):  # noqa: F811
    """``python -m llama_cpp.server`` with the model dir's base GGUF and adapter, as docs/llm.md starts it."""
    base, adapter = model_dir_ggufs(trained_dir)
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(base), "--lora_path", str(adapter),
               "--model_alias", "stockllm", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if http.get(f"{url}/models", timeout=2).ok:
                break
        except http.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the llama.cpp server did not start: {process.stderr.read()[-2000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def served(trained_dir, server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(BASE_URL_ENV, server)
    return OpenAIGenerator.from_model_dir(trained_dir, concurrency=4)


def test_the_server_tokenises_the_rendered_prompt_back_to_the_prompt_ids(served, server, requests):  # noqa: F811
    """The text leaves out the BOS token; the server puts it back (its tokenize endpoint, like its completions)."""
    for request in requests:
        text = served.prompt_text(request.prompt_ids)
        assert not text.startswith(served.tokenizer.bos_token)
        reply = http.post(server.removesuffix("/v1") + "/extras/tokenize", json={"input": text}, timeout=30)
        assert reply.json()["tokens"] == request.prompt_ids


def test_served_answers_equal_the_local_llama_cpp_backend(served, requests, generator):  # noqa: F811
    local = generator.generate(requests)
    answers = served.generate(requests)
    assert answers == [[cut_after_lines(text, request.lines) for text in texts] for request, texts in zip(requests, local)]


def test_concurrent_requests_each_get_their_own_answer(served, requests):  # noqa: F811
    one_at_a_time = [served.generate([request])[0] for request in requests[:4]]
    assert served.generate(requests[:4] * 3) == one_at_a_time * 3  # 12 requests, 4 in flight at once


def test_a_slow_server_is_a_one_line_timeout(trained_dir, server, requests):  # noqa: F811
    impatient = OpenAIGenerator.from_model_dir(trained_dir, base_url=server, timeout=0.001)
    with pytest.raises(StockLLMError, match="did not answer within 0.001 s") as error:
        impatient.generate(requests[:1])
    assert "\n" not in str(error.value)


def test_a_server_error_is_one_line_with_the_servers_reason(served, requests):  # noqa: F811
    too_long = GenerationRequest(requests[0].prompt_ids * 40, max_new_tokens=8)  # beyond the server's 1024-token context
    with pytest.raises(StockLLMError, match=r"answered 400: .*maximum context length is 1024 tokens") as error:
        served.generate([too_long])
    assert "\n" not in str(error.value)


def test_no_server_configured_or_reachable_is_a_one_line_error(trained_dir, monkeypatch):  # noqa: F811
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    with pytest.raises(StockLLMError, match=f"set {BASE_URL_ENV}="):
        OpenAIGenerator.from_model_dir(trained_dir)
    closed = OpenAIGenerator.from_model_dir(trained_dir, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(StockLLMError, match="cannot reach the completions server"):
        closed.generate([GenerationRequest([1, 2, 3], max_new_tokens=2)])
