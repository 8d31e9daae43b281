"""One Settings: lab.mk holds each knob's default once; make and Python read the same values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from fhvlab import knobs, settings
from fhvlab.settings import Settings
from tests.conftest import ROOT, clean_env, run_make

MAKEFILE = (ROOT / "Makefile").read_text()
EXPORTED = {
    word
    for line in MAKEFILE.splitlines()
    if line.startswith("export ") and "=" not in line.split("#")[0]
    for word in line.split("#")[0].split()[1:]
}
SECRETS = {"PREFECT_SERVER_API_AUTH_STRING"}  # Prefect's own setting, read, never defaulted


def test_every_knob_the_makefile_exports_is_a_field_and_every_field_a_knob():
    fields = {name.upper() for name in Settings.model_fields}
    defaults = knobs.lab_defaults()
    assert EXPORTED - {"PREFECT_HOME"} <= fields, "exported to Python but not in Settings"
    assert fields - SECRETS <= set(defaults), "a Settings field with no line in lab.mk"


def test_defaults_are_written_once_in_lab_mk_not_repeated_in_python():
    defaults = knobs.lab_defaults()
    for name, field in Settings.model_fields.items():
        if name.upper() in SECRETS:
            continue
        if defaults[name.upper()]:  # lab.mk has it: Python must not repeat it
            assert field.is_required(), f"{name}: default repeated in settings.py"
        else:
            assert not field.is_required(), f"{name}: empty in lab.mk, so optional here"


def test_the_environment_wins_empty_means_unset_and_folders_are_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORK_POOL", "other-pool")
    monkeypatch.setenv("CRON", "")
    monkeypatch.setenv("DATA_DIR", "rel/data")
    monkeypatch.delenv("API_URL", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)  # conftest gives the test process its own
    monkeypatch.setenv("PREFECT_PORT", "4999")
    got = settings.current()
    assert got.work_pool == "other-pool"
    assert got.cron == knobs.lab_defaults()["CRON"] == "0 9 15 * *"
    assert got.data_dir == tmp_path / "rel" / "data"
    assert got.prefect_home == ROOT / "env" / "prefect"
    assert got.lab_api_url == "http://127.0.0.1:4999/api"
    assert got.result_storage == str(ROOT / "env" / "prefect" / "results")


def test_secrets_never_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("WEBHOOK_URL", "https://hooks.example/T000/SECRET123")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:hunter2@127.0.0.1:5432/p")
    got = settings.current()
    assert "SECRET123" not in repr(got)
    assert "hunter2" not in repr(got)
    assert got.webhook_url.get_secret_value().endswith("SECRET123")


def test_a_malformed_knob_is_refused(monkeypatch):
    monkeypatch.setenv("WATCH_TIMEOUT", "soon")
    with pytest.raises(ValidationError):
        settings.current()


def test_lab_mk_parser_reads_make_syntax(tmp_path):
    mk = tmp_path / "lab.mk"
    mk.write_text("# c\nA   ?= 1 2  # note\nB ?=\nC ?= $(ROOT)/x\nnot = a knob\n")
    knobs.lab_defaults.cache_clear()
    try:
        got = knobs.lab_defaults(mk)
    finally:
        knobs.lab_defaults.cache_clear()
    assert got == {"A": "1 2", "B": "", "C": f"{knobs.ROOT}/x"}


def _shown(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if re.match(r"^[A-Z_]+=", line))


def test_make_and_python_agree_on_every_knob(tmp_path):
    env = clean_env({"WORK_QUEUE": "q-from-env"})
    shown = _shown(
        run_make("-s", "knobs", "CRON=0 7 1 * *", f"DATA_DIR={tmp_path}", env=env).stdout
    )
    assert shown["CRON"] == "0 7 1 * *"  # command line
    assert shown["WORK_QUEUE"] == "q-from-env"  # environment
    assert shown["DATA_DIR"] == str(tmp_path)
    assert shown["STORAGE_URL"] == str(ROOT / "env" / "prefect" / "results")  # derived once
    for name, value in knobs.lab_defaults().items():
        if name in shown and name not in {"CRON", "WORK_QUEUE", "DATA_DIR", "STORAGE_URL"}:
            if name in {"API_URL", "UI_API_URL"}:
                assert shown[name] == "http://127.0.0.1:4200/api"
            elif name == "WATCH_TIMEOUT":
                assert float(shown[name]) == float(value)
            else:
                assert shown[name] == value, name


def test_make_refuses_a_malformed_knob_in_one_line():
    done = run_make("-s", "knobs", "WATCH_TIMEOUT=soon", env=clean_env())
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "WATCH_TIMEOUT='soon'" in lines[0]
    assert "Traceback" not in done.stderr


def test_defaults_file_is_at_the_root():
    assert Path(knobs.LAB_MK) == ROOT / "lab.mk"
