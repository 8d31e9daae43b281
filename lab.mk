# The lab's knobs and their defaults: the one place they are written down.
# The Makefile includes this file; src/fhvlab/settings.py reads the same lines, so
# `make` and `python -m fhvlab` agree. Override any knob on the command line
# (make train DATE=2021-09-15) or in the environment (export DATE=2021-09-15).
# Format: NAME ?= value   # comment   ($(ROOT) is the checkout)

PYTHON        ?=                         # Python for .venv (>= 3.11); empty: one already on the machine, else a uv-managed one
PYTHON_INSTALL ?= 3.12                   # version uv installs (own store, no root) when the machine has no Python >= 3.11
UV_VERSION    ?= 0.13.9                  # uv fetched from PyPI when none is on PATH
DATE          ?= 2021-08-15              # run date: trains on DATE-2 months, validates on DATE-1
MONTHS        ?=                         # explicit months for `make data`, e.g. "2021-01 2021-02"
FORCE         ?= 0                       # 1 = download again even when a valid file is present
DATA_URL      ?= https://d37ci6vzurychx.cloudfront.net/trip-data  # where fhv_tripdata_YYYY-MM.parquet lives
DATA_DIR      ?= $(ROOT)/data            # downloaded months
ARTIFACTS_DIR ?= $(ROOT)/artifacts       # model-, dv-, metrics-{DATE}.*
PREFECT_HOME  ?= $(ROOT)/env/prefect     # the lab's Prefect home: profile, database, storage
PYTEST_ARGS   ?=                         # extra pytest arguments, e.g. PYTEST_ARGS="-k download -x"
TEST_JOBS     ?= 6                       # `make test`: test processes side by side (pytest-xdist; 0 = one); most tests wait, not compute
PREFECT_HOST  ?= 127.0.0.1               # where `make server` listens (0.0.0.0: whole network)
PREFECT_PORT  ?= 4200                    # ... and on which port
API_URL       ?=                         # API the lab's clients use; empty: http://PREFECT_HOST:PREFECT_PORT/api
UI_API_URL    ?=                         # API URL the UI gives the browser; empty: API_URL
STORAGE_URL   ?=                         # result storage: folder or fsspec URL (s3://, gs://, az://bucket/prefix); empty: PREFECT_HOME/results
AZURITE_VERSION ?= 3.37.0                # `make azurite`: the Azure Blob emulator the storage tests use (npm)
WORK_POOL     ?= fhv-pool                # process work pool the deployment runs on
WORK_QUEUE    ?= fhv-queue               # queue in that pool
DEPLOYMENT    ?= fhv-monthly             # deployment name (flow: fhv-duration-training)
CRON          ?= 0 9 15 * *              # the course's schedule: 09:00 on the 15th of each month
TIMEZONE      ?= UTC                     # time zone of CRON
ONCE          ?= 0                       # 1: `make worker` runs what is due, then exits
WORKER_POLL   ?= 3                       # seconds between a worker's polls for due runs (Prefect's default: 10)
WATCH         ?= 0                       # 1: `make run` / `make backfill` wait for the runs to finish
FROM          ?=                         # `make backfill` / `make report`: first date YYYY-MM-DD
TO            ?=                         # ... and last date (included)
RERUN         ?= failed                  # `make backfill`: failed = run again the dates with no COMPLETED run (FAILED, CRASHED, CANCELLED); all = every date
CONCURRENCY   ?= 2                       # backfill dates running at once (threads of the one backfill run; one such run at a time)
WATCH_TIMEOUT ?= 1800                    # seconds `make backfill WATCH=1` (and `make watch WATCH=1`) waits at most
DATABASE_URL  ?=                         # server database: empty = SQLite in PREFECT_HOME; postgresql+asyncpg://user:pw@host:port/db
PG_DIR        ?= $(ROOT)/env/postgres    # `make postgres`: the lab's PostgreSQL cluster, password file, log
PG_PORT       ?=                         # ... its port on 127.0.0.1; empty: the last one used, else a free one
PG_BIN        ?=                         # folder of initdb/pg_ctl; empty: PATH, /usr/lib/postgresql/*/bin, Homebrew
LOAD_RUNS     ?= 40                      # `make bench-load`: per-date runs ...
LOAD_ROWS     ?= 20000                   # ... over generated months of this many rows
FOLLOW        ?= 0                       # 1: `make logs` keeps following both logs (Ctrl-C stops)
LINES         ?= 40                      # how many last lines of each log `make logs` shows
YES           ?= 0                       # 1: `make reset` really deletes (without it: only lists)
WEBHOOK_URL   ?=                         # Slack/Discord/any incoming webhook for `make alerts` (secret)
BIG           ?= 0                       # 1: `make bench` adds two 23 M-row months (~0.9 GB in .bench/, minutes)
WATCH_CRON    ?= 0 8 * * *               # when the fhv-watch deployment asks DATA_URL for new months (daily 08:00, TIMEZONE)
WATCH_AHEAD   ?= 3                       # months past the newest known one a watch asks about at most
WATCH_FROM    ?=                         # YYYY-MM: newest month already out; a watch starts after it or after the newest announced (before any: DATA_DIR's newest)
