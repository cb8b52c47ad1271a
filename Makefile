# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install swarmlib, train a 3-node Keras swarm with the launcher
#                 (local vs swarm accuracy), then the 3-node exchange demo
#   make test   - create .venv, install swarmlib[dev,test-backends] and the npm tools (solc-js, anvil) into
#                 .npm/, run ruff, mypy, mkdocs --strict, pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NPM_STAMP := .npm/.installed

.PHONY: demo test lint typecheck docs pytest bench contract npm-tools clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,embedded,dev,test-backends]'
	@touch $(STAMP)

# Node tools the tests use (pinned in tools/package.json and its lock file), kept in .npm/
$(NPM_STAMP): tools/package.json tools/package-lock.json
	@mkdir -p .npm
	cp tools/package.json tools/package-lock.json .npm/
	cd .npm && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NPM_STAMP)

npm-tools: $(NPM_STAMP)

# Rebuild the contract artifact shipped in the package after editing contracts/SwarmLedger.sol
contract: $(NPM_STAMP)
	node contracts/compile.mjs

demo: $(STAMP)
	rm -rf demo-output
	$(VENV)/bin/swarmlib run -n 3 --workdir demo-output examples/quickstart.py
	$(PY) examples/quickstart.py --summarize demo-output
	$(PY) examples/exchange_demo.py --nodes 3 --params 2000000 --rounds 3 --out demo-output

test: $(STAMP) $(NPM_STAMP) lint typecheck docs pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check swarmlib tests benchmarks examples
	$(VENV)/bin/ruff format --check swarmlib tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy swarmlib

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

pytest: $(STAMP) $(NPM_STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) benchmarks/exchange.py --nodes 4 --params 10000000 --plaintext
	$(PY) benchmarks/exchange.py --nodes 4 --params 10000000

clean:
	rm -rf $(VENV) .npm site demo-output .pytest_cache .mypy_cache .ruff_cache .hypothesis
