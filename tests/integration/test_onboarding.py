"""Onboarding: `make doctor`, `make tour`, and the Prefect UI in a real headless browser."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import requests

from fhvlab.local import ui
from tests.conftest import copy_project, free_port, run_make

pytestmark = pytest.mark.integration


def _need_browser() -> None:
    if ui.find_chromium() is None:
        if os.environ.get("FHVLAB_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required here (FHVLAB_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")


def test_doctor_on_a_machine_with_nothing_set_up(tmp_path):
    project = copy_project(tmp_path / "lab")
    fake_home = tmp_path / "user"
    (fake_home / ".prefect").mkdir(parents=True)
    (fake_home / ".prefect" / "orion.db").write_bytes(b"")  # left over from Prefect 2
    env = {"HOME": str(fake_home), "PREFECT_PORT": str(free_port())}
    result = run_make("doctor", env=env, cwd=project)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 10
    for line in lines:
        if line.startswith(("[FAIL]", "[--]")):
            assert "  ->  " in line, line
    assert any(line.startswith("[FAIL] venv") and line.endswith("->  make setup") for line in lines)
    assert any(line.startswith("[FAIL] api") and line.endswith("->  make server") for line in lines)
    assert any(line.startswith("[!]    ~/.prefect") for line in lines)
    assert "next: make setup" in result.stdout
    assert not (project / "env").exists()  # it changed nothing


def test_tour_stops_at_the_data_step_when_the_data_host_is_unreachable(prefect_lab):
    env = {**prefect_lab, "DATA_URL": f"http://127.0.0.1:{free_port()}/trip-data"}
    result = run_make("tour", env=env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cannot fetch" in errors[0]
    assert "tour: 1/6 data" in result.stdout
    assert "tour: 2/6" not in result.stdout
    assert not (Path(prefect_lab["PREFECT_HOME"]) / "server.pid").exists()
    assert not Path(prefect_lab["ARTIFACTS_DIR"]).exists()
    assert list(Path(prefect_lab["DATA_DIR"]).glob("*")) == []


def test_tour_then_doctor_and_the_ui_in_a_browser(prefect_lab):
    env = prefect_lab
    first = run_make("tour", env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    metrics = json.loads((Path(env["ARTIFACTS_DIR"]) / "metrics-2021-08-15.json").read_text())
    dv_bytes = (Path(env["ARTIFACTS_DIR"]) / "dv-2021-08-15.pkl").stat().st_size
    out = first.stdout
    # The module's SQLite walk (its PostgreSQL one: test_orchestration's end to end).
    home = Path(env["PREFECT_HOME"])
    assert f"server: database SQLite {home / 'prefect.db'}" in out
    assert (home / "prefect.db").exists()
    assert f"summary: validation RMSE for 2021-08-15: {metrics['val_rmse']:.4f}" in out
    assert f"summary: dv-2021-08-15.pkl: {dv_bytes} bytes" in out
    assert "cron 0 9 15 * *, 3 scheduled runs" in out
    assert re.search(r"fhv-queue", out.split("summary: UI")[-1])  # prefect work-queue ls
    ui_url = re.search(r"summary: UI (\S+)", out)[1]

    # Once: running it again walks the same steps, each of them tested twice on its own
    # (`make data` again: test_download; `make deploy` again: test_orchestration's end to
    # end; `make train` again: test_train_flow's cache).
    api = f"http://127.0.0.1:{env['PREFECT_PORT']}/api"
    body = {"flows": {"name": {"any_": ["fhv-duration-training"]}}}  # fhv-backfill aside
    assert len(requests.post(f"{api}/deployments/filter", json=body, timeout=10).json()) == 1
    completed = requests.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}},
        timeout=10,
    ).json()
    assert len(completed) == 2  # the `make train` run and the deployment's run

    doctor = run_make("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout
    assert "doctor: all good" in doctor.stdout

    _need_browser()
    page = ui.page_text(ui_url)
    assert "fhv-monthly" in page
    assert "At 09:00 AM on day 15 of the month" in page
    shot = run_make("ui", env=env)
    assert shot.returncode == 0, shot.stderr
    png = Path(env["ARTIFACTS_DIR"]) / "ui" / "deployment.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one
