"""`make doctor`: what is set up, what is not, and the exact command that fixes each.

Standard library only (it must run before `make setup`), reads everything, changes nothing.
Exit status 1 when a check failed (a step the student still needs), 0 otherwise; warnings
("!") never fail it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / ".venv" / "bin" / "python"
STAMP = ROOT / ".venv" / ".lab-stamp"
sys.path.insert(0, str(ROOT / "src"))
from fhvlab.knobs import lab_defaults  # noqa: E402  (stdlib only: runs before .venv exists)
from fhvlab.local.cohort import crowd_warning, online_workers  # noqa: E402  (stdlib only too)

LAB_DEFAULTS = lab_defaults()
FLOW = "fhv-duration-training"


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "warn", "fail", "skip"
    detail: str
    fix: str = ""


MARKS = {"ok": "[ok]  ", "warn": "[!]   ", "fail": "[FAIL]", "skip": "[--]  "}


def env(name: str, default: str = "") -> str:
    """A knob as `make` exported it (or the default when run by hand)."""
    return os.environ.get(name, "").strip() or LAB_DEFAULTS.get(name, "") or default


def _send(request: urllib.request.Request, timeout: float) -> object | None:
    """Send `request` (with the API's basic auth, if set); decoded JSON, None on any failure."""
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def get_json(url: str, timeout: float = 3.0) -> object | None:
    """GET `url` as JSON; None when it fails in any way."""
    return _send(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout)


def post_json(url: str, body: dict, timeout: float = 5.0) -> object | None:
    """POST `body` as JSON to `url`; the decoded answer, None when it fails in any way."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        method="POST",
    )
    return _send(request, timeout)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 11):  # noqa: UP036 (runs on whatever python3 is, before setup)
        return Check("python", "ok", f"{sys.executable} is Python {version}")
    # An older python3 is no dead end: `make setup` looks for another (scripts/pick_python.py).
    picker = pick_python()
    uv = env("LAB_UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    found = (picker.uv_find(uv) if os.access(uv, os.X_OK) else "") or picker.pyenv_find()
    if found:
        return Check(
            "python",
            "ok",
            f"{sys.executable} is Python {version}, too old; make setup picks {found} (>= 3.11)",
        )
    return Check(
        "python",
        "warn",
        f"{sys.executable} is Python {version} and no Python >= 3.11 is on this machine;"
        " make setup will ask uv to install one (needs the network)",
        "make setup, or first: apt install python3.12 / brew install python@3.12 / pyenv install",
    )


def pick_python():  # a module object
    """scripts/pick_python.py as a module (setup's own discovery, reused)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pick_python", ROOT / "scripts" / "pick_python.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def venv_config() -> dict[str, str]:
    """The key = value lines of .venv/pyvenv.cfg (empty when there is none)."""
    try:
        lines = (ROOT / ".venv" / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines) if v}


def check_venv_python() -> Check:
    """Which Python .venv was built with, and whether that Python is still there."""
    config = venv_config()
    if not config:
        return Check("venv python", "skip", "no .venv yet", "make setup")
    version = config.get("version_info") or config.get("version") or "?"
    target = os.readlink(VENV_PY) if VENV_PY.is_symlink() else str(VENV_PY)
    if not os.access(VENV_PY, os.X_OK):  # follows the link: False when its target is gone
        return Check(
            "venv python",
            "fail",
            f".venv was built with Python {version} ({target}), which is gone (removed or"
            " upgraded); make setup rebuilds .venv with a Python >= 3.11 it finds",
            "make setup",
        )
    return Check("venv python", "ok", f".venv built with Python {version} ({target})")


def check_venv() -> Check:
    if VENV_PY.is_symlink() and not VENV_PY.exists():
        return Check(
            "venv", "fail", ".venv cannot start: the Python it was built with is gone", "make setup"
        )
    if not VENV_PY.exists() or not STAMP.exists():
        return Check("venv", "fail", f"{ROOT / '.venv'} is not set up", "make setup")
    stale = [
        p.name
        for p in (ROOT / "uv.lock", ROOT / "pyproject.toml")
        if p.stat().st_mtime > STAMP.stat().st_mtime
    ]
    if stale:
        return Check("venv", "fail", f".venv is older than {', '.join(stale)}", "make setup")
    return Check("venv", "ok", ".venv in sync with uv.lock")


def venv_python(code: str, *args: str) -> str | None:
    """Run a snippet in .venv's Python; its stdout, or None if it failed."""
    if not VENV_PY.exists():
        return None
    try:
        done = subprocess.run(
            [str(VENV_PY), "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def check_prefect() -> Check:
    found = venv_python("from importlib.metadata import version; print(version('prefect'))")
    if found is None:
        return Check("prefect", "fail", "Prefect is not installed in .venv", "make setup")
    if not found.startswith("3."):
        return Check(
            "prefect", "fail", f"Prefect {found}; the lab is written for 3.9", "make setup"
        )
    return Check("prefect", "ok", f"Prefect {found}")


def check_home() -> list[Check]:
    home = Path(env("PREFECT_HOME"))
    checks = []
    profiles = home / "profiles.toml"
    active = None
    if profiles.exists():
        for line in profiles.read_text().splitlines():
            if line.startswith("active"):
                active = line.split("=", 1)[1].strip().strip('"')
    if active == "fhvlab":
        checks.append(Check("prefect home", "ok", f"{home}, active profile 'fhvlab'"))
    else:
        checks.append(
            Check(
                "prefect home",
                "fail",
                f"{home}: the lab profile is not active ({active or 'no profile'})",
                "make config",
            )
        )
    old = Path.home() / ".prefect"
    if (old / "orion.db").exists():
        checks.append(
            Check(
                "~/.prefect",
                "warn",
                f"{old} holds a Prefect 2 'orion.db'; the lab ignores it (its home is {home})",
            )
        )
    return checks


def port_holder(host: str, port: int, home: Path) -> tuple[str, str]:
    """('free' | 'lab' | 'other', detail) for host:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        busy = sock.connect_ex((host, port)) == 0
    if not busy:
        return "free", f"port {port} is free"
    pid_file = home / "server.pid"
    if pid_file.exists():
        pid = pid_file.read_text().strip()
        if Path(f"/proc/{pid}").exists():
            return "lab", f"port {port} is held by the lab's server (pid {pid})"
    return "other", f"port {port} is held by a program the lab did not start"


def client_host() -> str:
    """Host a client calls for the lab's server (0.0.0.0 means: this machine)."""
    host = env("PREFECT_HOST")
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def api_url() -> str:
    """The API URL in effect, as the Makefile computes it."""
    return env("API_URL", f"http://{client_host()}:{env('PREFECT_PORT')}/api")


def check_api() -> tuple[list[Check], bool]:
    port = env("PREFECT_PORT")
    api = api_url()
    home = Path(env("PREFECT_HOME"))
    healthy = get_json(f"{api}/health") is True
    checks = []
    local = urllib.parse.urlsplit(api).hostname in ("127.0.0.1", "localhost", client_host())
    if healthy:
        version = get_json(f"{api}/admin/version")
        checks.append(Check("api", "ok", f"{api} answers (server {version})"))
    elif local:
        checks.append(Check("api", "fail", f"nothing answers at {api}", "make server"))
    else:
        checks.append(
            Check(
                "api",
                "fail",
                f"{api} (API_URL) is unreachable",
                "check that server, or: make config API_URL=http://<ip>:4200/api",
            )
        )
    if port.isdigit():
        holder, detail = port_holder(client_host(), int(port), home)
        status = {"free": "ok", "lab": "ok", "other": "fail" if not healthy else "warn"}[holder]
        fix = f"stop that program, or use another port: make server PREFECT_PORT={int(port) + 1}"
        checks.append(Check("port", status, detail, fix if holder == "other" else ""))
    else:
        checks.append(
            Check(
                "port",
                "fail",
                f"PREFECT_PORT={port!r} is not a number",
                "make ... PREFECT_PORT=4200",
            )
        )
    return checks, healthy


def check_orchestration(api_up: bool) -> list[Check]:
    api = api_url()
    pool, queue = env("WORK_POOL"), env("WORK_QUEUE")
    deployment = env("DEPLOYMENT")
    names = ("work pool", "work queue", "deployment")
    if not api_up:
        return [Check(n, "skip", "server not answering", "make server") for n in names]
    quote = urllib.parse.quote
    found_pool = get_json(f"{api}/work_pools/{quote(pool)}")
    found_queue = get_json(f"{api}/work_pools/{quote(pool)}/queues/{quote(queue)}")
    found_dep = get_json(f"{api}/deployments/name/{FLOW}/{quote(deployment)}")
    checks = [
        Check("work pool", "ok", f"{pool!r}")
        if isinstance(found_pool, dict) and "id" in found_pool
        else Check("work pool", "fail", f"{pool!r} missing", "make work-queue"),
        Check("work queue", "ok", f"{queue!r} in {pool!r}")
        if isinstance(found_queue, dict) and "id" in found_queue
        else Check("work queue", "fail", f"{queue!r} missing in {pool!r}", "make work-queue"),
    ]
    if isinstance(found_dep, dict) and "id" in found_dep:
        crons = [s["schedule"].get("cron") for s in found_dep.get("schedules", [])]
        checks.append(Check("deployment", "ok", f"{FLOW}/{deployment}, cron {crons}"))
    else:
        checks.append(Check("deployment", "fail", f"{FLOW}/{deployment} missing", "make deploy"))
    return checks


HOLDING = ["PENDING", "RUNNING", "CANCELLING"]  # states of a flow run that holds a slot


def check_concurrency(api_up: bool) -> Check:
    """Concurrency limits with slots taken while nothing that could hold them is running."""
    if not api_up:
        return Check("concurrency", "skip", "server not answering", "make server")
    api = api_url()
    limits = post_json(f"{api}/v2/concurrency_limits/filter", {"limit": 200})
    if not isinstance(limits, list):
        return Check("concurrency", "warn", "could not read the concurrency limits")
    stuck = []
    for limit in limits:
        if not limit.get("active_slots"):
            continue
        name = str(limit["name"])
        holders: dict = {"flow_runs": {"state": {"type": {"any_": HOLDING}}}, "limit": 1}
        if name.startswith("deployment:"):  # a deployment's own limit (prefect.yaml)
            holders["deployments"] = {"id": {"any_": [name.removeprefix("deployment:")]}}
        running = post_json(f"{api}/flow_runs/filter", holders)
        if running == []:
            stuck.append(f"{name} ({limit['active_slots']} of {limit['limit']} slots taken)")
    if not stuck:
        return Check("concurrency", "ok", f"{len(limits)} limit(s), no slot held by a dead run")
    first = stuck[0].split(" (")[0]
    home = env("PREFECT_HOME")
    prefect = str(ROOT / ".venv" / "bin" / "prefect")
    return Check(
        "concurrency",
        "warn",
        f"slots taken with no run that could hold them: {', '.join(stuck)}; runs would "
        "wait for them for ever",
        f"PREFECT_HOME={shlex.quote(home)} PREFECT_API_URL={shlex.quote(api)} "
        f"{shlex.quote(prefect)} gcl update {shlex.quote(first)} --active-slots 0",
    )


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    if "@" not in url:
        return url
    head, _, tail = url.rpartition("@")
    scheme, sep, userinfo = head.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}{':***' if ':' in userinfo else ''}@{tail}"


def postgres_answers(host: str, port: int) -> bool:
    """Whether a PostgreSQL server answers at host:port (its reply to an SSLRequest)."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
            return sock.recv(1) in (b"N", b"S")
    except OSError:
        return False


def configured_database() -> tuple[str, str]:
    """(DATABASE_URL in effect or '', the database it names, password masked)."""
    home = Path(env("PREFECT_HOME"))
    url = next(
        (
            env(n)
            for n in (
                "DATABASE_URL",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL",
                "PREFECT_API_DATABASE_CONNECTION_URL",
            )
            if env(n)
        ),
        "",
    )
    return url, (f"PostgreSQL {mask_url(url)}" if url else f"SQLite {home / 'prefect.db'}")


def database_in_use() -> str:
    """The database the lab's running server was started on (as the lab noted it)."""
    recorded = Path(env("PREFECT_HOME")) / "server.database"
    return recorded.read_text().strip() if recorded.exists() else configured_database()[1]


def check_database(api_up: bool) -> Check:
    """Which database the server uses (password masked) and whether it answers."""
    url, configured = configured_database()
    if api_up:
        used = database_in_use()
        try:
            with urllib.request.urlopen(f"{api_url()}/ready", timeout=10) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        if not ready:
            return Check(
                "database",
                "fail",
                f"the server uses {used}, and it does not answer (GET /api/ready)",
                "make postgres (the lab's own), or start the database DATABASE_URL names",
            )
        if used != configured:
            return Check(
                "database",
                "warn",
                f"the server uses {used} (it answers); DATABASE_URL now says {configured}",
                "make server-stop && make server  (to switch)",
            )
        return Check("database", "ok", f"{used}, answers")
    if not url:
        return Check("database", "ok", f"{configured} (the server creates it when it starts)")
    parts = urllib.parse.urlsplit(url)
    try:
        host, port = parts.hostname or "", parts.port or 5432
    except ValueError:
        return Check("database", "fail", f"{configured}: bad port", "fix DATABASE_URL")
    if postgres_answers(host, port):
        return Check("database", "ok", f"{configured}, a PostgreSQL answers at {host}:{port}")
    return Check(
        "database",
        "fail",
        f"{configured}: no PostgreSQL answers at {host}:{port}",
        "make postgres (the lab's own), or start the database DATABASE_URL names",
    )


def check_storage(api_up: bool) -> Check:
    """The result storage a run would use, whether it answers (one object written, read and
    deleted), and whether it is the server's default (the storage of every worker)."""
    if not api_up:
        return Check("storage", "skip", "server not answering", "make server")
    if not VENV_PY.exists():
        return Check("storage", "skip", ".venv missing", "make setup")
    try:
        done = subprocess.run(
            [str(VENV_PY), "-m", "fhvlab", "storage-check"],
            capture_output=True, text=True, timeout=90, check=False, cwd=ROOT,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return Check("storage", "fail", "no answer within 90 s", "make storage")
    said = (done.stdout + done.stderr).strip().splitlines() or ["(nothing said)"]
    if done.returncode != 0:
        return Check("storage", "fail", said[-1].replace("error: ", "", 1), "make storage")
    where = said[-1].replace("storage-check: ", "", 1)
    default = get_json(f"{api_url()}/admin/storage")
    if not (isinstance(default, dict) and default.get("default_result_storage_block_id")):
        return Check(
            "storage", "warn",
            f"{where}; the server has no default result storage (workers elsewhere keep "
            "their results to themselves)", "make storage",
        )  # fmt: skip
    return Check("storage", "ok", f"{where}; the server's default (every worker uses it)")


def check_workers(api_up: bool) -> Check:
    """Workers online in the server's pools; a warning when a SQLite server has a class."""
    if not api_up:
        return Check("workers", "skip", "server not answering", "make server")
    online = online_workers(lambda path, body: post_json(api_url() + path, body))
    if online is None:
        return Check("workers", "warn", "could not read the work pools' workers")
    api = urllib.parse.urlsplit(api_url())
    lab_server = api.hostname in ("127.0.0.1", "localhost", client_host()) and str(api.port) == env(
        "PREFECT_PORT"
    )
    # Another's server (API_URL elsewhere): its database is not known here, nothing is said.
    on_sqlite = database_in_use().startswith("SQLite") if lab_server else None
    warning = crowd_warning(on_sqlite, online)
    if warning:
        return Check("workers", "warn", warning)
    return Check("workers", "ok", f"{online} online in the server's work pools")


def check_shell() -> Check:
    """Whether `prefect` typed in the student's own shell would talk to the lab's server."""
    # `make` overrides PREFECT_API_URL for its recipes; it passes the shell's own value here.
    via_make = "LAB_SHELL_PREFECT_API_URL" in os.environ
    shell_api = os.environ.get("LAB_SHELL_PREFECT_API_URL" if via_make else "PREFECT_API_URL", "")
    profile = os.environ.get("LAB_SHELL_PREFECT_PROFILE" if via_make else "PREFECT_PROFILE", "")
    lab_api = api_url().rstrip("/")
    fix = 'make shell  (or in this shell: eval "$(make -s shell-env)")'
    if shell_api.strip() and shell_api.strip().rstrip("/") != lab_api:
        detail = (
            f"your shell's PREFECT_API_URL={shell_api.strip()} is not the lab's API ({lab_api})"
        )
        return Check("shell", "warn", detail + ": `prefect ...` typed there goes elsewhere", fix)
    if profile.strip() and profile.strip() != "fhvlab":
        detail = f"your shell's PREFECT_PROFILE={profile.strip()} is not the lab's profile 'fhvlab'"
        return Check("shell", "warn", detail, fix)
    if not shell_api.strip():
        detail = (
            "no PREFECT_API_URL in your shell: `prefect ...` typed there uses ~/.prefect "
            "and may run on a throw-away temporary server"
        )
        return Check("shell", "warn", detail, fix)
    return Check("shell", "ok", f"`prefect` in this shell talks to the lab's API ({lab_api})")


def check_data() -> list[Check]:
    date = env("DATE")
    data_dir = Path(env("DATA_DIR"))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fhvlab.model.training import plan\n"
        "from fhvlab.data.download import month_filename, valid_rows\n"
        "p = plan(sys.argv[1])\n"
        "for m in (p.train_month, p.val_month):\n"
        "    print(m, valid_rows(Path(sys.argv[2]) / month_filename(m)))\n"
    )
    out = venv_python(code, date, str(data_dir))
    if out is None:
        return [Check("data", "skip", f"cannot check the months for DATE={date} yet", "make setup")]
    checks = []
    for line in out.splitlines():
        month, rows = line.split()
        if rows == "None":
            checks.append(
                Check(
                    "data",
                    "fail",
                    f"{month} missing or invalid in {data_dir}",
                    f"make data DATE={date}",
                )
            )
        else:
            checks.append(Check("data", "ok", f"{month}: {int(rows):,} rows in {data_dir}"))
    return checks


def check_disk() -> Check:
    free_gb = shutil.disk_usage(ROOT).free / 1e9
    if free_gb < 1:
        return Check(
            "disk",
            "warn",
            f"{free_gb:.1f} GB free at {ROOT}; a month is ~20 MB, .venv ~1 GB",
            "make clean",
        )
    return Check("disk", "ok", f"{free_gb:.0f} GB free")


def main() -> int:
    checks = [check_python(), check_venv_python(), check_venv(), check_prefect(), *check_home()]
    api_checks, api_up = check_api()
    checks += api_checks + check_orchestration(api_up) + [check_concurrency(api_up)]
    checks += [*check_data(), check_disk()]
    checks.append(check_database(api_up))
    checks.append(check_storage(api_up))
    checks.append(check_workers(api_up))
    checks.append(check_shell())
    for c in checks:
        line = f"{MARKS[c.status]} {c.name:13} {c.detail}"
        if c.status in ("fail", "warn", "skip") and c.fix:
            line += f"  ->  {c.fix}"
        print(line)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        print(f"\ndoctor: {len(failed)} check(s) failed; next: {failed[0].fix}")
        return 1
    print("\ndoctor: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
