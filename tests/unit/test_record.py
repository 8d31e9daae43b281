"""fhvlab.local.record: the lab's record of its set-up, and the "nothing to do" check (no server).

What needs a real server (objects answering by id) is in tests/integration/test_noop_targets.py.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhvlab import __version__, files
from fhvlab.local import record, uptodate
from tests.conftest import ROOT, clean_env, free_port

BASE = {"PREFECT_PORT": "4599", "PREFECT_HOST": "127.0.0.1", "WORK_POOL": "p", "WORK_QUEUE": "q"}


def test_the_module_imports_only_the_standard_library_and_stdlib_only_lab_modules():
    tree = ast.parse((ROOT / "src" / "fhvlab" / "local" / "record.py").read_text())
    names = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    third_party = {n for n in names if n and n.split(".")[0] in ("prefect", "pydantic", "requests")}
    assert third_party == set()


def _records_past_their_inputs(home: Path, env: dict[str, str]) -> None:
    """A record of every step of `deploy` whose inputs match `env`, and the lab profile: each
    check gets past its inputs and asks the server (which does not answer)."""
    profile = {"PREFECT_API_URL": record.api_url(env)}
    (home / "profiles.toml").write_text(
        f'active = "fhvlab"\n[profiles.fhvlab]\nPREFECT_API_URL = "{record.api_url(env)}"\n'
    )
    for step in ("config", "storage", "work-queue", "deploy"):
        entry = {"inputs": record.step_inputs(step, env), "profile": profile}
        entry |= {"block": {"id": "b"}, "deployments": [{"id": "d", "digest": "x"}]}
        record.save(home, step, entry)


# Each step's verdict once it has asked the server that does not answer.
ASKED = {
    "server": "API_URL does not answer",
    "config": "already points at",  # the profile alone: no server asked
    "storage": "block changed or missing",
    "work-queue": "pool changed or missing",
    "deploy": "deployments unreadable",
}


def test_a_nothing_to_do_check_does_not_import_prefect(tmp_path):
    """`python -m fhvlab deploy` with a record: every step's check runs (each asks the server,
    which does not answer) without importing Prefect, pydantic or requests."""
    code = (
        "import json, sys\n"
        "from fhvlab.local import record, uptodate\n"
        "assert uptodate.main(['deploy']) is None\n"
        "lines = {s: uptodate.check(s).line for s in record.TARGETS['deploy']}\n"
        "heavy = [m for m in ('prefect', 'pydantic', 'requests') if m in sys.modules]\n"
        "print(json.dumps([heavy, lines]))\n"
    )
    port = str(free_port())
    env = {**BASE, "PREFECT_HOME": str(tmp_path), "API_URL": f"http://127.0.0.1:{port}/api"}
    _records_past_their_inputs(tmp_path, env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(env), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    heavy, lines = json.loads(out.stdout)
    assert heavy == []
    for step, line in lines.items():
        assert ASKED[step] in line, (step, line)


def test_step_inputs_change_with_each_knob_of_the_step():
    deploy = record.step_inputs("deploy", BASE)
    assert deploy == record.step_inputs("deploy", dict(BASE))
    for name, value in [
        ("CRON", "0 10 15 * *"),
        ("TIMEZONE", "Europe/Paris"),
        ("WORK_POOL", "other"),
        ("WORK_QUEUE", "other"),
        ("WATCH_CRON", "0 7 * * *"),
        ("DATABASE_URL", "postgresql+asyncpg://u:p@h/db"),
        ("API_URL", "http://127.0.0.1:1/api"),
        ("PREFECT_API_AUTH_STRING", "a:b"),
    ]:
        assert record.step_inputs("deploy", {**BASE, name: value}) != deploy, name
    storage = record.step_inputs("storage", BASE)
    assert record.step_inputs("storage", {**BASE, "STORAGE_URL": "/x"}) != storage
    assert record.step_inputs("storage", {**BASE, "CRON": "0 10 15 * *"}) == storage
    queue = record.step_inputs("work-queue", BASE)
    assert record.step_inputs("work-queue", {**BASE, "WORK_QUEUE": "z"}) != queue
    assert record.step_inputs("work-queue", {**BASE, "STORAGE_URL": "/x"}) == queue


def test_step_inputs_cover_prefect_yaml_flows_and_the_lab_code(tmp_path):
    root = tmp_path / "lab"
    (root / "flows").mkdir(parents=True)
    (root / "src" / "fhvlab").mkdir(parents=True)
    (root / "prefect.yaml").write_text('deployments:\n  - name: "{{ $MY_KNOB }}"\n')
    (root / "lab.mk").write_text("")
    (root / "flows" / "f.py").write_text("x = 1\n")
    (root / "src" / "fhvlab" / "m.py").write_text("y = 1\n")
    first = record.step_inputs("deploy", BASE, root)
    assert record.step_inputs("deploy", {**BASE, "MY_KNOB": "b"}, root) != first  # {{ $MY_KNOB }}
    for path in ("prefect.yaml", "flows/f.py", "src/fhvlab/m.py"):
        before = record.step_inputs("deploy", BASE, root)
        (root / path).write_text((root / path).read_text() + "# changed\n")
        assert record.step_inputs("deploy", BASE, root) != before, path


@pytest.mark.parametrize(
    "content",
    [None, "", "{not json", "[]", json.dumps({"schema": 999, "lab": __version__, "steps": {}})],
    ids=["missing", "empty", "corrupt", "not-a-dict", "other-schema"],
)
def test_a_missing_corrupt_or_other_schema_record_is_empty(tmp_path, content):
    if content is not None:
        record.path(tmp_path).write_text(content)
    assert record.load(tmp_path) == {}
    assert uptodate.check("config", {**BASE, "PREFECT_HOME": str(tmp_path)}).done is False


def test_a_record_of_another_lab_version_is_empty(tmp_path):
    record.save(tmp_path, "config", {"inputs": "x"})
    data = json.loads(record.path(tmp_path).read_text())
    data["lab"] = "0.0.0-other"
    record.path(tmp_path).write_text(json.dumps(data))
    assert record.load(tmp_path) == {}


def test_save_keeps_other_steps_forget_drops_them_and_nothing_is_left_half_written(tmp_path):
    record.save(tmp_path, "config", {"inputs": "a"})
    record.save(tmp_path, "storage", {"inputs": "b"})
    assert set(record.load(tmp_path)) == {"config", "storage"}
    record.forget(tmp_path, ["config"])
    assert set(record.load(tmp_path)) == {"storage"}
    record.forget(tmp_path)
    assert record.load(tmp_path) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == [record.FILE]


def test_config_is_done_only_when_the_profile_still_holds_the_recorded_values(tmp_path):
    env = {**BASE, "PREFECT_HOME": str(tmp_path)}
    profile = {"PREFECT_API_URL": "http://127.0.0.1:4599/api"}
    record.save(
        tmp_path, "config", {"inputs": record.step_inputs("config", env), "profile": profile}
    )
    toml = tmp_path / "profiles.toml"
    toml.write_text(
        'active = "fhvlab"\n[profiles.fhvlab]\nPREFECT_API_URL = "http://127.0.0.1:4599/api"\n'
    )
    assert uptodate.check("config", env).done is True
    toml.write_text(toml.read_text().replace("4599", "4598"))  # `prefect config set` by hand
    assert uptodate.check("config", env).done is False
    toml.write_text(
        'active = "default"\n[profiles.fhvlab]\nPREFECT_API_URL = "http://127.0.0.1:4599/api"\n'
    )
    assert uptodate.check("config", env).done is False
    assert uptodate.check("config", {**env, "API_URL": "http://127.0.0.1:1/api"}).done is False


def test_a_server_that_does_not_answer_means_work(tmp_path):
    port = str(free_port())
    env = {**BASE, "PREFECT_HOME": str(tmp_path), "API_URL": f"http://127.0.0.1:{port}/api"}
    _records_past_their_inputs(tmp_path, env)
    for step in ("server", "storage", "work-queue", "deploy"):
        verdict = uptodate.check(step, env)
        assert verdict.done is False, step
        assert ASKED[step] in verdict.line, (step, verdict.line)  # it asked, got no answer


def test_the_digests_ignore_what_the_server_changes_by_itself():
    deployment = {"id": "1", "name": "d", "updated": "t", "schedules": [], "paused": False}
    polled = {**deployment, "last_polled": "now", "status": "READY"}
    polled["global_concurrency_limit"] = None
    assert record.deployment_digest(polled) == record.deployment_digest(deployment)
    assert record.deployment_digest({**deployment, "updated": "t2"}) != record.deployment_digest(
        deployment
    )
    slots = {**deployment, "global_concurrency_limit": {"limit": 1, "active_slots": 0}}
    busy = {**deployment, "global_concurrency_limit": {"limit": 1, "active_slots": 1}}
    assert record.deployment_digest(slots) == record.deployment_digest(busy)
    block = {"id": "b", "name": "n", "data": {"basepath": "/x"}, "updated": "t"}
    assert record.block_digest({**block, "block_schema": {"x": 1}}) == record.block_digest(block)
    assert record.block_digest({**block, "data": {"basepath": "/y"}}) != record.block_digest(block)


def test_the_check_does_not_wait_for_a_command_that_holds_the_lock(tmp_path):
    env = {**BASE, "PREFECT_HOME": str(tmp_path)}
    record.save(tmp_path, "config", {"inputs": "x"})
    fd = files.try_lock(tmp_path / record.LOCK)
    assert fd is not None
    try:
        assert uptodate.nothing_to_do("config", env) is None
    finally:
        os.close(fd)


def test_main_answers_only_the_plain_set_up_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    for argv in (["deploy", "--force"], ["config", "--reset"], ["data"], [], ["server", "stop"]):
        assert uptodate.main(argv) is None, argv
    assert uptodate.main(["deploy"]) is None  # no record: do the work


def test_api_url_and_lab_server():
    assert record.api_url(BASE) == "http://127.0.0.1:4599/api"
    assert record.api_url({**BASE, "PREFECT_HOST": "0.0.0.0"}) == "http://127.0.0.1:4599/api"
    assert record.api_url({**BASE, "API_URL": "http://h:1/api/"}) == "http://h:1/api"
    assert record.is_lab_server("http://localhost:4599/api", BASE)
    assert not record.is_lab_server("http://127.0.0.2:4599/api", BASE)
    assert not record.is_lab_server("http://127.0.0.1:4598/api", BASE)
    assert not record.is_lab_server("http://127.0.0.1:4599/api", {**BASE, "PREFECT_PORT": "x"})


def test_home_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert record.prefect_home({"PREFECT_HOME": "rel"}) == Path(tmp_path / "rel").resolve()
