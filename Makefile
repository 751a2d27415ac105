# Every target sets up .venv on first use (CPU torch from the local wheel), then runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: venv test lint typecheck pytest pytest-threads test-order test-isolated demo demo-smoke docs docs-examples clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects no test; that is not a failure of the suite.
pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The xdist workers of `pytest` compute with one torch thread each (tests/conftest.py). Tests
# that compare numbers across processes or threads run again in one process at the
# machine's default thread count.
pytest-threads: $(STAMP)
	$(BIN)/python -m pytest -q -m numerics

test: lint typecheck pytest pytest-threads

# Order independence: a random order (seed printed; rerun with RANDOM_SEED=...), and every
# test alone in a process where no other test ran (.ci/each_test_alone.py).
RANDOM_SEED ?= last
test-order: $(STAMP)
	$(BIN)/pip install -q pytest-randomly
	$(BIN)/python -m pytest -n 2 --dist load -p randomly $(if $(filter last,$(RANDOM_SEED)),,--randomly-seed=$(RANDOM_SEED))

test-isolated: $(STAMP)
	$(BIN)/python .ci/each_test_alone.py

# The main job: held-out synthetic data downscaled with the packaged demo model, scored
# against the truth and the oracle, with figures (about 1.5-3 minutes on 2 CPU cores).
DEMO_OUT ?= demo-output

demo: $(STAMP)
	$(BIN)/xcorrdiff demo --out $(DEMO_OUT) --overwrite

# The main job from the installed entry point, short (2 members, 2 steps), twice: as this
# CPU computes, and with numpy's newest SIMD groups and torch's vector kernels switched off;
# the scores must agree to the printed digits (about 40 s on 2 cores; CI runs it).
demo-smoke: $(STAMP)
	.ci/demo_smoke

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -e ".[docs]"
	touch $(DOCS_STAMP)

# Offline, warning-free HTML in docs/_build/html; API stubs regenerated from scratch.
docs: $(DOCS_STAMP)
	rm -rf docs/generated
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# Run the >>> examples of the user guide (about 1.5 minutes on 2 cores).
docs-examples: $(STAMP)
	$(BIN)/python docs/check_examples.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache docs/_build docs/generated
