"""Storage URLs: told apart by scheme (never by how they end), the right driver named, passwords hidden in
every form they take, wherever a URL is shown or written."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from effnet.cli import app as cli_app
from effnet.cli.app import app
from effnet.nas.errors import InputError
from effnet.nas.redact import redact, redact_argv, redact_url, url_secrets
from effnet.nas.study.storage import database_url, open_storage

from postgres import TINY_SEARCH, files_holding

runner = CliRunner()


@pytest.mark.parametrize("ending", ["study.journal", "effnet.log"])
def test_a_database_url_ending_like_a_journal_is_a_database(ending, tmp_path, monkeypatch, no_training):
    """It used to be taken for a local journal path: directories named after the URL, password and all."""
    monkeypatch.chdir(tmp_path)
    url = f"postgresql://effnet:j0urnal-pw@127.0.0.1:1/{ending}"
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--storage", url, "--run-dir", "run"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: cannot reach the storage postgresql://effnet:***@127.0.0.1:1/{ending}: ")
    assert "j0urnal-pw" not in result.output
    assert list(tmp_path.iterdir()) == []  # no folder named after the URL, nor the refused run's own directory


def test_an_sqlite_file_that_cannot_be_opened_gets_the_fix_for_a_file(tmp_path, no_training):
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--storage", url, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().endswith(
        "unable to open database file; check that the database file's folder exists and is writable"
    )
    assert not (tmp_path / "run").exists()  # the refused run leaves no directory of its manifest and lock


def test_a_refused_run_keeps_a_directory_it_did_not_create(tmp_path, no_training):
    (tmp_path / "run").mkdir()
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--storage", url, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert (tmp_path / "run").is_dir()


def test_a_journal_is_named_by_its_scheme(tmp_path):
    path = tmp_path / "elsewhere" / "my.journal"
    notes: list[str] = []
    storage = open_storage(f"journal:{path}", tmp_path / "run", notes)
    assert storage.get_all_studies() == [] and path.is_file() and notes == []
    with pytest.raises(InputError, match="unsupported storage URL 'runs/x.journal'; .* or journal:PATH"):
        open_storage("runs/x.journal", tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_journal_path_that_is_no_regular_file_is_refused(kind, tmp_path):
    path = tmp_path / "study.journal"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(InputError, match=r"^the journal storage \S+ is not a regular file; give a file path") as err:
        open_storage(f"journal:{path}", tmp_path)
    assert "not an Optuna journal" not in str(err.value)  # said once, not wrapped in a second message


@pytest.mark.parametrize(
    "url, driver",
    [
        ("postgresql://u:pw@h/db", "postgresql+psycopg2"),
        ("postgres://u:pw@h/db", "postgresql+psycopg2"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg"),
        ("mysql://u:pw@h/db", "mysql"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_each_scheme_gets_its_driver(url, driver):
    if driver == "postgresql+psycopg2" and importlib.util.find_spec("psycopg") is not None:
        driver = "postgresql+psycopg"  # an installed psycopg 3 is preferred, as SQLAlchemy itself does
    assert database_url(url).drivername == driver


@pytest.mark.parametrize(
    "url, driver, advice",
    [
        ("postgresql+psycopg://effnet:drv-pw@127.0.0.1:1/db", "psycopg", "pip install 'psycopg[binary]'"),
        ("mysql://effnet:drv-pw@127.0.0.1:1/db", "mysqldb", "pip install mysqlclient"),
        ("mysql+pymysql://effnet:drv-pw@127.0.0.1:1/db", "pymysql", "pip install pymysql"),
    ],
)
def test_a_missing_driver_is_named_with_how_to_install_it(url, driver, advice, tmp_path):
    if importlib.util.find_spec({"mysqldb": "MySQLdb"}.get(driver, driver)) is not None:
        pytest.skip(f"{driver} is installed here")
    with pytest.raises(InputError) as refused:
        open_storage(url, tmp_path)
    message = str(refused.value)
    assert f"needs the database driver {driver}, which is not installed" in message and message.endswith(advice)
    assert "drv-pw" not in message and "(None)" not in message


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite://", "sqlite:///file::memory:?cache=shared", "sqlite:///study.db?mode=memory"]
)
def test_an_in_memory_sqlite_database_is_refused(url, tmp_path):
    with pytest.raises(InputError, match="is an in-memory SQLite database, which no other worker, heartbeat"):
        open_storage(url, tmp_path)


# -- passwords --------------------------------------------------------------------------------------

FORMS = {
    "userinfo": ("postgresql://effnet:{pw}@127.0.0.1:1/effnet", "Plain-pw-1"),
    "percent-encoded": ("postgresql://effnet:{pw}@127.0.0.1:1/effnet", "p%40ss%20w0rd"),
    "space": ("postgresql://effnet:{pw}@127.0.0.1:1/effnet", "two words-pw"),
    "quote": ("postgresql://effnet:{pw}@127.0.0.1:1/effnet", "it's\"quoted"),
    "unencoded @": ("postgresql://effnet:{pw}@127.0.0.1:1/effnet", "at@sign-pw"),
    "query": ("postgresql://effnet@127.0.0.1:1/effnet?password={pw}", "query-pw-2"),
    "query, second": ("postgresql://effnet@127.0.0.1:1/effnet?sslmode=disable&password={pw}", "query pw 3"),
    "passwd": ("mysql://effnet@127.0.0.1:1/effnet?passwd={pw}", "mysql-pw-4"),
}
"""Each way a password sits in a URL, with a password no other text holds."""


def secret_forms(password: str) -> set[str]:
    """The password as written, and percent-decoded (how a driver or a log would repeat it)."""
    from urllib.parse import unquote

    return {password, unquote(password)}


@pytest.mark.parametrize("form", list(FORMS))
def test_redaction_hides_every_form_of_a_password(form):
    template, password = FORMS[form]
    url = template.format(pw=password)
    shown = [
        redact_url(url),
        redact(f"cannot reach {url}: refused", url_secrets(url)),
        *redact_argv(["effnet", "--storage", url, f"--storage={url}"]),
        redact(f"driver said: password {password} rejected", url_secrets(url)),
    ]
    for text in shown:
        assert not [s for s in secret_forms(password) if s in text], text
    assert redact_url(url).startswith("postgresql://effnet" if "postgresql" in url else "mysql://effnet")
    assert "127.0.0.1:1/effnet" in redact_url(url)


@pytest.mark.parametrize("form", list(FORMS))
def test_no_password_reaches_the_output_or_the_run_directory(form, tmp_path, no_training):
    template, password = FORMS[form]
    url = template.format(pw=password)
    for args in (["--storage", url], [f"--storage={url}"]):
        result = runner.invoke(app, ["search", *TINY_SEARCH, *args, "--run-dir", str(tmp_path), "--json"])
        assert result.exit_code == 2, result.output
        output = result.stdout + result.stderr
        assert "***" in output and not [s for s in secret_forms(password) if s in output], output
    assert not [p for s in secret_forms(password) for p in files_holding(s, tmp_path)]


def test_an_unexpected_error_logs_no_password(tmp_path, monkeypatch, capsys):
    """The crash log (a traceback) and the line about it hide the command line's passwords too."""
    password = "crash pw'5"
    url = f"postgresql://effnet:{password}@127.0.0.1:1/effnet"
    run_dir = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError(f"boom while opening {url} with password {password}")

    monkeypatch.setattr("effnet.nas.study.opening.open_storage", broken)
    command = ["effnet", "search", *TINY_SEARCH, "--storage", url, "--run-dir", str(run_dir), "--json"]
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert "unexpected error: RuntimeError: boom" in err and password not in err
    log = run_dir / "error.log"
    reported = json.loads(out)  # --json: the failure as one object on stdout too, the password hidden there as well
    assert reported["exit_code"] == 1 and reported["traceback"] == str(log) and "boom" in reported["error"]
    assert password not in out
    assert "RuntimeError: boom" in log.read_text() and files_holding(password, tmp_path) == []


def test_an_unexpected_error_before_the_run_directory_is_known_gets_a_log_of_its_own(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("effnet.nas.units.parse_size", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("early")))
    monkeypatch.setattr(sys, "argv", ["effnet", "search", "--run-dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit):
        cli_app.main()
    err = capsys.readouterr().err
    log = Path(err.split("(traceback in ")[1].rstrip(")\n"))
    assert log.name.startswith("effnet-error-") and log.name != "error.log" and "RuntimeError: early" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == "0o600", "a log in the shared temp dir is for its owner only"
    log.unlink()


def test_runs_overlapping_in_threads_give_the_thread_hook_back():
    """Two runs of one process (the grid's worker threads) enter and leave in interleaved order: the hook that
    quiets storage failures stays while either runs and the previous one is back after both."""
    from effnet.nas.study.storage_failures import storage_failures

    before = threading.excepthook
    first, second = storage_failures(None), storage_failures(None)
    first.__enter__()
    second.__enter__()
    assert threading.excepthook is not before
    first.__exit__(None, None, None)
    assert threading.excepthook is not before  # the second run is still going
    second.__exit__(None, None, None)
    assert threading.excepthook is before
