"""The result storage's pure pieces: schemes, packages, masking, the one-line advice."""

from __future__ import annotations

import logging

import pytest

from fhvlab.local import record
from fhvlab.orchestration import storage

KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("url", "remote", "package"),
    [
        ("/srv/results", False, None),
        ("file:///srv/results", False, None),
        ("s3://fhv-bucket/results", True, "s3fs"),
        ("gs://fhv-bucket/results", True, "gcsfs"),
        ("gcs://fhv-bucket/results", True, "gcsfs"),
        ("az://fhv-container/results", True, "adlfs"),
        ("abfs://fhv-container@account.dfs.core.windows.net/r", True, "adlfs"),
        ("oss://fhv-bucket/results", True, "ossfs"),
    ],
)
def test_scheme_and_package(url, remote, package):
    assert storage.is_remote(url) is remote
    assert storage.package_of(url) == package


def test_bucket_of():
    assert storage.bucket_of("s3://fhv-bucket/results/x") == "fhv-bucket"
    assert storage.bucket_of("abfs://box@account.dfs.core.windows.net/r") == "box"


def test_a_password_in_the_url_is_masked():
    assert storage.shown("s3://fhv-bucket/r") == "s3://fhv-bucket/r"
    assert storage.shown("ftp://me:hunter22@host/r") == "ftp://me:*****@host/r"


def test_secrets_are_masked_wherever_they_show():
    env = {"AWS_SECRET_ACCESS_KEY": KEY, "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    assert KEY not in storage.mask(f"signature for {KEY} failed", env)
    assert (
        storage.mask("AccountName=a;AccountKey=abc==;B=1", {})
        == "AccountName=a;AccountKey=*****;B=1"
    )
    shown = storage.settings_shown(env)
    assert shown == ["AWS_ENDPOINT_URL=http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY=*****"]


def test_missing_or_unknown_packages_are_one_line():
    storage.require_package("s3://fhv-bucket/results")  # installed by make setup
    with pytest.raises(storage.StorageError, match=r"needs the Python package ossfs"):
        storage.require_package("oss://fhv-bucket/results")
    with pytest.raises(storage.StorageError, match=r"fsspec knows no scheme 'zzz'"):
        storage.require_package("zzz://fhv-bucket/results")


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (FileNotFoundError("Not Found"), "bucket 'fhv-bucket' does not exist"),
        (PermissionError("Access Denied"), "access denied"),
        (OSError("Could not connect to the endpoint URL"), "cannot connect"),
        (TimeoutError("no answer"), "no answer"),
    ],
)
def test_advice_says_what_to_do(exc, said):
    line = storage.advice("s3://fhv-bucket/results", exc)
    assert said in line
    assert "\n" not in line


def test_a_changed_endpoint_or_key_redoes_the_storage_step():
    base = {"STORAGE_URL": "s3://fhv-bucket/results", "AWS_SECRET_ACCESS_KEY": KEY}
    first = record.step_inputs("storage", base)
    assert record.step_inputs("storage", base) == first
    assert record.step_inputs("storage", {**base, "AWS_ENDPOINT_URL": "http://x:1"}) != first
    assert record.step_inputs("storage", {**base, "AWS_SECRET_ACCESS_KEY": "other"}) != first
    assert KEY not in first


def test_unpersisted_results_are_counted():
    with storage.watch_unpersisted() as lost:
        logging.getLogger("prefect.task_runs").warning(
            "Encountered an error while persisting result: boom Execution will continue, "
            "but the result has not been persisted"
        )
        logging.getLogger("prefect.task_runs").warning("something else")
    logging.getLogger("prefect.task_runs").warning("the result has not been persisted")
    assert lost.count == 1
