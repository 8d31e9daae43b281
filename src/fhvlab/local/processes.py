"""The lab's background processes (server, worker): locks, PID files, signals, logs, reset.

Every start and stop runs under an exclusive lock file in the lab's Prefect home
(`fcntl.flock`), so any number of simultaneous `make server` / `make up` end with one
process and a PID file that names it. A PID is only ever signalled when the PID file
names it AND its command line is the one the lab started AND it leads its own process
group (the lab starts each one in a new session). No Prefect import here.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fhvlab import files

LOCK_TIMEOUT = 180.0  # longest a start waits for another start (server start: `make bench-ops`)


@dataclass(frozen=True)
class Managed:
    """One kind of background process the lab runs: its PID file, log and lock."""

    name: str  # "server" or "worker"
    home: Path
    markers: tuple[str, ...]  # words its command line must contain

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def lock_file(self) -> Path:
        return self.home / f".{self.name}.lock"


def server_process(home: Path) -> Managed:
    """The lab's `prefect server start`."""
    return Managed("server", home, ("prefect", "server", "start"))


def worker_process(home: Path) -> Managed:
    """The lab's background `prefect worker start` (`make up`)."""
    return Managed("worker", home, ("prefect", "worker", "start"))


def worker_name(home: Path) -> str:
    """The background worker's name: this machine and a short tag of the Prefect home."""
    import hashlib
    import socket

    tag = hashlib.sha1(str(home).encode()).hexdigest()[:6]
    return f"fhvlab-{socket.gethostname().split('.')[0]}-{tag}"


def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive lock on `path` (created if missing); LabError after `timeout`."""
    busy = (
        f"another lab command holds {path} for more than {timeout:.0f} s; "
        "wait for it, or check for a hung `make` process"
    )
    return files.locked(path, timeout, busy)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _proc_state(pid)
    return state != "Z"


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def command_line(pid: int) -> list[str] | None:
    """The argv of `pid` (from /proc, else `ps`), or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    done = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    text = done.stdout.strip()
    return text.split() if done.returncode == 0 and text else None


def matches(argv: Sequence[str], markers: Iterable[str]) -> bool:
    """Whether every marker word appears in `argv` (as a word, or in a path like .../prefect)."""
    words = {Path(a).name for a in argv} | set(argv)
    return all(m in words for m in markers)


def is_ours(pid: int, proc: Managed) -> bool:
    """Whether `pid` is the lab's `proc`: right command line and leader of its own group."""
    argv = command_line(pid)
    if not argv or not matches(argv, proc.markers):
        return False
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def read_pid(pid_file: Path) -> int | None:
    """The PID written in `pid_file`, or None when missing or malformed."""
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def running_pid(proc: Managed) -> int | None:
    """PID of the lab's live `proc`, or None; a stale PID file is removed."""
    pid = read_pid(proc.pid_file)
    if pid is not None and pid_alive(pid) and is_ours(pid, proc):
        return pid
    proc.pid_file.unlink(missing_ok=True)
    return None


def spawn(proc: Managed, cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> int:
    """Start `cmd` detached (new session, stdin /dev/null, output appended to the log)."""
    proc.home.mkdir(parents=True, exist_ok=True)
    with proc.log_file.open("ab") as out, open(os.devnull, "rb") as devnull:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
        out.flush()
        child = subprocess.Popen(
            list(cmd),
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C in the student's terminal does not reach it
        )
    tmp = proc.pid_file.with_name(proc.pid_file.name + ".tmp")
    tmp.write_text(f"{child.pid}\n")
    os.replace(tmp, proc.pid_file)
    return child.pid


def parse_ps_tree(text: str) -> dict[int, int]:
    """`ps -A -o pid= -o ppid=` output as {pid: parent pid}."""
    tree = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            tree[int(parts[0])] = int(parts[1])
    return tree


def descendants(tree: dict[int, int], root: int) -> list[int]:
    """Every process below `root` in a {pid: ppid} tree, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in tree.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        if pid in found or pid == root:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _descendants_of(pid: int) -> list[int]:
    done = subprocess.run(
        ["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, check=False
    )
    return descendants(parse_ps_tree(done.stdout), pid)


def _reap(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    return False


def terminate(pid: int, grace: float) -> str:
    """SIGTERM the group of `pid` (and its children in other groups), SIGKILL after `grace` s.

    Returns "terminated" or "killed". The flow-run processes a worker starts get
    their own session, so they are found through the process tree, not the group.
    """
    family = _descendants_of(pid)
    for sig, wait, how in ((signal.SIGTERM, grace, "terminated"), (signal.SIGKILL, 10.0, "killed")):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if sig == signal.SIGKILL:
            family = list(dict.fromkeys(family + _descendants_of(pid)))
        for child in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if (_reap(pid) or not pid_alive(pid)) and not any(pid_alive(c) for c in family):
                return how
            time.sleep(0.1)
    return "killed"


def stop(proc: Managed, grace: float = 20.0) -> tuple[int, str] | None:
    """Stop the lab's `proc` under its lock; (pid, how) or None when none was running."""
    with locked(proc.lock_file):
        pid = running_pid(proc)
        if pid is None:
            return None
        how = terminate(pid, grace)
        proc.pid_file.unlink(missing_ok=True)
        return pid, how


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file ([] when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * max(lines, 1)))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    rows = text.splitlines()
    if size > 256 * max(lines, 1) and rows:
        rows = rows[1:]  # the first one is probably cut
    return rows[-lines:] if lines > 0 else []


def prefixed(source: str, lines: Iterable[str], width: int = 6) -> list[str]:
    """Each line marked with where it came from: `server | ...`."""
    return [f"{source:<{width}} | {line}" for line in lines]


def sizes(sources: dict[str, Path]) -> dict[str, int]:
    """Current size of each file (0 when missing): where following starts."""
    return {name: path.stat().st_size if path.exists() else 0 for name, path in sources.items()}


def follow(
    sources: dict[str, Path],
    duration: float | None = None,
    poll: float = 0.5,
    start: dict[str, int] | None = None,
) -> None:
    """Print new lines of each file as they come, prefixed; stop after `duration` s if given."""
    offsets = dict(start) if start is not None else sizes(sources)
    deadline = None if duration is None else time.monotonic() + duration
    partial = dict.fromkeys(sources, "")
    while deadline is None or time.monotonic() < deadline:
        for name, path in sources.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[name]:  # truncated or replaced (make reset)
                offsets[name] = 0
            if size == offsets[name]:
                continue
            with path.open("rb") as handle:
                handle.seek(offsets[name])
                chunk = handle.read()
            offsets[name] += len(chunk)
            text = partial[name] + chunk.decode(errors="replace")
            *complete, partial[name] = text.split("\n")
            for line in prefixed(name, complete):
                print(line, flush=True)
        time.sleep(poll)


def reset_targets(home: Path, storage_url: str) -> list[Path]:
    """What `make reset` deletes: the SQLite database (+ WAL files), its concurrency leases
    (fhvlab.local.server keeps them on disk) and local result storage."""
    found = [home / name for name in ("prefect.db", "prefect.db-wal", "prefect.db-shm")]
    found.append(home / "concurrency_leases")  # leases of the slots counted in that database
    found.append(home / "storage")  # Prefect's default local storage
    found.append(home / "results")  # the lab's default STORAGE_URL
    url = storage_url.strip()
    if url and ("://" not in url or url.startswith("file://")):
        found.append(Path(url.removeprefix("file://")).expanduser())  # remote: never touched
    unique = list(dict.fromkeys(p.resolve() if p.exists() else p for p in found))
    return [p for p in unique if p.exists()]


def remove(paths: Iterable[Path]) -> None:
    """Delete files and folders (a folder is renamed aside first, so no half-deleted name stays)."""
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            aside = path.with_name(f".{path.name}.deleting-{os.getpid()}")
            os.replace(path, aside)
            shutil.rmtree(aside)
        else:
            path.unlink(missing_ok=True)
