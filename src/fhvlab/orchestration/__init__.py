"""Orchestration: the Prefect set-up (profile, storage, pool, automations) and the API
side of backfills and watches."""
