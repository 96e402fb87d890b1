# Crisis triage assistant. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.installed
MODEL_STAMP := models/.trained
RASA_INPUTS := config/config.yml config/domain.yml $(shell find data -name '*.yml' 2>/dev/null)
# No clinic data or usage may leave the machine (ARCHITECTURE.md invariant 8).
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help setup run test lint validate clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

setup: $(STAMPS) $(MODEL_STAMP) ## create .venv (Python 3.10), install, train the Rasa model; fast when done

$(STAMPS): pyproject.toml
	@test -x $(PY) || { py=$$(scripts/find-python310) && "$$py" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

$(MODEL_STAMP): $(STAMPS) $(RASA_INPUTS)
	$(VENV)/bin/rasa train --domain config/domain.yml --data data --config config/config.yml \
	    --out models --fixed-model-name triage --quiet
	@touch $@

run: setup ## run the assistant (console mode without TELEGRAM_BOT_TOKEN)
	$(VENV)/bin/triage up

test: setup ## run every test (starts and stops its own Rasa servers; the console's in Debian's Chromium)
	@test -x /usr/bin/chromium || { echo "make test: Chromium is missing for the browser tests: apt-get install -y chromium" >&2; exit 1; }
	$(PY) -m pytest

validate: setup ## rasa data validate
	$(VENV)/bin/rasa data validate --domain config/domain.yml --data data --config config/config.yml

lint: setup ## compile-check the code
	$(PY) -m compileall -q bot actions tests bench

clean: ## remove the venv, models and local state
	rm -rf $(VENV) models var .pytest_cache
