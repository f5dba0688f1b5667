"""Reading YAML safely, and the one writer of every file effnet leaves behind.

Every file (specs, YAML and CSV reports, plots, checkpoints) is written by `atomic_write`: a
temporary file in the target's directory, flushed to disk, then renamed over the target, so a crash
never leaves a half-written file; each gets the usual permissions (0666 less the umask).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

import yaml

from effnet.nas.errors import InputError


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """yaml's SafeLoader (no arbitrary objects), refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are refused by SafeLoader itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Safe YAML loading (SafeLoader, duplicate keys refused) with errors as one line naming file and line."""
    try:
        return yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise InputError(f"{source}:{line} YAML syntax error: {err.problem or err.context}") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply to read; flatten the document") from None
    except yaml.YAMLError as err:
        raise InputError(f"{source}: YAML syntax error: {err}") from None


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such {what}; check the path")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a YAML {what}")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{p}: cannot read the {what}: {err}") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write a file so a crash never leaves it half-written: a temporary file, fsync, rename.

    `write` fills the open binary temporary file; the target appears only once it is complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def dump_yaml(data: Any, path: str | os.PathLike[str]) -> Path:
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=200))


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
    """Create the directory if needed; refuse one that cannot be written or has under 64 MiB free."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise InputError(f"directory {folder} is not writable ({err.strerror}); choose another run directory") from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise InputError(f"only {free // 2**20} MiB free under {folder}; free some space or choose another "
                         "run directory")
    return folder
