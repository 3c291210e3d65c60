# Two commands for a fresh machine: `make demo` runs the main job, `make test` the whole suite.
# Each creates .venv and installs the package on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	@# A CJK font so K-line charts can show Chinese company names (best effort: needs root and apt).
	@fc-list 2>/dev/null | grep -qi 'wqy\|noto sans cjk' || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null)) ; } || \
	  echo "note: no CJK font installed; charts will label companies by code" >&2
	@# Debian's chromium for the web app's browser tests (Playwright drives it; no browser download). Best effort like the font.
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) ; } || \
	  echo "note: no /usr/bin/chromium; the browser tests will be skipped (apt-get install chromium)" >&2
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# llama-cpp-python (dev extra) compiles llama.cpp from its sdist: portable AVX2 code, no multimodal library
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF" $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: install demo test test-fast bench
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stockllm demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'
