# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install swarmlib, run a real 3-node swarm exchange
#   make test   - create .venv, install swarmlib[dev], run ruff, mypy, mkdocs --strict, pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest bench clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/exchange_demo.py --nodes 3 --params 2000000 --rounds 3 --out demo-output

test: $(STAMP) lint typecheck docs pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check swarmlib tests benchmarks examples
	$(VENV)/bin/ruff format --check swarmlib tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy swarmlib

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir site

pytest: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) benchmarks/exchange.py --nodes 4 --params 10000000 --plaintext
	$(PY) benchmarks/exchange.py --nodes 4 --params 10000000

clean:
	rm -rf $(VENV) site demo-output .pytest_cache .mypy_cache .ruff_cache .hypothesis
