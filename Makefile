# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `make run` installs what serving needs (the package); the targets that develop it (test, lint,
# bench, ...) add the dev extra. BACKSERV_LOCAL=1 also installs the local extra (torch,
# diffusers), so its tests run too. Each install leaves a stamp named for what it installed and
# pyproject.toml's checksum: an edited pyproject.toml installs again, and a dev install
# covers a run.
COMMA   := ,
LOCAL   := $(if $(filter 1,$(BACKSERV_LOCAL)),local)
SUM     := $(shell cksum < pyproject.toml | cut -d' ' -f1)
RUN_REQ := .$(if $(LOCAL),[$(LOCAL)])
DEV_REQ := .[dev$(if $(LOCAL),$(COMMA)$(LOCAL))]
RUN_STAMP := $(VENV)/.installed-run$(if $(LOCAL),-local)-$(SUM)
DEV_STAMP := $(VENV)/.installed-dev$(if $(LOCAL),-local)-$(SUM)
PIP     := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint imports format install install-dev clean bench screenshots

$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '$(RUN_REQ)'
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SUM)' -delete
	@touch $@

$(DEV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '$(DEV_REQ)'
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SUM)' -delete
	@touch $@ $(RUN_STAMP)

# what serving needs, and no more (`make run` uses it)
install: $(RUN_STAMP)

# the development tools too (pytest, mypy, ruff, Playwright, ...)
install-dev: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/backserv serve

test: $(DEV_STAMP)
	$(BIN)/pytest

# the benchmark harness (wrk; see bench/RESULTS.md, which it rewrites); a few minutes
bench: $(DEV_STAMP)
	$(BIN)/python -m bench

# the web console's pictures in docs/screenshots/ (1280x800 and a phone's width), taken by
# the browser tests in Debian's chromium; the README links them
screenshots: $(DEV_STAMP)
	BACKSERV_SCREENSHOTS=1 $(BIN)/pytest -q tests/web/test_browser.py tests/web/test_console.py

lint: $(DEV_STAMP)
	$(BIN)/ruff check gateway providers tests bench tools
	$(BIN)/ruff format --check gateway providers tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m tools.check_imports

# no import cycle in gateway/ and providers/, and the layer contracts of pyproject.toml
# ([tool.backserv.imports]); see tools/check_imports.py
imports: $(DEV_STAMP)
	$(BIN)/python -m tools.check_imports

format: $(DEV_STAMP)
	$(BIN)/ruff format gateway providers tests bench tools
	$(BIN)/ruff check --fix gateway providers tests bench tools

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
