# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# BACKSERV_LOCAL=1 also installs the local extra (torch, diffusers), so its tests run too
COMMA  := ,
EXTRAS := dev$(if $(filter 1,$(BACKSERV_LOCAL)),$(COMMA)local)
STAMP  := $(VENV)/.installed-$(subst $(COMMA),-,$(EXTRAS))-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint imports format install clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/backserv serve

test: $(STAMP)
	$(BIN)/pytest

# the benchmark harness (wrk; see bench/RESULTS.md, which it rewrites); a few minutes
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check gateway providers tests bench tools
	$(BIN)/ruff format --check gateway providers tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m tools.check_imports

# no import cycle in gateway/ and providers/, and the layer contracts of pyproject.toml
# ([tool.backserv.imports]); see tools/check_imports.py
imports: $(STAMP)
	$(BIN)/python -m tools.check_imports

format: $(STAMP)
	$(BIN)/ruff format gateway providers tests bench tools
	$(BIN)/ruff check --fix gateway providers tests bench tools

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
