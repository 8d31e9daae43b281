# FHV orchestration lab. `make` (or `make help`) lists every target.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := help

# Every path is anchored at the folder holding this Makefile, so `make -C lab ...`
# and `make -f lab/Makefile ...` behave exactly like `make` inside the checkout.
ROOT := $(patsubst %/,%,$(dir $(realpath $(lastword $(MAKEFILE_LIST)))))
ifneq ($(words $(ROOT)),1)
$(error the lab's path "$(ROOT)" contains spaces; clone it into a folder without spaces)
endif

# ---- knobs (override on the command line or in the environment) -------------------
PYTHON        ?= python3                 # interpreter used to create .venv (>= 3.11)
UV_VERSION    ?= 0.13.9                  # uv fetched from PyPI when none is on PATH
DATE          ?= 2021-08-15              # run date: trains on DATE-2 months, validates on DATE-1
MONTHS        ?=                         # explicit months for `make data`, e.g. "2021-01 2021-02"
FORCE         ?= 0                       # 1 = download again even when a valid file is present
DATA_URL      ?= https://d37ci6vzurychx.cloudfront.net/trip-data  # where fhv_tripdata_YYYY-MM.parquet lives
DATA_DIR      ?= $(ROOT)/data            # downloaded months
ARTIFACTS_DIR ?= $(ROOT)/artifacts       # model-, dv-, metrics-{DATE}.*
PREFECT_HOME  ?= $(ROOT)/env/prefect     # the lab's Prefect home: profile, database, storage
PYTEST_ARGS   ?=                         # extra pytest arguments, e.g. PYTEST_ARGS="-k download -x"
PREFECT_HOST  ?= 127.0.0.1               # where `make server` listens (0.0.0.0: whole network)
PREFECT_PORT  ?= 4200                    # ... and on which port
API_URL       ?=                         # API the lab's clients use; empty: http://PREFECT_HOST:PREFECT_PORT/api
UI_API_URL    ?=                         # API URL the UI gives the browser; empty: API_URL
STORAGE_URL   ?=                         # result storage: folder or fsspec URL; empty: PREFECT_HOME/results
WORK_POOL     ?= fhv-pool                # process work pool the deployment runs on
WORK_QUEUE    ?= fhv-queue               # queue in that pool
DEPLOYMENT    ?= fhv-monthly             # deployment name (flow: fhv-duration-training)
CRON          ?= 0 9 15 * *              # the course's schedule: 09:00 on the 15th of each month
TIMEZONE      ?= UTC                     # time zone of CRON
ONCE          ?= 0                       # 1: `make worker` runs what is due, then exits
WATCH         ?= 0                       # 1: `make run` waits for the run to finish
BIG           ?= 0                       # 1: `make bench` adds two 23 M-row months (~0.9 GB in .bench/, minutes)

# `?=` keeps the blanks before a trailing comment: strip every knob once, make folders absolute.
KNOBS := PYTHON UV_VERSION DATE MONTHS FORCE DATA_URL DATA_DIR ARTIFACTS_DIR PREFECT_HOME \
  PYTEST_ARGS PREFECT_HOST PREFECT_PORT API_URL UI_API_URL STORAGE_URL WORK_POOL WORK_QUEUE \
  DEPLOYMENT CRON TIMEZONE ONCE WATCH BIG
$(foreach knob,$(KNOBS),$(eval $(knob) := $$(strip $$($(knob)))))
DATA_DIR      := $(abspath $(DATA_DIR))
ARTIFACTS_DIR := $(abspath $(ARTIFACTS_DIR))
PREFECT_HOME  := $(abspath $(PREFECT_HOME))
CLIENT_HOST   := $(if $(filter 0.0.0.0 ::,$(PREFECT_HOST)),127.0.0.1,$(PREFECT_HOST))
API_URL       := $(or $(API_URL),http://$(CLIENT_HOST):$(PREFECT_PORT)/api)
UI_API_URL    := $(or $(UI_API_URL),$(API_URL))
STORAGE_URL   := $(or $(STORAGE_URL),$(PREFECT_HOME)/results)
FLOW_NAME     := fhv-duration-training

VENV   := $(ROOT)/.venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.lab-stamp
TOOLS  := $(ROOT)/.tools
UV     := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)

# One-line check of DATE before anything starts (a recipe line: `@$(CHECK_DATE)`).
CHECK_DATE = $(VPY) -c 'import sys; from fhvlab.months import parse_date; parse_date(sys.argv[1])' \
  "$(DATE)" 2>/dev/null || { echo "error: DATE='$(DATE)' is not a date YYYY-MM-DD (e.g. 2021-08-15)" >&2; exit 1; }

# Everything a recipe starts sees the lab's locations and runs offline-friendly. API_URL is
# the one source of truth for clients: it is exported, so it wins over any profile value.
export PREFECT_HOME DATA_DIR ARTIFACTS_DIR DATA_URL PREFECT_HOST PREFECT_PORT API_URL UI_API_URL
export WORK_POOL WORK_QUEUE DEPLOYMENT CRON TIMEZONE
export LAB_ROOT := $(ROOT)
export PREFECT_API_URL := $(API_URL)
export PREFECT_LOGGING_EXTRA_LOGGERS := fhvlab
ifdef PREFECT_SERVER_API_AUTH_STRING
export PREFECT_API_AUTH_STRING ?= $(PREFECT_SERVER_API_AUTH_STRING)
endif
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT := false
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

##@ Getting started
.PHONY: help
help: ## show this list of targets (the default goal)
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@/ {printf "\n%s\n", substr($$0, 5); next} \
	  /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf '\nKnobs (VAR=value on the command line): DATE=%s PREFECT_HOME=%s\n' '$(DATE)' '$(PREFECT_HOME)'

.PHONY: setup
setup: $(STAMP) hooks ## install everything: check Python, get uv, build .venv from uv.lock, git hooks
	@$(VPY) -c 'import platform; from importlib.metadata import version; print("setup: ready (Python", platform.python_version() + ", Prefect", version("prefect") + ")")'

# The stamp is written last: an interrupted setup leaves no stamp, so the next run redoes it.
$(STAMP): $(ROOT)/pyproject.toml $(ROOT)/uv.lock | python-check $(UV)
	@echo "setup: syncing $(VENV) from uv.lock"
	@cd $(ROOT) && $(UV) sync --locked --python $(PYTHON) --quiet \
	  || { echo "setup: could not install the locked packages (is the package registry reachable? see the lines above)" >&2; exit 1; }
	@touch $@

.PHONY: python-check
python-check:
	@command -v $(PYTHON) >/dev/null \
	  || { echo "setup: '$(PYTHON)' not found; install Python >= 3.11 or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "setup: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the lab needs >= 3.11 (Prefect 3.9 does): pass PYTHON=python3.11 or newer" >&2; exit 1; }

$(TOOLS)/bin/uv: | python-check
	@echo "setup: uv not on PATH; installing uv $(UV_VERSION) from PyPI into $(TOOLS)"
	@rm -rf $(TOOLS)
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" \
	  || { rm -rf $(TOOLS); echo "setup: could not install uv from PyPI (is the package registry reachable?)" >&2; exit 1; }

.PHONY: hooks
hooks: | $(STAMP)
	@if ! git -C $(ROOT) rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "setup: not a git checkout; skipping pre-commit hooks"; \
	elif [ -n "$$(git -C $(ROOT) config --get core.hooksPath || true)" ]; then \
	  echo "setup: git core.hooksPath is set; skipping pre-commit install (run it yourself if you want the hooks)"; \
	elif [ ! -f "$$(git -C $(ROOT) rev-parse --absolute-git-dir)/hooks/pre-commit" ]; then \
	  cd $(ROOT) && $(VENV)/bin/pre-commit install --install-hooks >/dev/null && echo "setup: pre-commit hook installed"; \
	fi

.PHONY: doctor
doctor: ## check the set-up, one line per check, with the command that fixes each (changes nothing)
	@$(PYTHON) $(ROOT)/scripts/doctor.py

.PHONY: tour
tour: ## the whole module in order (data, server, ..., deploy, train, run + worker) and a summary
	@echo "tour: 1/6 data";        $(MAKE) --no-print-directory -f $(ROOT)/Makefile data
	@echo "tour: 2/6 server, config, storage, work queue, deployment"; \
	  $(MAKE) --no-print-directory -f $(ROOT)/Makefile deploy
	@echo "tour: 3/6 train";       $(MAKE) --no-print-directory -f $(ROOT)/Makefile train
	@echo "tour: 4/6 run the deployment now"; $(MAKE) --no-print-directory -f $(ROOT)/Makefile run
	@echo "tour: 5/6 a worker runs it"; $(MAKE) --no-print-directory -f $(ROOT)/Makefile worker ONCE=1
	@echo "tour: 6/6 summary"
	@$(VPY) -m fhvlab summary --date "$(DATE)"
	@$(VENV)/bin/prefect work-queue ls --pool "$(WORK_POOL)"

##@ The module, step by step
.PHONY: data
data: $(STAMP) ## download the FHV months DATE needs (DATE-2, DATE-1) or exactly MONTHS="2021-01 2021-02"; FORCE=1 re-downloads
	@$(VPY) -m fhvlab data $(if $(MONTHS),--months $(MONTHS),--date "$(DATE)") $(if $(filter 1 yes true,$(FORCE)),--force,)

.PHONY: train
train: $(STAMP) ## train the duration model for DATE as a Prefect flow (starts the server if needed)
	@$(CHECK_DATE)
	@$(VPY) -m fhvlab server start
	@cd $(ROOT) && $(VPY) flows/train.py --date "$(DATE)"

.PHONY: server
server: $(STAMP) ## start the Prefect server in the background (course: prefect orion start); no-op if up
	@$(VPY) -m fhvlab server start

.PHONY: server-status
server-status: $(STAMP) ## is the lab's server up? PID, API URL, health
	@$(VPY) -m fhvlab server status

.PHONY: server-stop
server-stop: $(STAMP) ## stop the server the lab started (and only that one)
	@$(VPY) -m fhvlab server stop

.PHONY: config
config: $(STAMP) ## point the lab profile at API_URL (course: prefect config set PREFECT_ORION_UI_API_URL=...)
	@$(VPY) -m fhvlab config

.PHONY: config-view
config-view: $(STAMP) ## show the settings in effect and where each comes from (prefect config view)
	@$(VENV)/bin/prefect config view --show-sources

.PHONY: config-reset
config-reset: $(STAMP) ## unset what `make config` and `make storage` set in the lab profile
	@$(VPY) -m fhvlab config --reset

.PHONY: storage
storage: server config ## result storage block + persistence on (course: prefect storage create)
	@$(VPY) -m fhvlab storage --url "$(STORAGE_URL)"

.PHONY: storage-ls
storage-ls: $(STAMP) ## list storage blocks (course: prefect storage ls; now prefect block ls)
	@$(VPY) -m fhvlab api-check
	@$(VENV)/bin/prefect block ls

.PHONY: work-queue
work-queue: server ## process work pool WORK_POOL with queue WORK_QUEUE (course: prefect work-queue create)
	@$(VPY) -m fhvlab work-queue --pool "$(WORK_POOL)" --queue "$(WORK_QUEUE)"

.PHONY: work-queue-ls
work-queue-ls: $(STAMP) ## list the work queues of WORK_POOL (prefect work-queue ls)
	@$(VPY) -m fhvlab api-check
	@$(VENV)/bin/prefect work-queue ls --pool "$(WORK_POOL)"

.PHONY: deploy
deploy: server config storage work-queue ## deploy the training flow from prefect.yaml on CRON (course: DeploymentSpec + deployment create)
	@cd $(ROOT) && $(VENV)/bin/prefect --no-prompt deploy --all --prefect-file prefect.yaml
	@echo "deploy: $(FLOW_NAME)/$(DEPLOYMENT) on $(WORK_POOL)/$(WORK_QUEUE), cron '$(CRON)' ($(TIMEZONE))"

.PHONY: worker
worker: $(STAMP) ## run a worker on WORK_POOL (course: prefect agent start); ONCE=1 runs what is due and exits
	@$(VPY) -m fhvlab api-check
	@cd $(ROOT) && $(VENV)/bin/prefect worker start --pool "$(WORK_POOL)" --work-queue "$(WORK_QUEUE)" \
	  --install-policy never $(if $(filter 1 yes true,$(ONCE)),--run-once,)

.PHONY: run
run: $(STAMP) ## trigger the deployment now for DATE (prefect deployment run); WATCH=1 waits for it
	@$(VPY) -m fhvlab api-check
	@$(CHECK_DATE)
	@$(VENV)/bin/prefect deployment run "$(FLOW_NAME)/$(DEPLOYMENT)" --param date="$(DATE)" \
	  $(if $(filter 1 yes true,$(WATCH)),--watch --watch-timeout 1800,)

.PHONY: ui
ui: $(STAMP) ## screenshot of the deployment's page in the UI (headless Chromium) -> ARTIFACTS_DIR/ui/
	@$(VPY) -m fhvlab ui

##@ Checks
.PHONY: test
test: $(STAMP) ## run the whole test suite: unit + integration (real Prefect server, real HTTP on 127.0.0.1)
	cd $(ROOT) && $(VPY) -m pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: $(STAMP) ## run only the unit tests (seconds; no servers)
	cd $(ROOT) && $(VPY) -m pytest -m "not integration" $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## check only: ruff lint, ruff format --check, uv.lock matches pyproject.toml
	cd $(ROOT) && $(VENV)/bin/ruff check .
	cd $(ROOT) && $(VENV)/bin/ruff format --check .
	cd $(ROOT) && $(UV) lock --check --quiet

.PHONY: format
format: $(STAMP) ## rewrite: ruff --fix and ruff format
	cd $(ROOT) && $(VENV)/bin/ruff check --fix .
	cd $(ROOT) && $(VENV)/bin/ruff format .

.PHONY: bench
bench: server ## benchmark the lab vs the course script on two 1.1 M-row months; BIG=1 adds two 23 M-row ones
	@cd $(ROOT) && $(VPY) scripts/bench.py $(if $(filter 1 yes true,$(BIG)),--big,)

##@ Cleaning
.PHONY: clean
clean: ## remove caches (pytest, ruff, __pycache__); keeps data, artifacts, .venv, Prefect home
	cd $(ROOT) && rm -rf .pytest_cache .ruff_cache build dist .bench
	find $(ROOT) -path $(VENV) -prune -o -path $(TOOLS) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

.PHONY: distclean
distclean: clean ## DELETES .venv, .tools, downloaded data/, artifacts/ and the lab's Prefect home (env/prefect); stops its server first
	@if [ -x $(VPY) ]; then PREFECT_HOME=$(ROOT)/env/prefect $(VPY) -m fhvlab server stop; fi
	rm -rf $(VENV) $(TOOLS) $(ROOT)/env/prefect
	find $(ROOT)/data $(ROOT)/artifacts -mindepth 1 ! -name README.md -delete
