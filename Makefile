# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stnlab-installed
DEMO_OUT ?= runs/demo

.PHONY: venv test lint docs docs-serve format demo bench clean

venv: $(STAMP)

# PyTorch and torchvision first, the builds chosen for this machine (tools/install-torch.sh
# says how), so that installing the package finds them satisfied; torch is pinned to the one
# installed, so that no extra's requirement replaces it.
$(STAMP): pyproject.toml tools/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	bash tools/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]' \
	  "torch==$$($(BIN)/python -c 'import torch; print(torch.__version__)')"
	touch $(STAMP)

# Style, then the architecture: the layers contract in pyproject.toml ([tool.importlinter]).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The documentation site (docs/, mkdocs.yml), built with every warning an error.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

docs-serve: venv
	$(BIN)/mkdocs serve

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The tests run in a random order: pytest-randomly prints the seed it chose, and
# `make test PYTEST_ARGS=--randomly-seed=N` replays that order.
test: lint docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/stnlab experiment --preset demo --out $(DEMO_OUT)

bench: venv
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
