"""The journal file storage, safe against a torn last record.

Optuna's journal file is one JSON record per line, appended under a lock file. A crash mid-append (a
full disk, a power loss) or a copy cut short leaves a last line without its end. Optuna reads past
it, but its next append extends that line, and from then on every read of the journal fails
(JSONDecodeError): the study can no longer be opened. `RepairingJournalBackend` is Optuna's backend
with two changes, both made under the journal's lock:

- on open, it repairs the file: every complete record is kept, and what is left of a torn one is cut
  out and saved in a file beside the run (`study.journal.torn-*`), each repair reported in `repairs`.
  A line that a torn record and the next append were fused into (what earlier versions left behind)
  is split, and its complete record kept;
- each append first checks that the file ends a line (another process may have died mid-write since)
  and repairs it if not, and an append that fails (disk full) cuts the file back to where it was, so
  that it leaves no torn line behind itself.

Records are found by how Optuna writes them: compact JSON objects that begin `{"op_code":`. That text
never occurs inside a record (a string holding it is written with escaped quotes), so a line holding
it twice, or not at its start, is damaged.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from effnet.nas.files import atomic_write

RECORD_START = b'{"op_code":'
_RECORD_STARTS = re.compile(re.escape(RECORD_START))


def _is_record(piece: bytes) -> bool:
    try:
        record = json.loads(piece)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return isinstance(record, dict) and "op_code" in record


def split_line(line: bytes) -> tuple[list[bytes], list[bytes]]:
    """A line (without its newline) as the complete records in it and the torn pieces around them."""
    if line.startswith(RECORD_START) and line.find(RECORD_START, 1) == -1 and _is_record(line):
        return [line], []
    cuts = sorted({0, *(m.start() for m in _RECORD_STARTS.finditer(line)), len(line)})
    kept, torn = [], []
    for begin, end in zip(cuts, cuts[1:]):
        piece = line[begin:end]
        (kept if _is_record(piece) else torn).append(piece)
    return kept, torn


def _damaged(line: bytes) -> bool:
    """A quick look: a line that does not hold exactly one record start, at its beginning."""
    return not line.startswith(RECORD_START) or line.find(RECORD_START, 1) != -1


class RepairingJournalBackend(JournalFileBackend):
    """Optuna's `JournalFileBackend`, repairing torn records (see the module notes); fragments go to
    files in `aside_dir`, and `repairs` holds one line for each repair this object made."""

    def __init__(self, path: str | os.PathLike[str], aside_dir: str | os.PathLike[str]):
        if not _looks_like_a_journal(Path(path)):
            raise ValueError("its first line is no journal record")  # a file to leave alone, not to repair
        super().__init__(str(path))
        self._aside_dir = Path(aside_dir)
        self.repairs: list[str] = []
        with get_lock_file(self._lock):
            self._repair_whole()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        with get_lock_file(self._lock):
            self._repair_tail()
            size = os.path.getsize(self._file_path)
            try:
                with open(self._file_path, "ab") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            except BaseException:
                with suppress(OSError):
                    os.truncate(self._file_path, size)
                raise

    # -- repairs, under the lock --------------------------------------------------------------------

    def _repair_whole(self) -> None:
        """Split damaged lines (rewriting the file, which is rare) and repair the tail."""
        with open(self._file_path, "rb") as fh:
            damaged = any(line.endswith(b"\n") and _damaged(line[:-1]) for line in fh)
        if damaged:
            torn: list[bytes] = []

            def rewrite(out: BinaryIO) -> None:
                with open(self._file_path, "rb") as fh:
                    for line in fh:
                        if not line.endswith(b"\n"):
                            out.write(line)  # the tail: repaired next
                            continue
                        kept, pieces = split_line(line[:-1])
                        out.writelines(record + b"\n" for record in kept)
                        torn.extend(pieces)

            atomic_write(self._file_path, rewrite)
            self._report(torn, "records fused with a torn one")
        self._repair_tail()

    def _repair_tail(self) -> None:
        """Make the file end a line: keep the complete records of a last line without an end, set the rest
        aside."""
        with open(self._file_path, "rb+") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            start = _last_line_start(fh, end)
            fh.seek(start)
            kept, torn = split_line(fh.read(end - start))
            fh.truncate(start)
            fh.seek(start)
            fh.writelines(record + b"\n" for record in kept)
            fh.flush()
            os.fsync(fh.fileno())
        self._report(torn, "a torn last record")

    def _report(self, torn: list[bytes], what: str) -> None:
        if not torn:
            return
        self._aside_dir.mkdir(parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(prefix=f"{Path(self._file_path).name}.torn-", dir=self._aside_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\n".join(torn) + b"\n")
        size = sum(len(piece) for piece in torn)
        self.repairs.append(f"the journal {self._file_path} held {what} ({size} bytes, from a write cut short); "
                            f"every complete record is kept and the fragment moved to {aside}")


def _looks_like_a_journal(path: Path) -> bool:
    """Missing, empty, or beginning with a record (or the first bytes of one)."""
    if not path.exists():
        return True
    with path.open("rb") as fh:
        head = fh.read(len(RECORD_START))
    return head == RECORD_START[:len(head)]


def _last_line_start(fh: BinaryIO, end: int, chunk: int = 65536) -> int:
    """The offset just past the last newline before `end` (0 if there is none)."""
    position = end
    while position > 0:
        step = min(chunk, position)
        position -= step
        fh.seek(position)
        found = fh.read(step).rfind(b"\n")
        if found != -1:
            return position + found + 1
    return 0
