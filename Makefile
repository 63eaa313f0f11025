# Every target sets up .venv from the pinned requirements first (only when they changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test test-fast bench faults check-html lint format clean gpu-check

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check pip==25.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(PY) -m codeclab.demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

# On a CUDA host: a codec package encoded and decoded on the GPU inside the sandbox, the stream decoded again on
# the CPU and compared byte for byte; fps printed. Refuses (exit 2) where there is no CUDA device.
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py $(if $(PACKAGE),--package $(PACKAGE))

# The developer loop (under a minute on 2 cores): unit, worker and handler tests, without the ones marked slow
# (the sandbox's red-team and escape corpora, training, the stall watchdog's waits) and without local/ and infra/.
# Three workers on two cores: many of these tests wait on child processes. The fuzzing plugins stay unloaded.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow" -p no:hypothesispytest -p no:schemathesis tests/unit tests/worker tests/aws

# Every benchmark (several minutes), then one table of this run's figures (benchmarks/results/summary.md).
# One run id for all of them: bench_summary.py refuses result files that an older run left behind.
bench: export CODECLAB_BENCH_RUN_ID := $(shell date -u +%Y%m%dT%H%M%SZ)
bench: $(STAMP)
	$(PY) benchmarks/bench_worker.py
	$(PY) benchmarks/bench_workflow.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_rd.py
	$(PY) benchmarks/bench_cold_import.py
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_sandbox.py
	$(PY) benchmarks/bench_cost.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_learned.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_summary.py

# The fault-injection matrix on the local workflow (about a minute); exits 1 if any row is not final and correct.
faults: $(STAMP)
	$(PY) -m codeclab.local.fault_matrix

# Renders a synthetic report's rd.html in headless Chromium (apt-get install chromium); not part of `test`.
check-html: $(STAMP)
	$(PY) benchmarks/check_html.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
