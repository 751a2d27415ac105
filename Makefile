# Every target sets up .venv on first use (CPU torch from the local wheel), then runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: venv test lint typecheck pytest demo docs docs-examples clean

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

test: lint typecheck pytest

# The main job: held-out synthetic data downscaled with the packaged demo model, scored
# against the truth and the oracle, with figures (about 1.5-3 minutes on 2 CPU cores).
DEMO_OUT ?= demo-output

demo: $(STAMP)
	$(BIN)/xcorrdiff demo --out $(DEMO_OUT) --overwrite

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
