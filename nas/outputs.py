"""Where effnet may write: the one output policy every writer follows.

effnet replaces only regular files of its own. `check_target` (called by `effnet.nas.files.atomic_write`
for every file, and by a command up front for an output path the user names) refuses a target that is a
symbolic link (effnet never writes through one), a directory, a device, pipe or socket, a read-only file,
or a file in a run directory that was there before effnet used it. `check_output_file` adds the rule for
`--out`: it must not be any input of the same command.

A run directory is claimed for a command's life (`claim_run_dir`, released when the command's function
decorated with `holding_run_dirs` returns): it must not be `/` or the home directory itself; it is
created if needed and its writability probed with a temporary file of effnet's own; an exclusive lock
(`fcntl.flock` on `.effnet.lock`, which holds the owner's PID) refuses a second command into it while
the first runs; and `.effnet-run.yaml` records which command owns it. A directory that another command
owns is refused (grid-scale into a search's directory, say); one the same command owns is resumed as
before. A directory with files effnet did not write is refused unless `force`: then effnet writes
beside them, and the manifest lists them so that no writer ever replaces or deletes one. A directory
without a manifest whose `run.yaml` names the same command (written before manifests existed) is
taken as that command's own.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from effnet.nas.errors import InputError

MANIFEST_NAME = ".effnet-run.yaml"
LOCK_NAME = ".effnet.lock"
RUN_RECORD_NAME = "run.yaml"
OWN_NAMES = frozenset({MANIFEST_NAME, LOCK_NAME})
MAX_RECORD_BYTES = 2 * 2**20
SUGGESTED_RUN_DIRS = {"search": "runs/search", "grid-scale": "runs/grid", "export-family": "runs/family",
                      "proxy-check": "runs/proxy-check", "train": "runs/train-NAME"}
"""A fresh run directory to suggest to a command refused another command's directory (its default)."""


@dataclass
class _Claim:
    """A run directory this process holds: its lock file's descriptor, the owning command, the names
    that were there before effnet (written only with force, never replaced), and how many nested
    `run_directory` blocks hold it."""

    lock_fd: int
    command: str
    foreign: frozenset[str]
    depth: int = 1


_claims: dict[Path, _Claim] = {}


def check_target(path: str | os.PathLike[str]) -> Path:
    """Refuse to replace what is not effnet's to replace (see the module notes); returns the path."""
    target = Path(path)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise InputError(f"cannot write {target}: {err.strerror}; choose another path") from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise InputError(f"{target} is a symbolic link; effnet never writes through a link: give the path of "
                             "the file itself or a new one")
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{target} is a directory; give the path of a file to write")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{target} is not a regular file (a device, a pipe or a socket); effnet writes only "
                             "regular files: give another path")
        if not info.st_mode & stat.S_IWUSR:
            raise InputError(f"{target} is read-only; effnet does not replace it: give another path, or make it "
                             "writable if it may go")
    claim = _claims.get(_resolved(target.parent))
    if claim is not None and target.name in claim.foreign:
        raise InputError(f"{target} was in the run directory before effnet used it; effnet never replaces or "
                         "deletes such a file: move it away or choose another run directory")
    return target


def check_output_file(path: str | os.PathLike[str],
                      inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """An output file a user names (`--out`): `check_target`'s rules, not one of the command's `inputs`,
    and in a directory that exists or can be created and is writable; checked before any work is done."""
    target = check_target(path)
    if target.exists():
        for source in inputs:
            if source is not None and Path(source).exists() and os.path.samefile(target, source):
                raise InputError(f"{target} is also this command's input ({source}); write to another file")
    folder = _existing_ancestor(target.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: the directory {folder} is not writable; give another path")
    return target


def replaceable(path: str | os.PathLike[str]) -> bool:
    """Whether a file may go to `path` outside a command's hold on its run directory (a crash log, written
    after the hold ended): a new name, or one in a directory effnet owns that was not there before effnet."""
    target = Path(path)
    if not os.path.lexists(target):
        return True
    try:
        manifest = _read_manifest(target.parent / MANIFEST_NAME)
    except InputError:
        return False
    return manifest is not None and target.name not in manifest[1]


@contextmanager
def holding_run_dirs() -> Iterator[None]:
    """Release, when the block ends, every run directory claimed (`claim_run_dir`) inside it: a command's
    checks claim its directory where they come to it, and the command holds it until it returns."""
    before = {key: claim.depth for key, claim in _claims.items()}
    try:
        yield
    finally:
        for key, claim in list(_claims.items()):
            for _ in range(claim.depth - before.get(key, 0)):
                release_run_dir(key)


def claim_run_dir(path: str | os.PathLike[str], command: str, force: bool = False, own: Iterable[str] = ()) -> Path:
    """Claim a run directory for `command` (see the module notes) until `release_run_dir` of the returned key;
    the same process may claim one directory again for the same command. `own` names files in it the caller
    has read as effnet's own (a training checkpoint it resumes), which are not foreign."""
    from effnet.nas.files import ensure_writable_dir

    folder = Path(path).expanduser()
    key = _resolved(folder)
    _refuse_special(folder, key)
    held = _claims.get(key)
    if held is not None:
        if held.command != command:
            raise _taken_by(folder, held.command, command)
        held.depth += 1
        return key
    ensure_writable_dir(folder)
    fd, created = _lock(folder)
    try:
        foreign = _ownership(folder, command, force, frozenset(own))
    except BaseException:
        if created:  # refused: leave the directory as it was
            (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
        raise
    _claims[key] = _Claim(fd, command, foreign)
    return key


def release_run_dir(key: Path) -> None:
    held = _claims.get(key)
    if held is None:
        return
    held.depth -= 1
    if held.depth == 0:
        del _claims[key]
        os.close(held.lock_fd)  # closing the only descriptor releases the flock


def _resolved(folder: Path) -> Path:
    return Path(os.path.realpath(folder.expanduser()))


def _existing_ancestor(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _refuse_special(folder: Path, key: Path) -> None:
    if key == Path(key.anchor):
        raise InputError(f"run directory {folder} is the root directory; give the run its own directory, "
                         "e.g. --run-dir runs/NAME")
    if key == _resolved(Path.home()):
        raise InputError(f"run directory {folder} is the home directory; give the run its own directory, "
                         "e.g. --run-dir runs/NAME")


def _lock(folder: Path) -> tuple[int, bool]:
    """Take the run directory's lock (its file holds the PID of the holder), or refuse naming the holder.
    Returns the lock file's descriptor and whether this call created the file."""
    from effnet.nas.files import current_umask

    lock = folder / LOCK_NAME
    flags, mode = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666 & ~current_umask()
    try:
        try:
            fd, created = os.open(lock, flags | os.O_CREAT | os.O_EXCL, mode), True
        except FileExistsError:
            fd, created = os.open(lock, flags), False
    except OSError as err:
        raise InputError(f"cannot open the run directory's lock {lock}: {err.strerror}; "
                         "choose another run directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise InputError(f"run directory {folder} is in use by another effnet command (PID {holder}); wait for it "
                         "to end or choose another run directory") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd, created


def _ownership(folder: Path, command: str, force: bool, own: frozenset[str]) -> frozenset[str]:
    """Check who owns `folder` (under its lock); record `command` as the owner. Returns the foreign names."""
    from effnet.nas.files import yaml_text

    manifest = _read_manifest(folder / MANIFEST_NAME)
    if manifest is not None:
        owner, foreign = manifest
        if owner != command:
            raise _taken_by(folder, owner, command)
        return foreign
    present = sorted(name for name in os.listdir(folder) if name not in OWN_NAMES | own)
    foreign = frozenset[str]()
    if present:
        recorded = _recorded_command(folder / RUN_RECORD_NAME)
        if recorded is not None and recorded != command:
            raise _taken_by(folder, recorded, command)
        if recorded is None:
            if not force:
                shown = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
                raise InputError(f"run directory {folder} holds files effnet did not write ({shown}); choose a new "
                                 "or empty run directory, or pass --force to write beside them (effnet never "
                                 "replaces or deletes them)")
            foreign = frozenset(present)
    _write_manifest(folder / MANIFEST_NAME, yaml_text({"command": command, "foreign": sorted(foreign)}))
    return foreign


def _write_manifest(path: Path, text: str) -> None:
    from effnet.nas.files import atomic_write_text

    atomic_write_text(path, text)


def _taken_by(folder: Path, owner: str, command: str) -> InputError:
    return InputError(f"run directory {folder} holds the files of effnet {owner}; give {command} a directory of its "
                      f"own, e.g. --run-dir {SUGGESTED_RUN_DIRS.get(command, 'runs/NAME')}")


def _read_small_yaml(path: Path) -> object:
    """A small YAML file effnet wrote, or None where there is none or it is not one."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            return None
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _read_manifest(path: Path) -> tuple[str, frozenset[str]] | None:
    if not os.path.lexists(path):
        return None
    data = _read_small_yaml(path)
    if not (isinstance(data, dict) and isinstance(data.get("command"), str)
            and isinstance(data.get("foreign"), list) and all(isinstance(n, str) for n in data["foreign"])):
        raise InputError(f"{path} is not effnet's run-directory manifest; choose another run directory")
    return data["command"], frozenset(data["foreign"])


def _recorded_command(path: Path) -> str | None:
    """The command a run record (`run.yaml`) names, for run directories written before manifests."""
    data = _read_small_yaml(path)
    command = data.get("command") if isinstance(data, dict) else None
    return command if isinstance(command, str) else None
