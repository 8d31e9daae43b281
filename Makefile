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

# ---- knobs: lab.mk holds each with its default and a comment; settings.py reads it too
include $(ROOT)/lab.mk

# `?=` keeps the blanks before a trailing comment: strip every knob once, make folders absolute.
KNOBS := PYTHON PYTHON_INSTALL UV_VERSION DATE MONTHS FORCE DATA_URL DATA_DIR ARTIFACTS_DIR PREFECT_HOME \
  PYTEST_ARGS TEST_JOBS PREFECT_HOST PREFECT_PORT API_URL UI_API_URL STORAGE_URL WORK_POOL WORK_QUEUE \
  DEPLOYMENT CRON TIMEZONE ONCE WORKER_POLL WATCH FROM TO CONCURRENCY WATCH_TIMEOUT \
  DATABASE_URL PG_DIR PG_PORT PG_BIN LOAD_RUNS LOAD_ROWS \
  FOLLOW LINES YES WEBHOOK_URL BIG \
  WATCH_CRON WATCH_AHEAD WATCH_FROM AZURITE_VERSION
$(foreach knob,$(KNOBS),$(eval $(knob) := $$(strip $$($(knob)))))
DATA_DIR      := $(abspath $(DATA_DIR))
ARTIFACTS_DIR := $(abspath $(ARTIFACTS_DIR))
PREFECT_HOME  := $(abspath $(PREFECT_HOME))
PG_DIR        := $(abspath $(PG_DIR))
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
# Runs the stdlib-only helpers that work before .venv exists (any python3 >= 3.8 will do).
BOOT_PY := $(or $(PYTHON),python3)
# A .venv whose Python was removed or upgraded away (.venv/bin/python a broken link) is rebuilt.
VENV_BROKEN := $(if $(wildcard $(STAMP)),$(shell test -x $(VPY) || echo broken))

# FORCE=1 makes the set-up targets (server ... deploy, up) do every step again.
FORCE_FLAG := $(if $(filter 1 yes true,$(FORCE)), --force,)

# One-line check of DATE before anything starts (a recipe line: `@$(CHECK_DATE)`).
CHECK_DATE = $(VPY) -c 'import sys; from fhvlab.data.months import parse_date; parse_date(sys.argv[1])' \
  "$(DATE)" 2>/dev/null || { echo "error: DATE='$(DATE)' is not a date YYYY-MM-DD (e.g. 2021-08-15)" >&2; exit 1; }

# What the student's own shell says about Prefect, before the lines below override it
# (`make doctor` warns when `prefect` typed in that shell would not be the lab's).
export LAB_SHELL_PREFECT_API_URL := $(if $(filter environment,$(origin PREFECT_API_URL)),$(PREFECT_API_URL),)
export LAB_SHELL_PREFECT_PROFILE := $(if $(filter environment,$(origin PREFECT_PROFILE)),$(PREFECT_PROFILE),)

# Everything a recipe starts sees the lab's locations and runs offline-friendly. API_URL is
# the one source of truth for clients: it is exported, so it wins over any profile value.
export PREFECT_HOME DATA_DIR ARTIFACTS_DIR DATA_URL PREFECT_HOST PREFECT_PORT API_URL UI_API_URL
export WORK_POOL WORK_QUEUE DEPLOYMENT CRON TIMEZONE STORAGE_URL
export DATABASE_URL PG_DIR PG_PORT PG_BIN
# gcsfs asks a GCS bucket for its layout over gRPC first (60 s per call where nothing speaks
# it): off when STORAGE_EMULATOR_HOST names a GCS emulator (docs/storage.md).
ifneq ($(strip $(if $(filter undefined,$(origin STORAGE_EMULATOR_HOST)),,$(STORAGE_EMULATOR_HOST))),)
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT ?= false
endif
export WEBHOOK_URL  # read by `make alerts` from the environment, never on a printed command line
export WATCH_CRON WATCH_AHEAD WATCH_FROM  # prefect.yaml's fhv-watch deployment, `make watch`
export PREFECT_API_URL := $(API_URL)
export PREFECT_LOGGING_EXTRA_LOGGERS := fhvlab
# How often `make worker` / `make up`'s worker asks for due runs (Prefect 3 default 10 s).
export PREFECT_WORKER_QUERY_SECONDS := $(WORKER_POLL)
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
setup: $(STAMP) hooks ## install everything: a Python >= 3.11 (found, else uv-installed), uv, .venv from uv.lock, git hooks
	@$(VPY) -c 'import platform; from importlib.metadata import version; print("setup: ready (Python", platform.python_version() + ", Prefect", version("prefect") + ")")'

# The stamp is written last: an interrupted setup leaves no stamp, so the next run redoes it.
# scripts/pick_python.py says which Python builds .venv and why, in one line (PYTHON forces one).
$(STAMP): $(ROOT)/pyproject.toml $(ROOT)/uv.lock $(if $(VENV_BROKEN),venv-broken) | python-check $(UV)
	@py="$$($(BOOT_PY) $(ROOT)/scripts/pick_python.py --uv "$(UV)" --python "$(PYTHON)" --install "$(PYTHON_INSTALL)")" || exit 1; \
	  echo "setup: syncing $(VENV) from uv.lock"; \
	  cd $(ROOT) && $(UV) sync --locked --python "$$py" --quiet \
	  || { echo "setup: could not install the locked packages (is the package registry reachable? see the lines above)" >&2; exit 1; }
	@$(VPY) -m compileall -q $(ROOT)/src $(ROOT)/flows >/dev/null  # the lab's own code, like uv's for the packages
	@touch $@

.PHONY: venv-broken
venv-broken:
	@echo "setup: $(VPY) does not run (the Python that built .venv was removed or upgraded); rebuilding $(VENV)"
	@rm -rf $(VENV)

# PYTHON given: it must be >= 3.11. Not given: any python3 runs the helpers; uv finds the rest.
.PHONY: python-check
python-check:
ifneq ($(PYTHON),)
	@command -v $(PYTHON) >/dev/null \
	  || { echo "setup: '$(PYTHON)' not found; install Python >= 3.11 or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "setup: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the lab needs >= 3.11 (Prefect 3.9 does): pass PYTHON=python3.11 or newer" >&2; exit 1; }
else
	@command -v python3 >/dev/null \
	  || { echo "setup: no python3 on this machine: install Python >= 3.11 (apt install python3.12, brew install python@3.12) or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
endif

# uv runs on any Python >= 3.8, so an older python3 (macOS 3.9, Ubuntu 22.04 3.10) installs it.
$(TOOLS)/bin/uv: | python-check
	@echo "setup: uv not on PATH; installing uv $(UV_VERSION) from PyPI into $(TOOLS) with $(BOOT_PY)"
	@$(BOOT_PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' \
	  || { echo "setup: uv is not on PATH and $(BOOT_PY) is older than 3.8, too old to install it: install uv (brew install uv, pipx install uv) or Python >= 3.11" >&2; exit 1; }
	@rm -rf $(TOOLS)
	@$(BOOT_PY) -m venv $(TOOLS) >/dev/null 2>&1 \
	  || { rm -rf $(TOOLS); echo "setup: '$(BOOT_PY) -m venv' failed (Debian/Ubuntu: sudo apt install python3-venv); or install uv yourself (brew install uv, pipx install uv)" >&2; exit 1; }
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" \
	  || { rm -rf $(TOOLS); echo "setup: could not install uv from PyPI (is the package registry reachable?)" >&2; exit 1; }

.PHONY: hooks
hooks: | $(STAMP)
	@if ! git -C $(ROOT) rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "setup: not a git checkout; skipping pre-commit hooks"; \
	elif [ -n "$$(git -C $(ROOT) config --get core.hooksPath || true)" ]; then \
	  echo "setup: git core.hooksPath is set; skipping pre-commit install (run it yourself if you want the hooks)"; \
	elif cd $(ROOT) && [ ! -f "$$(git rev-parse --git-path hooks/pre-commit)" ]; then \
	  $(VENV)/bin/pre-commit install --install-hooks >/dev/null && echo "setup: pre-commit hook installed"; \
	fi

.PHONY: doctor
doctor: ## check the set-up, one line per check, with the command that fixes each (changes nothing)
	@LAB_UV="$(UV)" $(BOOT_PY) $(ROOT)/scripts/doctor.py

.PHONY: knobs
knobs: $(STAMP) ## every knob (lab.mk) with the value in effect, as the lab's Python reads it; secrets masked
	@$(VPY) -m fhvlab knobs

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
	@$(VPY) -m fhvlab server start$(FORCE_FLAG)

.PHONY: server-status
server-status: $(STAMP) ## is the lab's server up? PID, API URL, health
	@$(VPY) -m fhvlab server status

.PHONY: server-stop
server-stop: $(STAMP) ## stop the server the lab started (and only that one)
	@$(VPY) -m fhvlab server stop

.PHONY: config
config: $(STAMP) ## point the lab profile at API_URL (course: prefect config set PREFECT_ORION_UI_API_URL=...)
	@$(VPY) -m fhvlab config$(FORCE_FLAG)

.PHONY: config-view
config-view: $(STAMP) ## show the settings in effect and where each comes from (prefect config view)
	@$(VENV)/bin/prefect config view --show-sources

.PHONY: config-reset
config-reset: $(STAMP) ## unset what `make config` and `make storage` set in the lab profile
	@$(VPY) -m fhvlab config --reset

.PHONY: storage
storage: $(STAMP) ## result storage (STORAGE_URL: a folder, s3://, gs://, az://), checked, made the server's default, persistence on (course: prefect storage create)
	@$(VPY) -m fhvlab storage$(FORCE_FLAG)

.PHONY: storage-ls
storage-ls: $(STAMP) ## list storage blocks (course: prefect storage ls; now prefect block ls)
	@$(VPY) -m fhvlab api-check
	@$(VENV)/bin/prefect block ls

.PHONY: work-queue
work-queue: $(STAMP) ## process work pool WORK_POOL with queue WORK_QUEUE (course: prefect work-queue create); runs server first
	@$(VPY) -m fhvlab work-queue$(FORCE_FLAG)

.PHONY: work-queue-ls
work-queue-ls: $(STAMP) ## list the work queues of WORK_POOL (prefect work-queue ls)
	@$(VPY) -m fhvlab api-check
	@$(VENV)/bin/prefect work-queue ls --pool "$(WORK_POOL)"

.PHONY: deploy
deploy: $(STAMP) ## server, config, storage, work-queue, then prefect.yaml's deployments on CRON + automations, in one process; FORCE=1 redoes all
	@$(VPY) -m fhvlab deploy$(FORCE_FLAG)

.PHONY: worker
worker: $(STAMP) ## run a worker on WORK_POOL (course: prefect agent start); ONCE=1 runs what is due and exits
	@$(VPY) -m fhvlab api-check --joining 1
	@cd $(ROOT) && $(VENV)/bin/prefect worker start --pool "$(WORK_POOL)" --work-queue "$(WORK_QUEUE)" \
	  --install-policy never $(if $(filter 1 yes true,$(ONCE)),--run-once,)

.PHONY: run
run: $(STAMP) ## trigger the deployment now for DATE, run train-DATE (says first if DATE is trained already); WATCH=1 waits for it
	@$(VPY) -m fhvlab run --date "$(DATE)" $(if $(filter 1 yes true,$(WATCH)),--watch --watch-timeout 1800,)

# issue 20: runs started by events. `make deploy` creates the fhv-watch deployment (WATCH_CRON)
# and the training deployment's trigger (prefect.yaml); see docs/events.md.
.PHONY: watch
watch: $(STAMP) ## a run of the fhv-watch deployment now: announce new months as events; WATCH=1 waits, prints the training runs they start
	@$(VPY) -m fhvlab watch --check --ahead "$(WATCH_AHEAD)" --from "$(WATCH_FROM)"
	@$(VPY) -m fhvlab api-check
	@if ! $(VPY) -m fhvlab deployed --name fhv-watch/fhv-watch; then \
	  $(MAKE) --no-print-directory -f $(ROOT)/Makefile deploy; fi
	@$(VPY) -m fhvlab watch --ahead "$(WATCH_AHEAD)" --from "$(WATCH_FROM)" \
	  $(if $(filter 1 yes true,$(WATCH)),--watch --watch-timeout "$(WATCH_TIMEOUT)",)

.PHONY: events
events: $(STAMP) ## the lab's recent fhv.* events (Prefect event feed), one line each, and the UI link
	@$(VPY) -m fhvlab events

.PHONY: ui
ui: $(STAMP) ## screenshot of the deployment's page in the UI (headless Chromium) -> ARTIFACTS_DIR/ui/
	@$(VPY) -m fhvlab ui

##@ Running the lab
.PHONY: up
up: $(STAMP) ## server + deployment + one background worker, in one process; returns when the worker is online
	@$(VPY) -m fhvlab up$(FORCE_FLAG)

.PHONY: down
down: $(STAMP) ## stop the lab's worker and server (only those the lab started); keeps everything on disk
	@$(VPY) -m fhvlab down

.PHONY: logs
logs: $(STAMP) ## last LINES lines of the server's and the worker's log, each marked; FOLLOW=1 follows
	@$(VPY) -m fhvlab logs --lines "$(LINES)" $(if $(filter 1 yes true,$(FOLLOW)),--follow,)

.PHONY: reset
reset: $(STAMP) ## list what would go; YES=1: down, then DELETE the lab's Prefect database and result storage
	@$(VPY) -m fhvlab reset $(if $(filter 1 yes true,$(YES)),--yes,)

.PHONY: shell
shell: $(STAMP) ## a subshell where `prefect` is the lab's (its home, profile and API URL); exit to leave
	@$(VPY) -m fhvlab shell

.PHONY: shell-env
shell-env: $(STAMP) ## print export lines that give your own shell the lab's Prefect (to eval; see README)
	@$(VPY) -m fhvlab shell --print

.PHONY: alerts
alerts: $(STAMP) ## WEBHOOK_URL=...: one message per FAILED or CRASHED run of the deployment (URL kept secret)
	@$(VPY) -m fhvlab alerts --flow "$(FLOW_NAME)"

.PHONY: alerts-off
alerts-off: $(STAMP) ## remove the alerts automation and its webhook block
	@$(VPY) -m fhvlab alerts --off

##@ Many runs
BACKFILL_RANGE = --from "$(FROM)" --to "$(TO)" --cron "$(CRON)" --timezone "$(TIMEZONE)"

.PHONY: backfill
backfill: $(STAMP) ## train every CRON date in [FROM, TO] not trained yet (RERUN=all: every date), CONCURRENCY at a time; WATCH=1 waits
	@if ! $(VPY) -m fhvlab deployed --name fhv-backfill/fhv-backfill --limit 1; then \
	  $(VPY) -m fhvlab backfill --check $(BACKFILL_RANGE) --concurrency "$(CONCURRENCY)" --rerun "$(RERUN)" && \
	  $(MAKE) --no-print-directory -f $(ROOT)/Makefile deploy; fi
	@$(VPY) -m fhvlab backfill $(BACKFILL_RANGE) --concurrency "$(CONCURRENCY)" --rerun "$(RERUN)" \
	  $(if $(filter 1 yes true,$(WATCH)),--watch --watch-timeout "$(WATCH_TIMEOUT)",)

.PHONY: report
report: $(STAMP) ## rebuild the summary of backfill FROM..TO: artifacts/backfill-FROM_TO.csv, .png, UI table
	@$(VPY) -m fhvlab report $(BACKFILL_RANGE)

.PHONY: bench-ops
bench-ops: $(STAMP) ## benchmark: each set-up target cold and warm, make run WATCH=1, and the floor (scripts/noop.py), in seconds and floors
	@cd $(ROOT) && $(VPY) scripts/bench_ops.py

.PHONY: bench-watch
bench-watch: $(STAMP) ## benchmark: make watch WATCH=1 (three new months, trigger and training) against the floor, in a throw-away lab
	@cd $(ROOT) && $(VPY) scripts/bench_watch.py

.PHONY: bench-backfill
bench-backfill: server ## benchmark: backfills of 6 and 24 dates (two designs) vs sequential `make train`; BENCH_120=1 adds 120 dates
	@cd $(ROOT) && $(VPY) scripts/bench_backfill.py

##@ Past one machine
.PHONY: postgres
postgres: $(STAMP) ## a PostgreSQL for the server under PG_DIR (127.0.0.1, PG_PORT); prints the DATABASE_URL to use
	@$(VPY) -m fhvlab postgres start

.PHONY: postgres-stop
postgres-stop: $(STAMP) ## stop the lab's PostgreSQL (its data stays in PG_DIR)
	@$(VPY) -m fhvlab postgres stop

AZURITE := $(TOOLS)/azurite/node_modules/.bin/azurite-blob
.PHONY: azurite
azurite: $(AZURITE) ## Azurite (Azure Blob emulator, npm, AZURITE_VERSION) into .tools/ for the storage tests; needs Node >= 20
	@echo "azurite: $(AZURITE) (azurite@$(AZURITE_VERSION))"

$(AZURITE):
	@command -v npm >/dev/null || { echo "azurite: npm not found: install Node.js >= 20 (apt install nodejs npm; brew install node)" >&2; exit 1; }
	@echo "azurite: npm install azurite@$(AZURITE_VERSION) into $(TOOLS)/azurite"
	@npm install --prefix $(TOOLS)/azurite --no-audit --no-fund --loglevel=error "azurite@$(AZURITE_VERSION)" >/dev/null \
	  || { echo "azurite: npm install failed (is the npm registry reachable?)" >&2; exit 1; }

.PHONY: bench-storage
bench-storage: $(STAMP) ## benchmark: make train with S3 results (moto on 127.0.0.1) vs local results vs an empty flow, uncached and cached
	@cd $(ROOT) && $(VPY) scripts/bench_storage.py

.PHONY: bench-load
bench-load: $(STAMP) ## LOAD_RUNS per-date runs, 2 workers, concurrency 4: SQLite vs PostgreSQL (prints figures)
	@cd $(ROOT) && $(VPY) scripts/bench_load.py --runs "$(LOAD_RUNS)" --rows "$(LOAD_ROWS)"

##@ Checks
.PHONY: test
test: $(STAMP) ## run the whole test suite: unit + integration (real Prefect server, real HTTP on 127.0.0.1)
	cd $(ROOT) && $(VPY) -m pytest -n "$(TEST_JOBS)" --dist load --maxschedchunk 1 $(PYTEST_ARGS)

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
bench: server ## benchmark the lab vs the course script on two 1.1 M-row months (BIG=1: and two 23 M-row ones), then a backfill
	@cd $(ROOT) && $(VPY) scripts/bench.py $(if $(filter 1 yes true,$(BIG)),--big,)
	@cd $(ROOT) && $(VPY) scripts/bench_backfill.py

##@ Cleaning
.PHONY: clean
clean: ## remove caches (pytest, ruff, __pycache__); keeps data, artifacts, .venv, Prefect home
	cd $(ROOT) && rm -rf .pytest_cache .ruff_cache build dist .bench
	find $(ROOT) -path $(VENV) -prune -o -path $(TOOLS) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## DELETES .venv, .tools, downloaded data/, artifacts/, the lab's Prefect home (env/prefect) and PostgreSQL (env/postgres); stops them first
	@if [ -x $(VPY) ]; then PREFECT_HOME=$(ROOT)/env/prefect $(VPY) -m fhvlab down; fi
	@if [ -x $(VPY) ]; then PG_DIR=$(ROOT)/env/postgres $(VPY) -m fhvlab postgres stop; fi
	rm -rf $(VENV) $(TOOLS) $(ROOT)/env/prefect $(ROOT)/env/postgres
	find $(ROOT)/data $(ROOT)/artifacts -mindepth 1 ! -name README.md ! -path $(ROOT)/artifacts/ui ! -name example-deployment.png -delete
