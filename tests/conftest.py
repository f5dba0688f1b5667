from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from effnet.cli.app import app

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def proxy_cache_in_a_temporary_folder(tmp_path_factory):
    """The decoded proxy caches of this test session go to a temporary folder, not the user's cache (commands the
    tests start as processes inherit the variable)."""
    import os

    previous = os.environ.get("EFFNET_CACHE")
    os.environ["EFFNET_CACHE"] = str(tmp_path_factory.mktemp("effnet-cache"))
    yield
    if previous is None:
        os.environ.pop("EFFNET_CACHE", None)
    else:
        os.environ["EFFNET_CACHE"] = previous


@pytest.fixture
def b0_yaml() -> Path:
    """The reference EfficientNet-B0 spec shipped in configs/."""
    return REPO_ROOT / "configs" / "efficientnet-b0.yaml"


@pytest.fixture
def cli():
    """Invoke `effnet ARGS...` in-process; returns click's Result (exit_code, stdout, stderr, output)."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def one_torch_thread():
    """fvcore runs a real forward; on a shared 2-core machine one torch thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for this test session (tests/postgres.py), stopped at the end; skips without one."""
    from postgres import server_bin_dir, start_server

    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) on this machine; "
            "apt-get install postgresql to run the PostgreSQL tests"
        )
    server = start_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh database on the session's server; the URL carries the test user's real password."""
    import re
    import secrets

    name = re.sub(r"\W+", "_", request.node.name.lower())[:40]
    return postgres_server.create_database(f"t_{name}_{secrets.token_hex(3)}")


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a search or grid worker starts: a bad input must be refused before any training."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a worker started: the error should have come before any training")

    from effnet.nas.study import runner

    for name in ("work", "spawn_workers"):
        monkeypatch.setattr(runner, name, forbidden)


@pytest.fixture
def instant_study(monkeypatch):
    """A search or grid whose workers run no trial: the study is opened, recovered and written, nothing trained."""
    from effnet.nas.study import runner

    monkeypatch.setattr(runner, "work", lambda *args, **kwargs: "budget")
    monkeypatch.setattr(runner, "spawn_workers", lambda *args, **kwargs: [])


def pytest_terminal_summary(terminalreporter):
    """Say why the PostgreSQL tests were skipped even under -q (pytest shows skip reasons only with -rs)."""
    reasons = [
        report.longrepr[2].removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and "PostgreSQL" in report.longrepr[2]
    ]
    for reason in sorted(set(reasons)):
        terminalreporter.write_line(f"{reasons.count(reason)} PostgreSQL tests skipped: {reason}", yellow=True)


@pytest.fixture
def effnet_command(tmp_path):
    """Start `effnet ARGS` as a real process: effnet_command(args, name, env=None) -> Command (tests/postgres.py),
    output in tmp_path/logs/NAME.out and .err; whatever still runs at the end of the test is killed."""
    from postgres import start_effnet

    started = []

    def start(args, name, env=None):
        started.append(start_effnet(args, tmp_path / "logs", name, env))
        return started[-1]

    yield start
    for command in started:
        command.kill()
