"""Run directories: a command claims its run directory before writing in it, and holds it to the end.

Which single files effnet may replace is `effnet.nas.targets` (below the file writer); this module, above
the writer, decides who owns a directory and records it.

A run directory is claimed for a command's life (`claim_run_dir`, released when the command's function
decorated with `holding_run_dirs` returns): it must not be `/` or the home directory itself; it is
created if needed and its writability probed with a temporary file of effnet's own; an exclusive lock
(`fcntl.flock` on `.effnet.lock`, which holds the owner's PID) refuses a second command into it while
the first runs; and `.effnet-run.yaml` records which command owns it. A directory that another command
owns is refused (grid-scale into a search's directory, say); one the same command owns is resumed as
before. A directory with files effnet did not write is refused unless `force`: then effnet writes
beside them, and the manifest lists them so that no writer ever replaces or deletes one. A directory
without a manifest whose `run.yaml` names the same command (written before manifests existed) is
taken as that command's own. A command that runs a study (search, grid-scale) claims the directory for its
study too: the manifest names the study, and another study of the same command is refused, since its b0.yaml,
trials.csv and run.yaml would replace the first study's.
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write_text, current_umask, ensure_writable_dir, yaml_text
from effnet.nas.targets import LOCK_NAME, MANIFEST_NAME, Claim, claims, read_manifest, read_small_yaml, resolved

RUN_RECORD_NAME = "run.yaml"
OWN_NAMES = frozenset({MANIFEST_NAME, LOCK_NAME})
SUGGESTED_RUN_DIRS = {
    "search": "runs/search",
    "grid-scale": "runs/grid",
    "export-family": "runs/family",
    "proxy-check": "runs/proxy-check",
    "train": "runs/train-NAME",
}
"""A fresh run directory to suggest to a command refused another command's directory (its default)."""


@contextmanager
def holding_run_dirs() -> Iterator[None]:
    """Release, when the block ends, every run directory claimed (`claim_run_dir`) inside it: a command's
    checks claim its directory where they come to it, and the command holds it until it returns."""
    before = {key: claim.depth for key, claim in claims.items()}
    try:
        yield
    except InputError:  # refused after the claim (a storage that cannot be reached, say): no directory left
        for key, claim in claims.items():
            if key not in before and claim.made:
                _remove_if_unused(key)
        raise
    finally:
        for key, claim in list(claims.items()):
            for _ in range(claim.depth - before.get(key, 0)):
                release_run_dir(key)


def claim_run_dir(
    path: str | os.PathLike[str],
    command: str,
    force: bool = False,
    own: Iterable[str] = (),
    study: str | None = None,
    writes: Iterable[str] = (),
) -> Path:
    """Claim a run directory for `command` (see the module notes) until `release_run_dir` of the returned key;
    the same process may claim one directory again for the same command. `own` names files in it the caller
    has read as effnet's own (a training checkpoint it resumes), which are not foreign; `study` the study whose
    outputs the command writes there (a directory holding another study's is refused); `writes` the names (glob
    patterns) of the files it writes, so that with `force` a file of the user's under one of those names is
    refused now, not when the command comes to write it at the end of its work."""
    folder = Path(path).expanduser()
    key = resolved(folder)
    _refuse_special(folder, key)
    held = claims.get(key)
    if held is not None:
        if held.command != command:
            raise _taken_by(folder, held.command, command)
        held.depth += 1
        return key
    made = not os.path.lexists(folder)
    ensure_writable_dir(folder)
    fd, created = _lock(folder)
    try:
        foreign = _ownership(folder, command, force, frozenset(own), study, tuple(writes))
    except BaseException:
        if created:  # refused: leave the directory as it was
            (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
        raise
    claims[key] = Claim(fd, command, foreign, made=made)
    return key


def earlier_outputs(path: str | os.PathLike[str], command: str) -> frozenset[str]:
    """The files an earlier run of `command` recorded in the directory's manifest as its outputs (their literal
    names; patterns left out) and that are there now: what a run writing other names leaves behind, stale. Read
    before `claim_run_dir`, which records this run's names in their place."""
    folder = Path(path).expanduser()
    data = read_small_yaml(folder / MANIFEST_NAME) if (folder / MANIFEST_NAME).is_file() else None
    if not isinstance(data, dict) or data.get("command") != command or not isinstance(data.get("writes"), list):
        return frozenset()
    foreign = set(data.get("foreign") or ())
    return frozenset(
        name
        for name in data["writes"]
        if isinstance(name, str)
        and not any(c in name for c in "*?[")
        and name not in foreign | OWN_NAMES
        and "/" not in name
        and (folder / name).is_file()
    )


def _remove_if_unused(folder: Path) -> None:
    """Remove a run directory this command created and wrote nothing in but its manifest and lock."""
    try:
        if set(os.listdir(folder)) <= OWN_NAMES:
            for name in OWN_NAMES:
                (folder / name).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:  # another process wrote there meanwhile, or it is gone: leave it as it is
        pass


def release_run_dir(key: Path) -> None:
    held = claims.get(key)
    if held is None:
        return
    held.depth -= 1
    if held.depth == 0:
        del claims[key]
        os.close(held.lock_fd)  # closing the only descriptor releases the flock


def _refuse_special(folder: Path, key: Path) -> None:
    if key == Path(key.anchor):
        raise InputError(
            f"run directory {folder} is the root directory; give the run its own directory, e.g. --run-dir runs/NAME"
        )
    if key == resolved(Path.home()):
        raise InputError(
            f"run directory {folder} is the home directory; give the run its own directory, e.g. --run-dir runs/NAME"
        )


def _lock(folder: Path) -> tuple[int, bool]:
    """Take the run directory's lock (its file holds the PID of the holder), or refuse naming the holder.
    Returns the lock file's descriptor and whether this call created the file."""
    lock = folder / LOCK_NAME
    flags, mode = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666 & ~current_umask()
    try:
        try:
            fd, created = os.open(lock, flags | os.O_CREAT | os.O_EXCL, mode), True
        except FileExistsError:
            fd, created = os.open(lock, flags), False
    except OSError as err:
        raise InputError(
            f"cannot open the run directory's lock {lock}: {err.strerror}; choose another run directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise InputError(
            f"run directory {folder} is in use by another effnet command (PID {holder}); wait for it "
            "to end or choose another run directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd, created


def _ownership(
    folder: Path, command: str, force: bool, own: frozenset[str], study: str | None, writes: tuple[str, ...]
) -> frozenset[str]:
    """Check who owns `folder` (under its lock); record `command`, `study` and the names it `writes` as the
    owner's. Returns the foreign names."""
    manifest = read_manifest(folder / MANIFEST_NAME)
    if manifest is not None:
        owner, foreign = manifest
        if owner != command:
            raise _taken_by(folder, owner, command)
        recorded = _recorded_study(folder)
        if study is not None and recorded is not None and recorded != study and _holds_outputs(folder, writes):
            raise _other_study(folder, recorded, study)
        text = _manifest_text(command, foreign, study, writes)
        if read_small_yaml(folder / MANIFEST_NAME) != yaml.safe_load(text):
            _write_manifest(folder / MANIFEST_NAME, text)
        return foreign
    present = sorted(name for name in os.listdir(folder) if name not in OWN_NAMES | own)
    foreign = frozenset[str]()
    if present:
        recorded = _recorded_command(folder / RUN_RECORD_NAME)
        if recorded is not None and recorded != command:
            raise _taken_by(folder, recorded, command)
        recorded_study = _recorded_study(folder) if recorded is not None else None
        if study is not None and recorded_study is not None and recorded_study != study:  # run.yaml: outputs
            raise _other_study(folder, recorded_study, study)
        if recorded is None:
            if not force:
                raise InputError(
                    f"run directory {folder} holds files effnet did not write ({_listed(present)}); choose a new "
                    "or empty run directory, or pass --force to write beside them (effnet never "
                    "replaces or deletes them)"
                )
            foreign = frozenset(present)
            _refuse_clashes(folder, foreign, writes)
    _write_manifest(folder / MANIFEST_NAME, _manifest_text(command, foreign, study, writes))
    return foreign


def _holds_outputs(folder: Path, writes: tuple[str, ...]) -> bool:
    """Whether `folder` holds a file under a name the command writes (a directory a refused run claimed holds
    none, and may go to another study)."""
    return any(
        fnmatch.fnmatchcase(name, pattern) for name in os.listdir(folder) if name not in OWN_NAMES for pattern in writes
    )


def _refuse_clashes(folder: Path, foreign: frozenset[str], writes: tuple[str, ...]) -> None:
    clashing = sorted(name for name in foreign if any(fnmatch.fnmatchcase(name, pattern) for pattern in writes))
    if clashing:
        raise InputError(
            f"run directory {folder} holds {_listed(clashing)}, which effnet did not write and would have to "
            "replace; effnet never replaces or deletes such a file: move it away or choose another run directory"
        )


def _listed(names: list[str]) -> str:
    """The first three names, and how many more."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _manifest_text(command: str, foreign: frozenset[str], study: str | None, writes: tuple[str, ...]) -> str:
    """The manifest: the owner, the foreign names, the study, and the names the owner writes (which an `--out`
    elsewhere may never replace: `effnet.nas.targets.check_output_file`)."""
    record: dict[str, object] = {"command": command, "foreign": sorted(foreign)}
    if study is not None:
        record["study"] = study
    if writes:
        record["writes"] = sorted(writes)
    return yaml_text(record)


def _write_manifest(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _taken_by(folder: Path, owner: str, command: str) -> InputError:
    return InputError(
        f"run directory {folder} holds the files of effnet {owner}; give {command} a directory of its "
        f"own, e.g. --run-dir {SUGGESTED_RUN_DIRS.get(command, 'runs/NAME')}"
    )


def _other_study(folder: Path, recorded: str, study: str) -> InputError:
    return InputError(
        f"run directory {folder} holds the outputs of study {recorded!r}, which study {study!r} would replace; "
        f"give it a directory of its own, e.g. --run-dir runs/{study}, or rerun with --study {recorded}"
    )


def _recorded_study(folder: Path) -> str | None:
    """The study whose outputs `folder` holds: its manifest's, else its run record's (`run.yaml`, written by a
    run from before manifests named the study); None where neither names one."""
    manifest = read_small_yaml(folder / MANIFEST_NAME)
    if isinstance(manifest, dict) and isinstance(manifest.get("study"), str):
        return manifest["study"]
    record = read_small_yaml(folder / RUN_RECORD_NAME)
    result = record.get("result") if isinstance(record, dict) else None
    study = result.get("study") if isinstance(result, dict) else None
    return study if isinstance(study, str) else None


def _recorded_command(path: Path) -> str | None:
    """The command a run record (`run.yaml`) names, for run directories written before manifests."""
    data = read_small_yaml(path)
    command = data.get("command") if isinstance(data, dict) else None
    return command if isinstance(command, str) else None
