# Every target that needs Python builds .venv on first use; later calls only check a stamp file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/default

.PHONY: run test lint typecheck bench bench-transform bench-serving compile clean help

help:
	@echo "make run        - generate default data, run the whole pipeline locally (KFP local runner), serve the model"
	@echo "make test       - lint, type-check and run the test suite"
	@echo "make bench      - run the benchmarks; reports go to bench/results/"
	@echo "make compile    - recompile pipelines/pipeline.yaml"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/skewless run --workdir $(WORKDIR)

test: $(STAMP) lint typecheck
	$(BIN)/pytest tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

compile: $(STAMP)
	$(BIN)/skewless compile

bench: bench-transform bench-serving

bench-transform: $(STAMP)
	$(BIN)/python bench/bench_transform.py

# The load generator is wrk (Debian package); without it the benchmark falls back to a Python
# client, which shares the CPU with the server and understates every variant.
bench-serving: $(STAMP)
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get install -y -qq wrk >/dev/null) || echo "wrk not installed: using the Python client"
	$(BIN)/python bench/bench_serving.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
