"""The one writer of every file effnet leaves behind (reading users' files is `effnet.nas.inputs`).

Every file (specs, YAML and CSV reports, plots, checkpoints) is written by `atomic_write`: a
temporary file in the target's directory, flushed to disk, then renamed over the target, so a crash
never leaves a half-written file; each gets the usual permissions (0666 less the umask). The temporary
file is removed on any error and on a stop signal (the CLI turns SIGTERM into an exception, so this
cleanup runs), and only targets `effnet.nas.targets.check_target` allows are replaced. A write the
system refuses (a full disk, a read-only directory) is an `InputError` naming the file and the problem.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from effnet.nas.errors import InputError
from effnet.nas.inputs import EXPONENT_FLOAT, FLOAT_TAG
from effnet.nas.targets import check_target, replaceable


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so a crash never leaves it half-written: a temporary file, fsync, rename.

    `write` fills the open binary temporary file; the target appears only once it is complete. The
    temporary file never outlives the call, whatever stops it.
    """
    target = check_target(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as err:
        raise write_failure(target, err) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target


def write_failure(target: Path, err: OSError) -> InputError:
    """A write the system refused, as one line naming the file, the problem and the fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space there or write elsewhere"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the directory writable or write elsewhere"
    else:
        fix = "write elsewhere"
    return InputError(f"cannot write {target}: {err.strerror or err}; {fix}")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


class _Dumper(yaml.SafeDumper):
    """SafeDumper quoting every string effnet's reader would take for a number (`1e3`), so what is written
    reads back the same."""


_Dumper.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789"))


def yaml_text(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=200)


def dump_yaml(data: Any, path: str | os.PathLike[str]) -> Path:
    return atomic_write_text(path, yaml_text(data))


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """A CSV file with a header row; each row a mapping (keys outside `columns` are ignored)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """A matplotlib `Figure` as a PNG file."""
    return atomic_write(path, lambda fh: figure.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))


MIN_FREE_BYTES = 64 * 2**20


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create the directory if needed; refuse one that cannot be written or has under 64 MiB free. The
    probe is a temporary file of effnet's own name, removed at once."""
    folder = Path(path)
    if os.path.lexists(folder) and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a directory; choose a run directory (a new or existing folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".effnet-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"directory {folder} is not writable ({err.strerror}); choose another run directory") from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise InputError(
            f"only {free // 2**20} MiB free under {folder}; free some space or choose another run directory"
        )
    return folder


def write_error_log(path: str | os.PathLike[str] | None, text: str) -> Path:
    """An unexpected error's traceback: at `path` (in the run directory), or where that cannot be written
    (or is not known yet), in a file of this process's own in the temporary directory, never one that
    every run shares; nor over a file effnet did not write. Returns where it went."""
    if path is not None and replaceable(path):
        try:
            return atomic_write_text(path, text)
        except InputError:  # not writable there (or not effnet's to replace): the temporary directory
            pass
    fd, name = tempfile.mkstemp(prefix="effnet-error-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(name)


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file `path` (made with its folder if missing) while the block runs, waiting for any other
    process that holds it: concurrent builders of one cache (`what`, for the message) wait for the first. A folder
    that cannot hold it (a file, read-only) is an `InputError` naming the fix."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as err:
        raise InputError(
            f"the {what} in {path.parent} cannot be used ({err.strerror or err}: "
            f"{err.filename or path}); choose a writable directory with --cache-dir"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
