# Two commands do all the set-up:  `make app` (the browser app) and `make test` (the whole test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# no byte-compiling at install (Python compiles what it imports, once): a fresh set-up ~1 minute faster
PIP := $(BIN)/python -m pip --disable-pip-version-check
INSTALL := $(PIP) install --no-compile

.PHONY: app test bench screenshots chromium clean

$(BIN)/python:
	$(PY) -c 'import sys; sys.exit("patchlab needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PY) -m venv $(VENV)

$(VENV)/.app-installed: pyproject.toml | $(BIN)/python
	$(INSTALL) -e ".[app,onnx,privacy]"
	touch $@

# a superset of the app's set, installed in one pass (it marks the app's as installed too)
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(INSTALL) -e ".[app,onnx,cluster,dev,privacy]" adversarial-robustness-toolbox==1.20.1
	# torchattacks pins requests~=2.25 and would drag streamlit back to 1.9: install it without deps.
	$(INSTALL) --no-deps torchattacks==3.5.1
	touch $(VENV)/.app-installed $@

app: $(VENV)/.app-installed
	$(BIN)/patchlab app

# Debian's chromium for the browser tests and poppler's pdftoppm for the print tests (rasterising our PDFs); waits up
# to APT_LOCK_TIMEOUT seconds (default 600) for apt's lock when another process holds it, then says what to do.
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || \
	  scripts/apt-install.sh chromium poppler-utils

test: $(VENV)/.dev-installed chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Refresh the app screenshots (docs/screenshots/) from a real-browser run; tests alone never write there.
screenshots: $(VENV)/.dev-installed chromium
	PATCHLAB_DOCS_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/e2e


# Every benchmark and its targets (issue #14); fails when a target is missed and ends with one table of all of them
# (also written to test-artifacts/benchmarks.md). Run it on an otherwise idle machine: other load skews the times.
bench: $(VENV)/.dev-installed chromium
	$(BIN)/python -m pytest -q -m benchmark -s tests/benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
