"""The journal file after a write cut short: repaired on open, never extended by the next append, resumable.

Every check reads the journal back with Optuna's own backend, which knows nothing of the repair: a
journal it cannot read is a study nobody can open.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState
from test_faults import DiskFull
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.errors import InputError
from effnet.nas.study import journal
from effnet.nas.study.storage import open_storage

from postgres import TINY_SEARCH

runner = CliRunner()


def optuna_reads(path: Path, name: str = "s") -> list[tuple[int, TrialState, float | None]]:
    """The study's trials as plain Optuna reads the file: (number, state, value)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    return [(t.number, t.state, t.value) for t in optuna.load_study(study_name=name, storage=storage).get_trials()]


def add_trials(study: optuna.Study, count: int) -> None:
    for _ in range(count):
        trial = study.ask()
        study.tell(trial, trial.number * 0.5)


def open_study(path: Path, notes: list[str] | None = None) -> optuna.Study:
    storage = open_storage(f"journal:{path}", path.parent / "run", notes)
    return optuna.create_study(storage=storage, study_name="s", direction="maximize", load_if_exists=True)


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory) -> tuple[bytes, bytes]:
    """A journal of three finished trials, split before its last record (the third trial's result)."""
    path = tmp_path_factory.mktemp("journal") / "study.journal"
    add_trials(open_study(path), 3)
    data = path.read_bytes()
    start = data.rindex(b"\n", 0, len(data) - 1) + 1
    assert json.loads(data[start:])["op_code"] == 6  # SET_TRIAL_STATE_VALUES: the last trial finishing
    return data[:start], data[start:]


def test_a_torn_last_record_is_repaired_at_every_byte_offset(three_trials, tmp_path):
    before, last = three_trials
    path = tmp_path / "study.journal"
    path.write_bytes(before)
    kept = optuna_reads(path)  # the trials every repair must keep: the first two finished, the third running
    assert [state for _, state, _ in kept] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    whole = tmp_path / "whole.journal"
    whole.write_bytes(before + last)
    finished = optuna_reads(whole)
    for cut in range(1, len(last)):
        run_dir = tmp_path / f"run{cut}"
        path.write_bytes(before + last[:cut])
        notes: list[str] = []
        storage = open_storage(f"journal:{path}", run_dir, notes)
        whole_record = cut == len(last) - 1  # everything but the newline: a complete record, kept
        assert optuna_reads(path) == (finished if whole_record else kept), cut
        if whole_record:
            assert notes == [] and not run_dir.exists()
        else:
            [note] = notes
            [aside] = run_dir.iterdir()
            assert aside.read_bytes() == last[:cut] + b"\n" and str(aside) in note and f"({cut} bytes" in note
        # the study resumes: a new trial is recorded, and Optuna still reads every trial
        study = optuna.load_study(study_name="s", storage=storage)
        add_trials(study, 1)
        assert [n for n, _, _ in optuna_reads(path)] == [0, 1, 2, 3], cut


def test_a_line_fused_by_an_older_version_keeps_the_later_record(three_trials, tmp_path):
    """Before the repair, the next append went onto the torn line: that line holds a torn record and a whole one."""
    before, last = three_trials
    path = tmp_path / "study.journal"
    fused_record = last.replace(b'"state":1', b'"state":2')  # the third trial pruned, written after the tear
    later = json.dumps(
        {
            "op_code": JournalOperation.SET_STUDY_USER_ATTR,
            "worker_id": "w",
            "study_id": 0,
            "user_attr": {"later": True},
        },
        separators=(",", ":"),
    ).encode()
    assert fused_record != last
    path.write_bytes(before + last[:40] + fused_record + later + b"\n")
    with pytest.raises(json.JSONDecodeError):
        optuna_reads(path)  # what every later run met: the study could not be opened
    notes: list[str] = []
    open_storage(f"journal:{path}", tmp_path / "run", notes)
    assert optuna_reads(path)[2][1] == TrialState.PRUNED
    assert optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).user_attrs == {
        "later": True
    }
    assert len(notes) == 1 and "records fused with a torn one (40 bytes" in notes[0]


def test_an_append_after_another_process_died_mid_write_does_not_extend_its_line(three_trials, tmp_path):
    before, last = three_trials
    path = tmp_path / "study.journal"
    path.write_bytes(before)
    study = open_study(path)
    with path.open("ab") as other:  # another worker's write, cut short by its death
        other.write(last[:25])
    study.set_user_attr("after", True)
    assert optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).user_attrs == {
        "after": True
    }
    assert [p.read_bytes() for p in (tmp_path / "run").iterdir()] == [last[:25] + b"\n"]


def test_an_append_that_fails_midway_leaves_the_file_as_it_was(three_trials, tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    path.write_bytes(three_trials[0])
    study = open_study(path)
    before = path.read_bytes()
    monkeypatch.setattr(journal, "open", lambda file, mode="r": DiskFull(Path(file).open(mode)), raising=False)
    with pytest.raises(OSError, match="No space left"):
        study.set_user_attr("lost", True)
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_a_search_resumes_a_torn_journal_and_says_so(tmp_path, one_torch_thread):
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--run-dir", str(run_dir), "--json"]
    first = runner.invoke(app, [*args, "--trials", "2"])
    assert first.exit_code == 0, first.output
    path = run_dir / "study.journal"
    data = path.read_bytes()
    start = data.rindex(b"\n", 0, len(data) - 1) + 1
    path.write_bytes(data[: start + (len(data) - start) // 2])  # the last record cut in half
    kept = [(n, s) for n, s, _ in optuna_reads(path, "search")]
    second = runner.invoke(app, [*args, "--trials", "3"])
    assert second.exit_code == 0, second.output
    [warning] = [line for line in second.stderr.splitlines() if line.startswith("warning:")]
    assert f"the journal {path} held a torn last record" in warning
    assert json.loads(second.stdout)["notes"] == [warning.removeprefix("warning: ")]
    after = {n: s for n, s, _ in optuna_reads(path, "search")}
    assert all(after[n] == s or s == TrialState.RUNNING for n, s in kept), "a complete trial was lost"
    assert [p.name for p in run_dir.glob("study.journal.torn-*")], "the fragment was not kept"


def test_a_file_that_is_no_journal_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nnot a journal\n")
    with pytest.raises(InputError, match="is not an Optuna journal"):
        open_storage(f"journal:{notes}", tmp_path / "run")
    assert notes.read_text() == "my notes\nnot a journal\n" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("victim", ["creation", "result"])
def test_a_damaged_line_in_the_middle_is_set_aside_and_every_other_trial_kept(victim, tmp_path):
    """Optuna numbers trials by their creation records: a lost creation must not shift later records onto
    other trials (trial 2's value on trial 1, and so on)."""
    path = tmp_path / "study.journal"
    add_trials(open_study(path), 4)  # values 0, 0.5, 1.0, 1.5
    lines = path.read_bytes().splitlines(keepends=True)
    creations = [i for i, line in enumerate(lines) if json.loads(line)["op_code"] == JournalOperation.CREATE_TRIAL]
    victim_line = creations[1] if victim == "creation" else creations[1] + 1  # trial 1's creation, or its result
    assert json.loads(lines[victim_line])["op_code"] == (
        JournalOperation.CREATE_TRIAL if victim == "creation" else JournalOperation.SET_TRIAL_STATE_VALUES
    )
    damaged = lines[victim_line][:25] + b"\x00\xff disk error\n"
    path.write_bytes(b"".join(lines[:victim_line]) + damaged + b"".join(lines[victim_line + 1 :]))
    notes: list[str] = []
    study = open_study(path, notes)
    trial_1 = (TrialState.FAIL, None) if victim == "creation" else (TrialState.RUNNING, None)
    assert [(n, s, v) for n, s, v in optuna_reads(path)] == [
        (0, TrialState.COMPLETE, 0.0),
        (1, *trial_1),
        (2, TrialState.COMPLETE, 1.0),
        (3, TrialState.COMPLETE, 1.5),
    ]
    [note] = notes
    [aside] = (tmp_path / "run").glob("study.journal.bad-*")
    assert "held 1 damaged line before its end" in note and str(aside) in note
    assert aside.read_bytes().startswith(damaged)
    if victim == "creation":
        assert "1 of them a trial's creation" in note
        assert study.trials[1].user_attrs["fail_reason"] == journal.LOST_TRIAL_REASON
        assert len(aside.read_bytes().splitlines()) == 2  # the damaged line and trial 1's result
    add_trials(study, 1)  # the study goes on
    assert [n for n, _, _ in optuna_reads(path)] == [0, 1, 2, 3, 4]
