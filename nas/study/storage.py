"""Where studies live: a journal file in the run directory by default, any Optuna storage by URL.

A storage is told by its URL's scheme, never by how it ends: `journal:PATH` (or no URL) is a journal
file, anything else is parsed by SQLAlchemy as a database URL, its driver named for its scheme.

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
import stat
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalStorage

from effnet.nas.errors import InputError
from effnet.nas.redact import redact, redact_url, url_secrets
from effnet.nas.study.journal import RepairingJournalBackend
from effnet.nas.study.recovery import MAX_RETRY

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

JOURNAL_NAME = "study.journal"
JOURNAL_PREFIX = "journal:"
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
HEARTBEAT_INTERVAL_ENV = "EFFNET_HEARTBEAT_INTERVAL"
HEARTBEAT_GRACE_ENV = "EFFNET_HEARTBEAT_GRACE"
SCHEMA_RACE_RETRIES = 5
DATABASES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
_SCHEME_ALIASES = {"postgres": "postgresql"}
"""Schemes SQLAlchemy no longer reads but users still write (Heroku's postgres://)."""
POSTGRES_DRIVERS = ("psycopg", "psycopg2")
"""Tried in turn for a postgresql:// URL that names none (SQLAlchemy 2.1 would take psycopg only); with
neither installed, the message names psycopg2, which the `postgres` extra installs."""
DRIVER_PACKAGES = {
    "psycopg2": "pip install 'effnet[postgres]' (psycopg2)",
    "psycopg": "pip install 'psycopg[binary]'",
    "pg8000": "pip install pg8000",
    "mysqldb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
    "mysqlconnector": "pip install mysql-connector-python",
    "cx_oracle": "pip install cx_Oracle",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
    "pymssql": "pip install pymssql",
}
"""How to install each database driver SQLAlchemy may ask for."""


def describe_storage(url: str | None, run_dir: Path) -> str:
    """The storage as it may be shown: a database URL with its passwords hidden, or the journal's path."""
    if url is None or url.startswith(JOURNAL_PREFIX):
        return f"journal file {journal_path(url, run_dir)}"
    return redact_url(url)


def journal_path(url: str | None, run_dir: Path) -> Path:
    return run_dir / JOURNAL_NAME if url is None else Path(url[len(JOURNAL_PREFIX) :]).expanduser()


def open_storage(url: str | None, run_dir: Path, notes: list[str] | None = None) -> BaseStorage:
    """Open (and check) the study storage: a journal file (no URL, or `journal:PATH`) or a database, told
    apart by the URL's scheme. Every failure is an `InputError` with the passwords hidden. A torn journal
    is repaired, its fragment moved into `run_dir`, and a line saying so appended to `notes`."""
    if url is None or url.startswith(JOURNAL_PREFIX):
        return _open_journal(journal_path(url, run_dir), run_dir, notes)
    return _open_database(url)


def _open_journal(path: Path, run_dir: Path, notes: list[str] | None) -> JournalStorage:
    try:
        mode = path.stat().st_mode if path.exists() else None
        if mode is not None and not stat.S_ISREG(mode):
            raise InputError(
                f"the journal storage {path} is not a regular file; give a file path (journal:PATH) "
                "or leave --storage out for the run directory's journal"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = RepairingJournalBackend(path, run_dir)
            storage = JournalStorage(backend)
    except InputError:
        raise
    except OSError as err:
        raise InputError(
            f"cannot open the journal storage {path}: {err.strerror}; choose a writable run directory or storage path"
        ) from None
    except ValueError as err:  # a file that is no journal, left as it is
        raise InputError(
            f"the journal storage {path} is not an Optuna journal ({' '.join(str(err).split())}); "
            "give another path or run directory"
        ) from None
    if notes is not None:
        notes.extend(backend.repairs)
    return storage


def database_url(url: str) -> URL:
    """The storage URL parsed by its scheme with SQLAlchemy's parser, its driver named (an installed one
    for a bare postgresql://), checked; returns SQLAlchemy's `URL`. Anything unusable is an `InputError`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = redact_url(url)
    unsupported = InputError(
        f"unsupported storage URL {shown!r}; use postgresql://user:pass@host/db, "
        "mysql://..., sqlite:///path.db, or journal:PATH for a journal file"
    )
    if "://" not in url:
        raise unsupported
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise unsupported from None
    except ValueError:  # SQLAlchemy's parser reads the port as a number
        raise InputError(
            f"the storage URL {shown} has a port that is not a number; write it like "
            "postgresql://user:pass@host:5432/db"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = _SCHEME_ALIASES.get(backend.lower(), backend.lower())
    if backend not in DATABASES:
        raise unsupported
    if url.split("://", 1)[1].count("@") > 1:
        raise InputError(
            f"the storage URL {shown} holds more than one @ before the host; "
            f"write an @ in the user name or password as %40"
        )
    if backend == "sqlite" and _in_memory(parsed):
        raise InputError(
            f"the storage {shown} is an in-memory SQLite database, which no other worker, heartbeat "
            "or later run can open; use sqlite:///PATH.db, or leave --storage out for a journal file"
        )
    if backend == "postgresql" and not driver:
        driver = next((d for d in POSTGRES_DRIVERS if importlib.util.find_spec(d) is not None), "psycopg2")
    return parsed.set(drivername=f"{backend}+{driver}" if driver else backend)


def _in_memory(parsed: URL) -> bool:
    database = parsed.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or parsed.query.get("mode") == "memory"


def _check_driver(parsed: URL, shown: str) -> None:
    """Import the URL's database driver now, to name it (and how to install it) if it is missing."""
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except ImportError as err:
        driver = parsed.get_driver_name()
        how = DRIVER_PACKAGES.get(driver, f"install the {driver} package")
        raise InputError(
            f"the storage {shown} needs the database driver {driver}, which is not installed "
            f"(no module {err.name!r}); {how}"
        ) from None
    except Exception as err:  # SQLAlchemy has no dialect for the driver named after the +
        raise InputError(
            f"the storage {shown} names a driver SQLAlchemy does not know "
            f"({type(err).__name__}: {' '.join(str(err).split())}); "
            "write the URL like postgresql://... or postgresql+psycopg2://..."
        ) from None


def _open_database(url: str) -> RDBStorage:
    parsed = database_url(url)
    shown, secrets = redact_url(url), url_secrets(url)
    _check_driver(parsed, shown)
    scheme = parsed.get_backend_name()
    interval, grace = heartbeat_settings()
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    elif scheme == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    parsed.render_as_string(hide_password=False),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    **_retry_stale_trials(),
                )
        except Exception as err:  # SQLAlchemy raises many types for a bad URL or an unreachable server
            if _is_schema_race(err) and attempt < SCHEMA_RACE_RETRIES:
                attempt += 1
                time.sleep(0.2 * attempt)
                continue
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            fix = (
                "check that the database file's folder exists and is writable"
                if scheme == "sqlite"
                else "check the host, port, credentials and database name"
            )
            raise InputError(f"cannot reach the storage {shown}: {redact(reason, secrets)}; {fix}") from None


def _retry_stale_trials() -> dict[str, Any]:
    """Re-enqueue a dead worker's trial; Optuna 4.9 renamed the callback (the old name is deprecated)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        return {"heartbeat_stale_trial_callback": retry(max_retry=MAX_RETRY)}
    return {"failed_trial_callback": RetryFailedTrialCallback(max_retry=MAX_RETRY)}


def _is_schema_race(err: Exception) -> bool:
    """Workers started at once on an empty database all create Optuna's tables; the losers of that
    race get a unique violation (PostgreSQL) or "already exists", and a retry finds the tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(err, (IntegrityError, ProgrammingError)) and (
        "already exists" in str(err) or "duplicate key" in str(err)
    )


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
            raise InputError(
                f"{name}={text!r} must be a whole number of seconds, at least 1 (default {default}); fix or unset it"
            )
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise InputError(
            f"{HEARTBEAT_GRACE_ENV} ({grace} s) must be longer than {HEARTBEAT_INTERVAL_ENV} "
            f"({interval} s), or live workers are taken for dead; raise the grace period"
        )
    return interval, grace
