"""For the scale-out tests: a throwaway PostgreSQL server, and `effnet` commands run as real processes.

The server is a fresh cluster in a temp dir, on loopback, with a real password.

`initdb` makes the cluster (as the `postgres` user when the tests run as root, which PostgreSQL
refuses to run as), `pg_ctl` starts it on a free 127.0.0.1 port with its unix socket in the same
temp dir, and host connections need SCRAM password authentication, so the password in each test's
URL is checked by the server. Local socket connections (trusted) are only used to create roles and
databases. `stop()` shuts it down and deletes the cluster.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

USER = "effnet"
TINY_SPACE = str(Path(__file__).parent / "data" / "tiny_space.yaml")
TINY_BASE = str(Path(__file__).parent / "data" / "tiny_base.yaml")
TINY_SEARCH = [
    "--space",
    TINY_SPACE,
    "--target-flops",
    "1M",
    "--flops-tolerance",
    "0.3",
    "--data",
    "synthetic",
    "--proxy-epochs",
    "1",
    "--proxy-resolution",
    "32",
    "--batch-size",
    "32",
    "--timeout",
    "none",
    "--threads",
    "1",
]
"""A fast search: the tiny space, 4-class synthetic data, one epoch, one torch thread per worker."""
FAST_HEARTBEATS = {"EFFNET_HEARTBEAT_INTERVAL": "1", "EFFNET_HEARTBEAT_GRACE": "4"}
"""A dead worker's trial is failed after 4 s instead of 120 s."""


def server_bin_dir() -> Path | None:
    """The newest PostgreSQL server's bin dir (Debian's /usr/lib/postgresql/N/bin, or initdb on PATH)."""

    def version(initdb: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(initdb).parts[-3].split(".") if part.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    password: str
    run_as: list[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [*self.run_as, str(self.bin_dir / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log}"
            )
        return result

    def _local(self) -> list[str]:
        return ["-h", str(self.root), "-p", str(self.port), "-U", "postgres"]

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, owner: str = USER) -> str:
        """A new empty database owned by `owner` (the test user); returns the test user's URL of it (password
        included)."""
        self._run("createdb", *self._local(), "-O", owner, name)
        return self.url(name)

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        for attempt in range(3):  # another process may take the free port first
            self.port = free_port()
            try:
                self.resume()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.create_user(USER, self.password)

    def create_user(self, name: str, password: str) -> None:
        """A login role with `password` (any characters: it is quoted as SQL quotes a string)."""
        quoted = password.replace("'", "''")
        self._run(
            "psql",
            *self._local(),
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            f"CREATE ROLE {name} LOGIN CREATEDB PASSWORD '{quoted}'",
        )

    def halt(self) -> None:
        """Stop the server at once, as a crash or an outage would, keeping its data (`resume` brings it back)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)

    def resume(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server(bin_dir: Path) -> PostgresServer:
    """Start a fresh server; the caller must `stop()` it (also when a test fails)."""
    root = Path(tempfile.mkdtemp(prefix="effnet-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bin_dir=bin_dir, root=root, port=0, password=f"pw-{secrets.token_hex(12)}", run_as=run_as)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


# -- effnet commands as processes -------------------------------------------------------------------


@dataclass
class Command:
    """An `effnet` command running in its own process, its output in files (no pipe can fill up)."""

    process: subprocess.Popen
    out: Path
    err: Path
    ended: datetime | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def worker(self) -> str:
        """How the command's (single) worker names itself on its trials."""
        return f"{socket.gethostname()}:{self.pid}"

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.ended is None:
            self.ended = datetime.now()
        return code

    def kill(self) -> None:
        """SIGKILL the command and its workers, if still running."""
        if self.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def wait(self, timeout: float) -> int:
        end = time.time() + timeout
        while self.poll() is None:
            if time.time() > end:
                self.kill()
                raise AssertionError(f"effnet did not finish in {timeout:.0f} s; stderr: {self.stderr[-2000:]}")
            time.sleep(0.1)
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def wait_all(commands: list[Command], timeout: float) -> None:
    """Wait for every command, polling all of them together so each `ended` is its own exit time (one after
    another, a command that ended first would be stamped when its turn came); each must exit with 0."""
    end = time.time() + timeout
    while any(c.poll() is None for c in commands) and time.time() < end:
        time.sleep(0.1)
    for command in commands:
        if command.poll() is None:
            command.kill()
            raise AssertionError(f"effnet did not finish in {timeout:.0f} s; stderr: {command.stderr[-2000:]}")
        assert command.process.returncode == 0, command.stderr[-3000:]


def start_effnet(args: list[str], logs: Path, name: str, env: dict[str, str] | None = None) -> Command:
    """Start `effnet ARGS` (python -m effnet.cli, so the pid is the command's own) in a process group of its
    own with its workers: a Ctrl-C is sent to the group, and a test's clean-up kills the whole group."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "effnet.cli", *map(str, args)],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Command(process, out, err)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy (returned) or fail after `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {getattr(predicate, '__name__', predicate)}")


def files_holding(secret: str, *folders: Path) -> list[Path]:
    """Every file under the folders whose bytes contain `secret`."""
    needle = secret.encode()
    return [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file() and needle in p.read_bytes()]


@contextmanager
def postgres_study(url: str) -> Iterator[Callable[[], list[FrozenTrial]]]:
    """A reader of the study's trials, straight through Optuna and psycopg2; empty until the study exists."""
    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg2://"))

    def trials() -> list[FrozenTrial]:
        try:
            return optuna.load_study(study_name="search", storage=storage).get_trials()
        except KeyError:
            return []

    try:
        yield trials
    finally:
        storage.engine.dispose()
