"""Pure parts of process management, logs, reset, shell and automations (no servers)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fhvlab.errors import BadInput, LabError
from fhvlab.local import lab, processes

ROOT = Path(__file__).resolve().parents[2]


def test_parse_ps_tree_and_descendants_walk_every_level():
    tree = processes.parse_ps_tree("  10   1\n  11  10\n  12  11\n  13   1\n junk\n  14  12\n")
    assert tree == {10: 1, 11: 10, 12: 11, 13: 1, 14: 12}
    assert processes.descendants(tree, 10) == [11, 12, 14]
    assert processes.descendants(tree, 13) == []


def test_matches_needs_every_marker_as_a_word_or_a_path_name():
    argv = ["/lab/.venv/bin/python", "/lab/.venv/bin/prefect", "server", "start", "--port", "4300"]
    assert processes.matches(argv, ("prefect", "server", "start", "4300"))
    assert not processes.matches(argv, ("prefect", "server", "start", "4200"))
    assert not processes.matches(["vim", "prefect-server-start.txt"], ("prefect", "server"))


def test_read_pid_ignores_missing_and_malformed_files(tmp_path):
    pid_file = tmp_path / "server.pid"
    assert processes.read_pid(pid_file) is None
    pid_file.write_text("not a pid\n")
    assert processes.read_pid(pid_file) is None
    pid_file.write_text("1234\n")
    assert processes.read_pid(pid_file) == 1234


def test_a_pid_file_naming_another_program_is_stale_and_removed(tmp_path):
    proc = processes.server_process(tmp_path)
    proc.pid_file.write_text(f"{os.getpid()}\n")  # alive, but pytest is not a Prefect server
    assert processes.running_pid(proc) is None
    assert not proc.pid_file.exists()


def test_terminate_escalates_to_sigkill_for_a_process_that_ignores_sigterm():
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert child.stdout.readline().strip() == b"1"  # the handler is in place
    assert processes.terminate(child.pid, grace=0.5) == "killed"
    assert not processes.pid_alive(child.pid)  # terminate() reaped its own child


def _hold(path: str, started, seconds: float) -> None:
    with processes.locked(Path(path)):
        started.set()
        time.sleep(seconds)
        Path(path).with_suffix(".released").write_text("done")  # the last act under the lock


def test_the_lock_is_exclusive_across_processes_and_bounded(tmp_path):
    lock = tmp_path / ".server.lock"
    started = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(
        target=_hold, args=(str(lock), started, 3.0)
    )
    holder.start()
    try:
        assert started.wait(10)
        with pytest.raises(LabError, match="holds"), processes.locked(lock, timeout=0.3):
            pass
        with processes.locked(lock, timeout=10):  # waits for the holder, then gets it
            assert lock.with_suffix(".released").exists()
    finally:
        holder.join(timeout=10)


def test_tail_and_prefixed(tmp_path):
    log = tmp_path / "server.log"
    assert processes.tail(log, 5) == []
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert processes.tail(log, 2) == ["line 998", "line 999"]
    assert processes.prefixed("worker", ["a"]) == ["worker | a"]
    assert processes.prefixed("server", ["b"]) == ["server | b"]


def test_reset_targets_are_the_database_and_result_storage_only(tmp_path):
    home = tmp_path / "prefect"
    home.mkdir()
    for name in ("prefect.db", "prefect.db-wal", "profiles.toml", "server.log"):
        (home / name).write_text("x")
    (home / "results").mkdir()
    (home / "concurrency_leases").mkdir()
    assert processes.reset_targets(home, "") == [
        home / "prefect.db",
        home / "prefect.db-wal",
        home / "concurrency_leases",
        home / "results",
    ]
    elsewhere = tmp_path / "my-results"
    elsewhere.mkdir()
    found = processes.reset_targets(home, str(elsewhere))
    assert elsewhere.resolve() in found
    remote = processes.reset_targets(home, "s3://bucket/results")
    assert all(home in p.parents for p in remote)  # never anything remote
    processes.remove(found)
    assert sorted(p.name for p in home.iterdir()) == ["profiles.toml", "server.log"]


def test_export_lines_quote_for_a_posix_shell(tmp_path):
    values = lab.shell_env(tmp_path / "my home", "http://127.0.0.1:4300/api", tmp_path / ".venv")
    assert values["PATH"].split(os.pathsep)[0] == str(tmp_path / ".venv" / "bin")
    lines = lab.export_lines(values)
    assert f"export PREFECT_HOME='{tmp_path / 'my home'}'" in lines
    assert "export PREFECT_API_URL=http://127.0.0.1:4300/api" in lines


def test_worker_name_is_stable_per_home():
    assert lab.worker_name(Path("/a")) == lab.worker_name(Path("/a"))
    assert lab.worker_name(Path("/a")) != lab.worker_name(Path("/b"))


# ---- automations (Prefect's schema objects, no server) ----------------------------------


def test_deployment_sends_heartbeats_as_often_as_the_automation_expects():
    from fhvlab.orchestration import automations

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    env = spec["deployments"][0]["work_pool"]["job_variables"]["env"]
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == automations.HEARTBEAT_SECONDS
    assert automations.MISSED_AFTER_SECONDS > 2 * automations.HEARTBEAT_SECONDS


def test_zombie_automation_is_prefects_recipe_for_one_deployment():
    from fhvlab.orchestration import automations

    auto = automations.zombie_automation("z", "1234")
    trigger = auto.trigger
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}
    assert "prefect.flow-run.Completed" in trigger.expect
    assert "prefect.flow-run.heartbeat" in trigger.expect
    assert trigger.within.total_seconds() == automations.MISSED_AFTER_SECONDS
    assert trigger.match_related.model_dump() == {
        "prefect.resource.role": "deployment",
        "prefect.resource.id": "prefect.deployment.1234",
    }
    [action] = auto.actions
    assert action.type == "change-flow-run-state"
    assert action.state == "CRASHED"


def test_rerun_automation_fires_only_for_a_first_attempt():
    from fhvlab.orchestration import automations

    auto = automations.rerun_automation("r", "1234")
    assert auto.trigger.expect == {"prefect.flow-run.Crashed"}
    assert auto.trigger.match.model_dump()["prefect.run-count"] == "1"
    [action] = auto.actions
    assert action.state == "SCHEDULED"


@pytest.mark.parametrize(
    ("url", "style", "key"),
    [
        ("https://hooks.slack.com/services/T/B/X", "slack", "text"),
        ("https://discord.com/api/webhooks/1/abc", "discord", "content"),
        ("http://127.0.0.1:9000/hook", "generic", "text"),
    ],
)
def test_webhook_style_picks_the_payload_field(url, style, key):
    from fhvlab.orchestration import automations

    assert automations.webhook_style(url) == style
    assert "{{body}}" in automations.webhook_payload(style)[key]


def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it():
    from fhvlab.orchestration import automations

    with pytest.raises(BadInput) as err:
        automations.webhook_style("hooks.slack.com/services/T/B/s3cret")
    assert "s3cret" not in str(err.value)
