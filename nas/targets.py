"""Which files effnet may replace: the rule every writer follows (`effnet.nas.files` calls it for each file).

effnet replaces only regular files of its own. `check_target` (called by `effnet.nas.files.atomic_write`
for every file, and by a command up front for an output path the user names) refuses a target that is a
symbolic link (effnet never writes through one), a directory, a device, pipe or socket, a read-only file,
or a file in a run directory that was there before effnet used it. `check_output_file` adds the rules for
`--out`: it must not be any input of the same command, an existing file is replaced only when the user says
so, and a file of a run directory never.

Which files of a run directory were there before effnet is the business of the run directory's claim
(`effnet.nas.outputs`, above the file writer); this module holds the registry of claimed directories and
reads their manifests, so that the rule needs nothing from above it.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from effnet.nas.errors import InputError

MANIFEST_NAME = ".effnet-run.yaml"
LOCK_NAME = ".effnet.lock"
MAX_RECORD_BYTES = 2 * 2**20


@dataclass
class Claim:
    """A run directory this process holds: its lock file's descriptor, the owning command, the names
    that were there before effnet (written only with force, never replaced), and how many nested
    `run_directory` blocks hold it."""

    lock_fd: int
    command: str
    foreign: frozenset[str]
    depth: int = 1
    made: bool = False
    """Whether the claim created the directory (a refused command then leaves none behind)."""


claims: dict[Path, Claim] = {}
"""The run directories this process holds, by resolved path (filled by `effnet.nas.outputs.claim_run_dir`)."""


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
            raise InputError(
                f"{target} is a symbolic link; effnet never writes through a link: give the path of "
                "the file itself or a new one"
            )
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{target} is a directory; give the path of a file to write")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"{target} is not a regular file (a device, a pipe or a socket); effnet writes only "
                "regular files: give another path"
            )
        if not info.st_mode & stat.S_IWUSR:
            raise InputError(
                f"{target} is read-only; effnet does not replace it: give another path, or make it "
                "writable if it may go"
            )
    claim = claims.get(resolved(target.parent))
    if claim is not None and target.name in claim.foreign:
        raise InputError(
            f"{target} was in the run directory before effnet used it; effnet never replaces or "
            "deletes such a file: move it away or choose another run directory"
        )
    return target


def check_output_file(
    path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = (), replace: bool = False
) -> Path:
    """An output file a user names (`--out`): `check_target`'s rules, not one of the command's `inputs`, and in
    a directory that exists or can be created and is writable; checked before any work is done. An existing
    file is replaced only with `replace`, and never in an effnet run directory (a training's checkpoints, its
    manifest: the run's files, whoever names them)."""
    target = check_target(path)
    if os.path.lexists(target):
        for source in inputs:
            if source is not None and Path(source).exists() and os.path.samefile(target, source):
                raise InputError(f"{target} is also this command's input ({source}); write to another file")
        if is_run_file(target):
            raise InputError(
                f"{target} belongs to the effnet run directory {target.parent}, and effnet does not replace a run's "
                "files; give a new file name"
            )
        if not replace:
            raise InputError(f"{target} exists; give a new file name, or pass --force to replace it")
    folder = existing_ancestor(target.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: the directory {folder} is not writable; give another path")
    return target


def is_run_file(path: Path) -> bool:
    """Whether `path` is one of an effnet run directory's own files: its manifest or lock, a file there before
    effnet, or a name its command writes (the manifest lists them; a manifest from before it did makes every file
    the run's)."""
    manifest = path.parent / MANIFEST_NAME
    if not os.path.lexists(manifest):
        return False
    record = read_small_yaml(manifest)
    if path.name in (MANIFEST_NAME, LOCK_NAME) or not isinstance(record, dict):
        return True
    writes, foreign = record.get("writes"), record.get("foreign")
    if not isinstance(writes, list) or path.name in (foreign if isinstance(foreign, list) else ()):
        return True
    return any(isinstance(pattern, str) and fnmatch.fnmatchcase(path.name, pattern) for pattern in writes)


def replaceable(path: str | os.PathLike[str]) -> bool:
    """Whether a file may go to `path` outside a command's hold on its run directory (a crash log, written
    after the hold ended): a new name, or one in a directory effnet owns that was not there before effnet."""
    target = Path(path)
    if not os.path.lexists(target):
        return True
    try:
        manifest = read_manifest(target.parent / MANIFEST_NAME)
    except InputError:
        return False
    return manifest is not None and target.name not in manifest[1]


def resolved(folder: Path) -> Path:
    return Path(os.path.realpath(folder.expanduser()))


def existing_ancestor(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def read_small_yaml(path: Path) -> object:
    """A small YAML file effnet wrote, or None where there is none or it is not one."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            return None
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def read_manifest(path: Path) -> tuple[str, frozenset[str]] | None:
    if not os.path.lexists(path):
        return None
    data = read_small_yaml(path)
    if not (
        isinstance(data, dict)
        and isinstance(data.get("command"), str)
        and isinstance(data.get("foreign"), list)
        and all(isinstance(n, str) for n in data["foreign"])
    ):
        raise InputError(f"{path} is not effnet's run-directory manifest; choose another run directory")
    return data["command"], frozenset(data["foreign"])
