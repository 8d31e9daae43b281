"""The lab's knobs, read in one typed place: the environment first, then lab.mk's defaults.

`lab.mk` (at the checkout's root) is the one place a knob's default is written: the
Makefile includes it, and `Settings` reads the same `NAME ?= value  # comment` lines, so
`make train` and `python -m fhvlab ...` (or a flow started by a worker) agree. Empty values
count as unset, as they do for the Makefile. `make knobs` prints what both sides see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fhvlab import knobs
from fhvlab.knobs import lab_defaults

ROOT = knobs.ROOT  # the checkout: every default folder is under it


class _LabMk(PydanticBaseSettingsSource):
    """A settings source of lab.mk's non-empty defaults (below the environment)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        names = self.settings_cls.model_fields
        return {k.lower(): v for k, v in lab_defaults().items() if v and k.lower() in names}


class Settings(BaseSettings):
    """Every knob the Makefile exports to the lab's Python (see lab.mk for each one's help)."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    # No default here when lab.mk has one: lab.mk is where defaults live.
    date: str
    data_url: str
    data_dir: Path
    artifacts_dir: Path
    prefect_home: Path
    prefect_host: str
    prefect_port: str  # parsed, with its one-line error, by local.server.parse_port
    api_url: str = ""
    ui_api_url: str = ""
    storage_url: str = ""
    work_pool: str
    work_queue: str
    deployment: str
    cron: str
    timezone: str
    worker_poll: str
    concurrency: str
    rerun: str
    watch_timeout: float
    database_url: SecretStr = SecretStr("")
    pg_dir: Path
    pg_port: str = ""
    pg_bin: str = ""
    webhook_url: SecretStr = SecretStr("")
    watch_cron: str
    watch_ahead: str
    watch_from: str = ""
    prefect_server_api_auth_string: SecretStr = SecretStr("")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then lab.mk; no .env file, no secrets folder."""
        return init_settings, env_settings, _LabMk(settings_cls)

    def model_post_init(self, context: Any) -> None:
        """Folders absolute (like the Makefile's `abspath`), so every process agrees."""
        for name in ("data_dir", "artifacts_dir", "prefect_home", "pg_dir"):
            object.__setattr__(self, name, getattr(self, name).expanduser().resolve())

    @property
    def client_host(self) -> str:
        """Where clients reach the server: a listen-on-everything address means this host."""
        return knobs.client_host(self.prefect_host)

    @property
    def lab_api_url(self) -> str:
        """API_URL, else the lab server's own (PREFECT_HOST, PREFECT_PORT), like the Makefile."""
        return self.api_url or knobs.lab_api_url(self.prefect_host, self.prefect_port)

    @property
    def result_storage(self) -> str:
        """STORAGE_URL, else the results folder in the lab's Prefect home."""
        return self.storage_url or str(self.prefect_home / "results")


def current() -> Settings:
    """The knobs as this process sees them now (read again each call: tests change them)."""
    return Settings()


def data_dir() -> Path:
    """Folder of downloaded FHV months (`DATA_DIR`)."""
    return current().data_dir


def artifacts_dir() -> Path:
    """Folder of trained artifacts (`ARTIFACTS_DIR`)."""
    return current().artifacts_dir


def prefect_home() -> Path:
    """The lab's Prefect home (`PREFECT_HOME`)."""
    return current().prefect_home


def data_url() -> str:
    """Base URL of the monthly files (`DATA_URL`)."""
    return current().data_url
