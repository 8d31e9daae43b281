"""Prefect 3 set-up steps of the lab: profile config, result storage, work pool and queue.

Each function is idempotent: it reads first and changes only what differs, and says what
it did. The course's Prefect 2.0-beta command each one replaces is named in its docstring.
Import this module only after the environment is set (Prefect reads settings at import).
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    PREFECT_UI_API_URL,
    Profile,
    load_profiles,
    save_profiles,
)

PROFILE = "fhvlab"
STORAGE_BLOCK = "fhvlab-results"


def _settings_by_name(names: list[str]) -> dict[str, Any]:
    known = {
        s.name: s
        for s in (
            PREFECT_API_URL,
            PREFECT_UI_API_URL,
            PREFECT_RESULTS_PERSIST_BY_DEFAULT,
            PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
        )
    }
    return {n: known[n] for n in names}


def _stored_name(setting: Any) -> str:
    """The name a profile stores `setting` under (Prefect renames some legacy ones)."""
    return next(iter(Profile(name="probe", settings={setting: "x"}).settings)).name


def update_profile(values: dict[str, str | None]) -> list[str]:
    """Make the lab's profile active and set (or, with None, unset) `values` in it.

    Replaces `prefect profile create fhvlab`, `prefect profile use fhvlab` and
    `prefect config set/unset ...`; returns the lines describing what changed.
    """
    profiles = load_profiles(include_defaults=False)
    changes = []
    if PROFILE not in profiles.names:
        profiles.add_profile(Profile(name=PROFILE, settings={}))
        changes.append(f"created profile {PROFILE!r}")
    if profiles.active_name != PROFILE:
        profiles.set_active(PROFILE)
        changes.append(f"active profile is now {PROFILE!r}")
    current = {k.name: str(v) for k, v in profiles[PROFILE].settings.items()}
    settings = _settings_by_name(list(values))
    wanted: dict[Any, str | None] = {}
    for name, value in values.items():
        stored = _stored_name(settings[name])  # e.g. PREFECT_UI_API_URL is kept under
        if current.get(stored) == value or (value is None and stored not in current):
            continue  # PREFECT_SERVER_UI_API_URL
        wanted[settings[name]] = value
        changes.append(f"set {name}={value}" if value is not None else f"unset {name}")
    if wanted:
        profiles.update_profile(PROFILE, wanted)
    if changes:
        save_profiles(profiles)
    return changes


def save_storage(url: str) -> tuple[str, str]:
    """Check, then save the result-storage block (replaces `prefect storage create`) and make
    it the server's default (`prefect result-storage set`); return (slug, basepath).

    A plain folder becomes a LocalFileSystem block; an fsspec URL (s3://..., gs://...) a
    RemoteFileSystem block. Nothing is saved unless an object can be written, read and
    deleted through it (StorageError otherwise). Saving again updates the same block.
    """
    from fhvlab.orchestration import api, storage

    storage.probe(url)
    block = storage.block_for(url)
    block_id = block.save(STORAGE_BLOCK, overwrite=True)
    with api.client() as client:
        client.update_server_default_result_storage(block_id)
    return f"{block.get_block_type_slug()}/{STORAGE_BLOCK}", str(block.basepath)


def ensure_pool_and_queue(pool: str, queue: str) -> list[str]:
    """A process work pool and a queue in it (replaces `prefect work-queue create`)."""
    from prefect.workers.process import ProcessWorker

    from fhvlab.orchestration import api

    done = []
    with api.client() as client:
        try:
            existing = client.read_work_pool(pool)
            if existing.type != "process":
                done.append(f"work pool {pool!r} exists with type {existing.type!r} (kept)")
            else:
                done.append(f"work pool {pool!r} (process) already exists")
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            done.append(f"created work pool {pool!r} (process)")
        try:
            client.read_work_queue_by_name(queue, work_pool_name=pool)
            done.append(f"work queue {queue!r} in pool {pool!r} already exists")
        except ObjectNotFound:
            client.create_work_queue(name=queue, work_pool_name=pool)
            done.append(f"created work queue {queue!r} in pool {pool!r}")
    return done
