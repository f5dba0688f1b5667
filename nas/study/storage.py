"""Where studies live: a journal file in the run directory by default, any Optuna storage by URL.

Optuna's journal file storage is safe for several processes on one machine (SQLite locks under
concurrent writers); an RDB server (PostgreSQL, MySQL) shares a study across machines. RDB
storages get Optuna heartbeats, so a trial whose worker died is failed after the grace period and
re-enqueued. The journal storage has none; each worker records its own on its trial instead
(`effnet.nas.study.recovery`).

Heartbeats default to every 30 s with a 120 s grace period; the environment variables
EFFNET_HEARTBEAT_INTERVAL and EFFNET_HEARTBEAT_GRACE (whole seconds) change them, for instance
to notice dead workers sooner in tests. Every worker on a study should use the same values: a
worker taken for dead too early has its trial run twice.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from effnet.nas.errors import InputError
from effnet.nas.redact import redact_url
from effnet.nas.study.recovery import MAX_RETRY

JOURNAL_NAME = "study.journal"
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
HEARTBEAT_INTERVAL_ENV = "EFFNET_HEARTBEAT_INTERVAL"
HEARTBEAT_GRACE_ENV = "EFFNET_HEARTBEAT_GRACE"
SCHEMA_RACE_RETRIES = 5
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "oracle", "mssql")


def describe_storage(url: str | None, run_dir: Path) -> str:
    return redact_url(url) if url else f"journal file {run_dir / JOURNAL_NAME}"


def open_storage(url: str | None, run_dir: Path) -> BaseStorage:
    """Open (and check) the study storage; every failure is an `InputError` with the URL redacted."""
    if url is None or url.startswith("journal:") or url.endswith((".journal", ".log")):
        path = run_dir / JOURNAL_NAME if url is None else Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise InputError(f"cannot open the journal storage {path}: {err.strerror}; "
                             f"choose a writable run directory or storage path") from None
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in _RDB_SCHEMES or "://" not in url:
        raise InputError(f"unsupported storage URL {redact_url(url)!r}; use postgresql://user:pass@host/db, "
                         f"mysql://..., sqlite:///path.db, or journal:PATH")
    if url.split("://", 1)[1].count("@") > 1:
        raise InputError(f"the storage URL {redact_url(url)} holds more than one @ before the host; "
                         f"write an @ in the user name or password as %40")
    engine_url = _with_postgres_driver(url, scheme)
    interval, grace = heartbeat_settings()
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme in ("postgresql", "postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    elif scheme == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(engine_url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                                  grace_period=grace, **_retry_stale_trials())
        except ImportError as err:
            raise InputError(f"the storage {redact_url(url)} needs a database driver that is not installed "
                             f"({err.name}); for PostgreSQL: pip install 'effnet[postgres]'") from None
        except Exception as err:  # SQLAlchemy raises many types for a bad URL or an unreachable server
            if _is_schema_race(err) and attempt < SCHEMA_RACE_RETRIES:
                attempt += 1
                time.sleep(0.2 * attempt)
                continue
            reason = redact_url(str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__
            raise InputError(f"cannot reach the storage {redact_url(url)}: {reason}; "
                             f"check the host, port, credentials and database name") from None


def _retry_stale_trials() -> dict[str, Any]:
    """Re-enqueue a dead worker's trial; Optuna 4.9 renamed the callback (the old name is deprecated)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        return {"heartbeat_stale_trial_callback": retry(max_retry=MAX_RETRY)}
    return {"failed_trial_callback": RetryFailedTrialCallback(max_retry=MAX_RETRY)}


def _with_postgres_driver(url: str, scheme: str) -> str:
    """Name an installed driver in a plain postgresql:// (or postgres://) URL.

    SQLAlchemy 2.1 reads postgresql:// as psycopg 3 and no longer knows postgres://; the
    `postgres` extra installs psycopg2, which older SQLAlchemy versions took by default.
    """
    if scheme not in ("postgresql", "postgres") or "+" in url.split("://", 1)[0]:
        return url
    rest = url.split("://", 1)[1] if "://" in url else ""
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise InputError(f"the storage {redact_url(url)} needs a PostgreSQL driver and none is installed; "
                     f"pip install 'effnet[postgres]' (psycopg2)")


def _is_schema_race(err: Exception) -> bool:
    """Workers started at once on an empty database all create Optuna's tables; the losers of that
    race get a unique violation (PostgreSQL) or "already exists", and a retry finds the tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(err, (IntegrityError, ProgrammingError)) and (
        "already exists" in str(err) or "duplicate key" in str(err))


def heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in seconds, from the environment or the defaults."""
    values = []
    for name, default in ((HEARTBEAT_INTERVAL_ENV, HEARTBEAT_INTERVAL_S), (HEARTBEAT_GRACE_ENV, GRACE_PERIOD_S)):
        text = os.environ.get(name, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise InputError(f"{name}={text!r} must be a whole number of seconds, at least 1 "
                             f"(default {default}); fix or unset it")
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise InputError(f"{HEARTBEAT_GRACE_ENV} ({grace} s) must be longer than {HEARTBEAT_INTERVAL_ENV} "
                         f"({interval} s), or live workers are taken for dead; raise the grace period")
    return interval, grace
