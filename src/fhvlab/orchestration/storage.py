"""Result storage past one machine: the block a STORAGE_URL becomes, and the probe that it answers.

A plain folder (or `file://...`) is a `LocalFileSystem` block; any other fsspec URL
(`s3://bucket/prefix`, `gs://...`, `az://container/prefix`, ...) a `RemoteFileSystem` block,
whose scheme's package (s3fs, gcsfs, adlfs: installed by `make setup`) reads its credentials
and endpoint from the SDK's own environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS /
STORAGE_EMULATOR_HOST, AZURE_STORAGE_*): the block holds no secret. Before a block is saved,
`probe` writes, reads and deletes one object through it; a failure is a StorageError whose
one line names the URL (never a secret) and what to do.

Import after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fhvlab import knobs
from fhvlab.errors import LabError

# The course's remote schemes, the package each needs, and the environment it reads.
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
PACKAGES |= {"az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
CREDENTIALS = {
    "s3fs": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (AWS_ENDPOINT_URL: an S3-compatible server)",
    "gcsfs": "GOOGLE_APPLICATION_CREDENTIALS (STORAGE_EMULATOR_HOST for an emulator)",
    "adlfs": "AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT_NAME/_KEY)",
}
ENDPOINTS = {"s3fs": "AWS_ENDPOINT_URL", "gcsfs": "STORAGE_EMULATOR_HOST"}
SECRETS, STORAGE_ENV = knobs.STORAGE_SECRETS, knobs.STORAGE_ENV
PROBE_TIMEOUT = 20.0  # seconds for the write, read and delete together
SDK_LOGGERS = ("s3fs", "gcsfs", "adlfs", "azure", "aiobotocore", "botocore", "google")
PROBE_SETTINGS: dict[str, dict[str, Any]] = {  # the probe's: no retry, a short connect timeout
    s: {"config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 1}}}
    for s in ("s3", "s3a")
}
_INSTALL = re.compile(r"[Ii]nstall (?:with )?(?:pip install )?['`\"]?([\w.-]+)")
_MISSING = re.compile(r"(?i)NoSuchBucket|ContainerNotFound|bucket does not exist|404|FileNotFound")
_DENIED = re.compile(
    r"(?i)denied|forbidden|403|401|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"AuthenticationFailed|failed to authenticate|credential|unauthori[sz]ed|invalid_grant"
)
_UNREACHABLE = re.compile(r"(?i)connect|resolve|unreachable|refused|endpoint|timed? ?out")
_SECRET_FIELD = re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|sig)=)[^;&\s]+")


class StorageError(LabError):
    """The result storage cannot be used: nothing was saved."""


def scheme(url: str) -> str:
    """The URL's scheme ("" for a plain folder)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_remote(url: str) -> bool:
    """Whether `url` is a remote fsspec URL (not a folder, not file://)."""
    return scheme(url) not in ("", "file", "local")


def shown(url: str) -> str:
    """`url` with any user:password@ part masked, for printing."""
    netloc = urlsplit(url).netloc
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return url.replace(netloc, f"{userinfo.split(':', 1)[0]}:*****@{host}", 1)


def mask(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret the environment holds (and AccountKey=... fields) masked."""
    env = os.environ if env is None else env
    for name in SECRETS:
        value = env.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "*****")
    return _SECRET_FIELD.sub(r"\1*****", text)


def settings_shown(env: Mapping[str, str] | None = None) -> list[str]:
    """`NAME=value` of each storage variable set, secrets as *****."""
    env = os.environ if env is None else env
    return [f"{n}={'*****' if n in SECRETS else env[n]}" for n in sorted(STORAGE_ENV) if env.get(n)]


def bucket_of(url: str) -> str:
    """The bucket (S3, GCS) or container (Azure) of a remote URL: `s3://BUCKET/prefix`."""
    return urlsplit(url).netloc.split("@", 1)[0]


def package_of(url: str) -> str | None:
    """The Python package the URL's scheme needs (None for a folder)."""
    if not is_remote(url):
        return None
    found = PACKAGES.get(scheme(url))
    if found:
        return found
    from fsspec.registry import known_implementations

    known = known_implementations.get(scheme(url)) or {}
    match = _INSTALL.search(known.get("err", ""))
    return match.group(1) if match else None


def require_package(url: str) -> None:
    """StorageError when fsspec does not know the scheme or its package is not installed."""
    if not is_remote(url):
        return
    from fsspec.registry import get_filesystem_class

    name = package_of(url)
    try:
        get_filesystem_class(scheme(url))
    except ValueError:
        raise StorageError(
            f"storage {shown(url)}: fsspec knows no scheme {scheme(url)!r}; use s3://, gs://, "
            "az://, another fsspec URL or a folder"
        ) from None
    except ImportError:
        raise StorageError(
            f"storage {shown(url)}: the {scheme(url)}:// scheme needs the Python package "
            f"{name or '(see fsspec)'}, which is not installed: add it to pyproject.toml "
            "(uv add ...) and run make setup"
        ) from None


def block_for(url: str) -> Any:
    """The unsaved block for `url`: RemoteFileSystem for a remote URL, else LocalFileSystem."""
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    if is_remote(url):
        return RemoteFileSystem(basepath=url.rstrip("/"))
    folder = Path(url.removeprefix("file://")).expanduser().resolve()
    return LocalFileSystem(basepath=str(folder))


def advice(url: str, exc: BaseException) -> str:
    """What a failed probe means and what to do, from the exception (one line, no secret)."""
    package = package_of(url) or ""
    creds = CREDENTIALS.get(package, "the storage's credentials")
    endpoint = os.environ.get(ENDPOINTS.get(package, ""), "") if package in ENDPOINTS else ""
    where = f" at {endpoint}" if endpoint else ""
    text = f"{type(exc).__name__} {exc}"
    bucket = bucket_of(url)
    if isinstance(exc, TimeoutError):
        return f"no answer{where} within {PROBE_TIMEOUT:.0f} s: is the storage server up?"
    if _MISSING.search(text):
        noun = "container" if package == "adlfs" else "bucket"
        return f"{noun} {bucket!r} does not exist{where}: create it, or fix STORAGE_URL"
    if _DENIED.search(text):
        return f"access denied{where}: check {creds}"
    if _UNREACHABLE.search(text):
        return f"cannot connect{where}: is the storage server up, and {creds} right?"
    return f"{mask(text)[:200]}: check {creds}"


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """The loggers `names` and their children silenced while inside."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def _bounded(work: Any, timeout: float) -> Any:
    """work() in a daemon thread, at most `timeout` s; its exception re-raised."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="storage-probe")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:.0f} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Write, read back and delete one small object at `url`; StorageError (one line) if not.

    The probe's own block asks the SDK for no retries and a short connect timeout
    (PROBE_SETTINGS), so a storage that is down fails in about a second, not after the
    SDK's back-off (10 s and more for one S3 call).
    """
    require_package(url)
    from prefect.filesystems import RemoteFileSystem

    block = block_for(url)
    if is_remote(url):
        fast = PROBE_SETTINGS.get(scheme(url), {})
        block = RemoteFileSystem(basepath=block.basepath, settings=fast)
    key = f".fhvlab-probe-{uuid.uuid4().hex}"
    data = key.encode()

    def work() -> None:
        if scheme(url) in PACKAGES:  # FileNotFoundError if missing (write_path would create it)
            block.filesystem.info(bucket_of(url))
        block.write_path(key, data)
        if block.read_path(key) != data:
            raise OSError("the object read back differs from the one written")
        if is_remote(url):
            block.filesystem.rm(f"{block.basepath}/{key}")
        else:
            (Path(block.basepath) / key).unlink()

    try:
        with _quiet(SDK_LOGGERS):  # their retries and tracebacks: the one line below says it
            _bounded(work, timeout)
    except Exception as exc:
        raise StorageError(f"storage {shown(url)}: {advice(url, exc)}") from None


def check_default(timeout: float = PROBE_TIMEOUT) -> str:
    """Probe the result storage a run of this process would use (the profile's block, else
    the server's default, else Prefect's local folder); its URL. StorageError if it fails."""
    from prefect.results import get_default_result_storage

    try:
        block = get_default_result_storage()
    except (ValueError, RuntimeError) as exc:  # a block the profile names is gone
        raise StorageError(f"result storage: {mask(str(exc))[:200]}: run make storage") from None
    url = str(getattr(block, "basepath", "") or "")
    if not url:
        return type(block).__name__  # a storage the lab did not make: Prefect handles it
    probe(url, timeout)
    return shown(url)


# Prefect's words in a run's log when a result could not be written to the storage.
UNPERSISTED = ("the result has not been persisted", "error was encountered while committing")


class Unpersisted(logging.Handler):
    """Counts Prefect's run-log records saying a result was not persisted (the run goes on)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record if it is one of UNPERSISTED."""
        message = record.getMessage()
        self.count += any(words in message for words in UNPERSISTED)


@contextlib.contextmanager
def watch_unpersisted() -> Iterator[Unpersisted]:
    """While inside, count the results Prefect could not persist (logger `prefect`)."""
    handler = Unpersisted()
    logger = logging.getLogger("prefect")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
