"""The journal file storage, safe against a torn last record.

Optuna's journal file is one JSON record per line, appended under a lock file. A crash mid-append (a
full disk, a power loss) or a copy cut short leaves a last line without its end. Optuna reads past
it, but its next append extends that line, and from then on every read of the journal fails
(JSONDecodeError): the study can no longer be opened. `RepairingJournalBackend` is Optuna's backend
with two changes, both made under the journal's lock:

- on open, it repairs the file: every complete record is kept, and what is left of a torn one is cut
  out and saved in a file beside the run (`study.journal.torn-*`), each repair reported in `repairs`.
  A line that a torn record and the next append were fused into (what earlier versions left behind)
  is split, and its complete record kept. A line in the middle that is no record (a disk error, an edit)
  is set aside the same way (`study.journal.bad-*`). Optuna numbers trials by the order of their
  creation records, so a lost creation would shift every later trial's records onto the wrong trial:
  where a later record names a trial that was never created, the damaged line before it is taken for
  that creation and replaced by a failed trial holding no parameters, and the records of that trial
  are set aside with it (`mend_plan`);
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
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

from effnet.nas.files import atomic_write
from effnet.nas.study.trial_attrs import FAIL_REASON_ATTR

RECORD_START = b'{"op_code":'
_RECORD_STARTS = re.compile(re.escape(RECORD_START))


OP_CODES = frozenset(op.value for op in JournalOperation)
LOST_TRIAL_REASON = "its creation was lost in a damaged journal line; the trial was never scored"


def _parse(piece: bytes) -> dict[str, Any] | None:
    """The record `piece` holds, or None: not JSON, or not an operation Optuna knows."""
    try:
        record = json.loads(piece)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(record, dict) or type(record.get("op_code")) is not int or record["op_code"] not in OP_CODES:
        return None
    return record


def _is_record(piece: bytes) -> bool:
    return _parse(piece) is not None


def split_line(line: bytes) -> tuple[list[bytes], list[bytes]]:
    """A line (without its newline) as the complete records in it and the torn pieces around them."""
    if line.startswith(RECORD_START) and line.find(RECORD_START, 1) == -1 and _is_record(line):
        return [line], []
    cuts = sorted({0, *(m.start() for m in _RECORD_STARTS.finditer(line)), len(line)})
    kept: list[bytes] = []
    torn: list[bytes] = []
    for begin, end in zip(cuts, cuts[1:], strict=False):
        piece = line[begin:end]
        (kept if _is_record(piece) else torn).append(piece)
    return kept, torn


def _damaged(line: bytes) -> bool:
    """A quick look: a line that does not hold exactly one record start, at its beginning."""
    return not line.startswith(RECORD_START) or line.find(RECORD_START, 1) != -1


def _fused(line: bytes) -> bool:
    """A line holding a record start other than at its beginning: records fused with a torn one."""
    return line.find(RECORD_START, 1) != -1 or (not line.startswith(RECORD_START) and RECORD_START in line)


@dataclass
class MendPlan:
    """What a rewrite of a journal with damaged lines does: `lost_creations` maps the number of a damaged line
    to the study whose trial creation it is taken for (replaced by a failed trial), `aside` holds (line, index
    in line) of the records that belong to such a trial."""

    lost_creations: dict[int, int] = field(default_factory=dict)
    aside: set[tuple[int, int]] = field(default_factory=set)


def mend_plan(lines: Iterable[bytes]) -> MendPlan:
    """Which damaged lines were trial creations, and which records belong to those trials: replaying the
    records as Optuna does (a trial's id is the count of creations before it), a record naming a trial not
    yet created shows that as many creations were lost in the damaged lines before it, the earliest first."""
    plan = MendPlan()
    created, study = 0, 0  # trial ids given so far (creations and lost creations), the last creation's study
    pending: list[int] = []  # damaged lines not yet known to have been creations
    lost: set[int] = set()
    for number, line in enumerate(lines):
        if not line.endswith(b"\n"):
            continue  # a torn tail: repaired on its own
        kept, torn = split_line(line[:-1])
        if not kept and torn and not _fused(line[:-1]):
            pending.append(number)
            continue
        for index, piece in enumerate(kept):
            record = json.loads(piece)
            if record["op_code"] == JournalOperation.CREATE_TRIAL:
                created += 1
                study = record.get("study_id", study) if isinstance(record.get("study_id"), int) else study
                continue
            trial = record.get("trial_id")
            if type(trial) is int and created <= trial < created + len(pending):
                for _ in range(trial - created + 1):
                    plan.lost_creations[pending.pop(0)] = study
                    lost.add(created)
                    created += 1
            if trial in lost:
                plan.aside.add((number, index))
    return plan


def lost_trial_record(study: int) -> bytes:
    """A creation record of a failed trial in `study`, holding the trial's place in Optuna's numbering."""
    now = datetime.now(timezone.utc).isoformat()
    record = {
        "op_code": int(JournalOperation.CREATE_TRIAL),
        "worker_id": "effnet-journal-repair",
        "study_id": study,
        "datetime_start": None,
        "datetime_complete": now,
        "state": TrialState.FAIL.value,
        "user_attrs": {FAIL_REASON_ATTR: LOST_TRIAL_REASON},
    }
    return json.dumps(record, separators=(",", ":")).encode()


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
        """Split fused lines and set damaged ones aside (rewriting the file, which is rare), then repair the
        tail."""
        with open(self._file_path, "rb") as fh:
            damaged = any(line.endswith(b"\n") and (_damaged(line[:-1]) or not _is_record(line[:-1])) for line in fh)
        if damaged:
            with open(self._file_path, "rb") as fh:
                plan = mend_plan(fh)
            torn: list[bytes] = []
            bad: list[bytes] = []

            def rewrite(out: BinaryIO) -> None:
                with open(self._file_path, "rb") as fh:
                    for number, line in enumerate(fh):
                        if not line.endswith(b"\n"):
                            out.write(line)  # the tail: repaired next
                            continue
                        kept, pieces = split_line(line[:-1])
                        if _fused(line[:-1]) or kept:
                            torn.extend(pieces)
                        else:
                            bad.extend(pieces)
                            if number in plan.lost_creations:
                                out.write(lost_trial_record(plan.lost_creations[number]) + b"\n")
                        for index, record in enumerate(kept):
                            (bad.append(record) if (number, index) in plan.aside else out.write(record + b"\n"))

            atomic_write(self._file_path, rewrite)
            self._report(torn, "records fused with a torn one")
            lines, lost = len(bad) - len(plan.aside), len(plan.lost_creations)
            self._report(
                bad,
                f"{lines} damaged line{'s' if lines > 1 else ''} before its end"
                + (
                    f", {lost} of them a trial's creation (that trial is now a failed one; its {len(plan.aside)} "
                    "other records are set aside too)"
                    if lost
                    else ""
                ),
                kind="bad",
                cause="a disk error or an edit",
            )
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

    def _report(self, torn: list[bytes], what: str, kind: str = "torn", cause: str = "a write cut short") -> None:
        if not torn:
            return
        self._aside_dir.mkdir(parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(prefix=f"{Path(self._file_path).name}.{kind}-", dir=self._aside_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\n".join(torn) + b"\n")
        size = sum(len(piece) for piece in torn)
        moved = "the fragment" if kind == "torn" else "what was set aside"
        self.repairs.append(
            f"the journal {self._file_path} held {what} ({size} bytes, from {cause}); "
            f"every complete record is kept and {moved} moved to {aside}"
        )


def _looks_like_a_journal(path: Path) -> bool:
    """Missing, empty, or beginning with a record (or the first bytes of one)."""
    if not path.exists():
        return True
    with path.open("rb") as fh:
        head = fh.read(len(RECORD_START))
    return head == RECORD_START[: len(head)]


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
