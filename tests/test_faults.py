"""Faults: a worker killed mid-trial, Ctrl-C, a write cut short, a run directory that cannot hold the run."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from refusals import refusal_stdout_is_right
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.errors import InputError
from effnet.nas.files import dump_yaml
from effnet.nas.net.spec_file import dump_spec, load_spec
from effnet.nas.record import write_run_record
from effnet.nas.search.plots import plot_history
from effnet.nas.search.run_dir import write_trials_csv
from effnet.scaling.family import compound_family
from effnet.scaling.official import PAPER_COEFFICIENTS
from effnet.scaling.plots import plot_family
from effnet.scaling.presets import reference_b0

from postgres import FAST_HEARTBEATS, TINY_SEARCH, postgres_study, wait_for

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
runner = CliRunner()


def in_band(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("in_band") is True


def trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if in_band(t) and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def completed(trials: list[FrozenTrial]) -> dict[int, float]:
    return {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def journal_trials(run_dir: Path) -> list[FrozenTrial]:
    path = run_dir / "study.journal"
    if not path.exists():
        return []
    storage = JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name="search", storage=storage).get_trials()
    except KeyError:
        return []


# -- SIGKILL ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_by_heartbeat_and_retried(postgres_url, tmp_path, effnet_command):
    budget = 6
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "3", "--storage", postgres_url, "--json"]
    victim = effnet_command(
        [*args, "--trials", budget, "--run-dir", tmp_path / "victim"], "victim", env=FAST_HEARTBEATS
    )
    survivor = effnet_command(
        [*args, "--trials", budget, "--run-dir", tmp_path / "survivor"], "survivor", env=FAST_HEARTBEATS
    )
    with postgres_study(postgres_url) as read_trials:

        def victim_is_training() -> list[FrozenTrial]:
            trials = read_trials()
            if len(trained(trials)) < 2:
                return []
            return [
                t
                for t in trials
                if t.state == TrialState.RUNNING
                and in_band(t)
                and not t.intermediate_values
                and t.user_attrs.get("worker") == victim.worker
            ]  # in its first of three epochs

        wait_for(victim_is_training, 240)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        killed_at = time.time()
        at_kill = read_trials()
        orphans = [t for t in at_kill if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == victim.worker]
        assert len(orphans) == 1, f"the killed worker left {len(orphans)} trials running, not its one"
        killed = orphans[0]

        assert survivor.wait(300) == 0, survivor.stderr[-3000:]

        def retry_of_killed(trials: list[FrozenTrial]) -> FrozenTrial | None:
            return next((t for t in trials if t.system_attrs.get("failed_trial") == killed.number), None)

        retry = retry_of_killed(read_trials())
        if retry is None or retry.state not in FINISHED:
            # The survivor met the budget before it took the trial for dead: the rerun picks it up
            # (once the grace period is over; until then the trial may still belong to a live worker).
            time.sleep(max(0.0, killed_at + int(FAST_HEARTBEATS["EFFNET_HEARTBEAT_GRACE"]) + 1 - time.time()))
            budget_now = len(trained(read_trials())) + 1
            rerun = effnet_command(
                [*args, "--trials", budget_now, "--run-dir", tmp_path / "rerun"], "rerun", env=FAST_HEARTBEATS
            )
            assert rerun.wait(300) == 0, rerun.stderr[-3000:]
        trials = read_trials()

    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == TrialState.FAIL and "error" not in dead.user_attrs  # failed by heartbeat, not counted
    retry = retry_of_killed(trials)
    assert retry is not None and retry.params == killed.params
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.user_attrs["worker"] != victim.worker
    assert all(completed(trials).get(n) == v for n, v in completed(at_kill).items()), "a completed trial was lost"
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(trained(trials)) >= budget


# -- SIGINT -----------------------------------------------------------------------------------------


def interrupted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.FAIL and "error" not in t.user_attrs]


def training_early(trials: list[FrozenTrial]) -> bool:
    """Two candidates trained, and one in its first of three epochs: far from done when the signal lands."""
    return len(trained(trials)) >= 2 and any(
        t.state == TrialState.RUNNING and in_band(t) and not t.intermediate_values for t in trials
    )


def check_files_for_completed(run_dir: Path, trials: list[FrozenTrial]) -> None:
    """b0.yaml is the best completed trial, trials.csv lists every trial, the plots are there."""
    done = [t for t in trials if in_band(t) and t.state == TrialState.COMPLETE]
    best = max(done, key=lambda t: (t.value, -t.number))
    assert load_spec(run_dir / "b0.yaml").provenance["trial"] == best.number
    with (run_dir / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["number"]) for r in rows) == sorted(t.number for t in trials)
    for name in ("history.png", "accuracy_vs_flops.png", "run.yaml"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, effnet_command):
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "3", "--run-dir", run_dir, "--json"]
    command = effnet_command([*args, "--trials", 200], "search")
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    command.process.send_signal(signal.SIGINT)
    assert command.wait(120) == 130, command.stderr[-3000:]
    assert "Traceback" not in command.stderr and "interrupted: completed trials and files are saved" in command.stderr
    assert command.json()["stop_reason"] == "interrupt"
    assert command.json()["trials_failed"] == 0  # cut short and queued again: no failure of the candidate's

    trials = journal_trials(run_dir)
    [cut] = interrupted_trials(trials)
    assert in_band(cut) and cut.user_attrs["interrupted"] is True
    [queued] = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.user_attrs["retry_of"] == cut.number
    check_files_for_completed(run_dir, trials)

    budget = len(trained(trials)) + 2
    rerun = effnet_command([*args, "--trials", budget], "rerun")
    assert rerun.wait(300) == 0, rerun.stderr[-3000:]
    after = journal_trials(run_dir)
    assert all(completed(after).get(n) == v for n, v in completed(trials).items())
    redone = next(t for t in after if t.number == queued.number)
    assert redone.state in (TrialState.COMPLETE, TrialState.PRUNED) and redone.params == cut.params
    assert len(trained(after)) >= budget
    assert not [t.number for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_cleanly(tmp_path, effnet_command):
    """Ctrl-C in a terminal reaches the whole process group: the command and both its workers."""
    run_dir = tmp_path / "run"
    command = effnet_command(
        [
            "search",
            *TINY_SEARCH,
            "--proxy-epochs",
            "3",
            "--workers",
            2,
            "--trials",
            200,
            "--run-dir",
            run_dir,
            "--json",
        ],
        "search",
    )
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    os.killpg(command.pid, signal.SIGINT)
    assert command.wait(120) == 130, command.stderr[-3000:]
    assert "Traceback" not in command.stderr and "exited with an error" not in command.stderr

    trials = journal_trials(run_dir)
    workers = {t.user_attrs["worker"] for t in trials if t.state != TrialState.WAITING}
    assert len(workers) == 2 and not any(alive(int(w.rsplit(":", 1)[1])) for w in workers)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    cut = [t for t in interrupted_trials(trials) if in_band(t)]
    assert cut, "a worker in the middle of training should have had its trial cut"
    queued = sorted(t.user_attrs["retry_of"] for t in trials if t.state == TrialState.WAITING)
    assert queued == sorted(t.number for t in cut)
    check_files_for_completed(run_dir, trials)


def children(pid: int) -> list[int]:
    """The processes `pid` started (its workers and multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
def test_sigterm_stops_the_command_and_its_workers_and_writes_the_run_files(tmp_path, effnet_command):
    """SIGTERM (a scheduler, `docker stop`, `kill`) reaches the command alone, not its process group: it
    passes the stop on, and every process is gone soon after, the run directory written."""
    run_dir = tmp_path / "run"
    command = effnet_command(
        [
            "search",
            *TINY_SEARCH,
            "--proxy-epochs",
            "3",
            "--workers",
            2,
            "--trials",
            200,
            "--run-dir",
            run_dir,
            "--json",
        ],
        "search",
    )
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    processes = [command.pid, *children(command.pid)]
    assert len(processes) >= 3, "the command and its two workers"
    command.process.send_signal(signal.SIGTERM)
    signalled = time.time()
    assert command.wait(15) == 143, command.stderr[-3000:]
    wait_for(lambda: not any(alive(pid) for pid in processes), max(0.0, signalled + 15 - time.time()))
    assert "Traceback" not in command.stderr and "interrupted: completed trials and files are saved" in command.stderr
    assert command.json()["stop_reason"] == "interrupt"
    trials = journal_trials(run_dir)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    queued = sorted(t.user_attrs["retry_of"] for t in trials if t.state == TrialState.WAITING)
    assert queued == sorted(t.number for t in interrupted_trials(trials) if in_band(t))  # a trial cut short is queued
    check_files_for_completed(run_dir, trials)


@pytest.mark.slow
def test_workers_die_with_their_parent(tmp_path, effnet_command):
    """kill -9 of the command leaves no worker training on under PID 1; the rerun takes their trials back."""
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "3", "--workers", 2, "--run-dir", run_dir, "--json"]
    command = effnet_command([*args, "--trials", 200], "search")
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    workers = children(command.pid)
    command.process.send_signal(signal.SIGKILL)
    command.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), 15)
    trials = journal_trials(run_dir)
    rerun = effnet_command([*args, "--trials", len(trained(trials)) + 1], "rerun")
    assert rerun.wait(300) == 0, rerun.stderr[-3000:]
    after = journal_trials(run_dir)
    assert all(completed(after).get(n) == v for n, v in completed(trials).items()), "a completed trial was lost"
    assert not [t.number for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_failed_and_queued_before_the_run_ends(tmp_path, effnet_command):
    """--workers 2, one killed: the run went on with the other and ended with the dead worker's trial still
    RUNNING in trials.csv and "0 failed"; it is failed (its worker gone) and queued again before the files."""
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "3", "--workers", 2, "--run-dir", run_dir, "--json"]
    command = effnet_command([*args, "--trials", 6], "search")
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    [victim] = [t for t in journal_trials(run_dir) if t.state == TrialState.RUNNING and in_band(t)][:1]
    pid = int(victim.user_attrs["worker"].rpartition(":")[2])
    assert pid in children(command.pid)
    os.kill(pid, signal.SIGKILL)
    assert command.wait(300) == 0, command.stderr[-3000:]
    after = journal_trials(run_dir)
    dead = next(t for t in after if t.number == victim.number)
    assert dead.state == TrialState.FAIL and "died mid-trial" in dead.user_attrs["fail_reason"]
    assert [t.number for t in after if t.user_attrs.get("retry_of") == victim.number]  # queued (or run) again
    with open(run_dir / "trials.csv", newline="") as fh:
        assert not [r for r in csv.DictReader(fh) if r["state"] == "RUNNING"]


@pytest.mark.slow
def test_a_dead_workers_trial_is_recovered_by_a_run_under_another_host_name(tmp_path, effnet_command, monkeypatch):
    """A run in a new container has a new host name: the dead worker's process cannot be looked up there, and
    its trial is recovered because its heartbeat stopped."""
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "3", "--run-dir", str(run_dir), "--json"]
    victim = effnet_command([*args, "--trials", 200], "victim", env=FAST_HEARTBEATS)
    wait_for(lambda: training_early(journal_trials(run_dir)), 240)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    trials = journal_trials(run_dir)
    [orphan] = [t for t in trials if t.state == TrialState.RUNNING]
    assert orphan.user_attrs["worker"] == victim.worker
    time.sleep(int(FAST_HEARTBEATS["EFFNET_HEARTBEAT_GRACE"]) + 1)
    for name, value in FAST_HEARTBEATS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("socket.gethostname", lambda: "another-host")
    rerun = runner.invoke(app, [*args, "--trials", str(len(trained(trials)) + 1)])
    assert rerun.exit_code == 0, rerun.output
    after = journal_trials(run_dir)
    dead = next(t for t in after if t.number == orphan.number)
    assert dead.state == TrialState.FAIL and "sent no heartbeat" in dead.user_attrs["fail_reason"]
    [retry] = [t for t in after if t.user_attrs.get("retry_of") == orphan.number]
    assert retry.params == orphan.params and retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.user_attrs["worker"].startswith("another-host:")


def test_a_stop_signal_stops_a_training_at_once_but_lets_a_storage_write_finish():
    from effnet.nas import signals

    signals._clear()
    try:
        signals._handle(signal.SIGINT, None)  # between trials: remembered, the trial in progress finishes
        assert signals.stop_requested() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            with signals.training():  # a training does not start after it
                raise AssertionError("trained after Ctrl-C")
        signals._stop.clear()
        signals._received.clear()
        written = []
        with pytest.raises(signals.Interrupted) as stopped:
            with signals.training():
                with pytest.raises(KeyboardInterrupt):
                    signals._handle(signal.SIGTERM, None)  # while training: at once
                signals._stop.clear()  # as if that signal had not come: the next one is a first one again
                with signals.training(active=False):  # a storage write inside the training
                    signals._handle(signal.SIGTERM, None)
                    written.append("whole")
                raise AssertionError("the training went on after the write")
        assert written == ["whole"] and stopped.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signals._handle(signal.SIGINT, None)  # a second signal raises anywhere
    finally:
        signals._clear()


def test_a_stop_while_results_are_written_waits_for_them_and_a_second_stops_at_once():
    from effnet.nas import signals

    before = signal.getsignal(signal.SIGINT)
    written = []
    with signals.stops_deferred() as stopped:
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next line: recorded, not raised
        written.append("spec")
        assert stopped == [signal.SIGINT]
        with pytest.raises(signals.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
    assert written == ["spec"] and signal.getsignal(signal.SIGINT) is before


# -- atomic writes ----------------------------------------------------------------------------------


def study_with(n: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(value=0.1 * i, user_attrs={"in_band": True, "reward": 0.1 * i}))
    return study


WRITERS: dict[str, tuple[str, Callable[[Path, int], object]]] = {
    "spec": ("text", lambda path, v: dump_spec(reference_b0().replace(name=f"version{v}"), path, replace=True)),
    "coefficients": ("text", lambda path, v: dump_yaml({"alpha": 1.2, "beta": 1.1, "gamma": 1.1 + v}, path)),
    "run record": ("text", lambda path, v: write_run_record(path.parent, "search", {"version": v})),
    "trials csv": ("text", lambda path, v: write_trials_csv(study_with(v + 1), path)),
    "search plot": ("png", lambda path, v: plot_history(study_with(v + 2).trials, "reward", path)),
    "family plot": (
        "png",
        lambda path, v: plot_family(
            compound_family(reference_b0(), PAPER_COEFFICIENTS, (1.0 + v,)), path, f"version {v}"
        ),
    ),
}
NAMES = {
    "run record": "run.yaml",
    "trials csv": "trials.csv",
    "search plot": "history.png",
    "family plot": "family.png",
}


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def half_written_png(self, target, *args, **kwargs):
    data = b"\x89PNG\r\n\x1a\n half"
    if hasattr(target, "write"):
        target.write(data)
    else:
        Path(target).write_bytes(data)
    disk_full()


@pytest.mark.parametrize("failure", ["while writing", "at the rename"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_write_cut_short_leaves_the_previous_file_whole(writer, failure, tmp_path, monkeypatch, one_torch_thread):
    kind, write = WRITERS[writer]
    path = tmp_path / NAMES.get(writer, f"{writer.replace(' ', '_')}.yaml")
    write(path, 1)
    before = path.read_bytes()
    write(path, 2)
    assert path.read_bytes() != before, "the two versions must differ for the test to mean anything"
    before = path.read_bytes()
    if failure == "at the rename":
        monkeypatch.setattr(os, "replace", disk_full)
    elif kind == "text":
        monkeypatch.setattr(os, "fsync", disk_full)
    else:
        import matplotlib.figure

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written_png)
    with pytest.raises(InputError, match=f"cannot write {path}: No space left on device; free some space"):
        write(path, 3)  # one line naming the file and the problem, which the CLI shows with exit 2
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temporary file was left behind"


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_file_gets_the_usual_permissions(writer, tmp_path, one_torch_thread):
    """0666 less the umask, like any file a program creates: plots were left at mkstemp's 0600 while the
    YAML beside them was 0644, unreadable to the group that shares a run directory."""
    kind, write = WRITERS[writer]
    path = tmp_path / NAMES.get(writer, f"{writer.replace(' ', '_')}.yaml")
    previous = os.umask(0o022)
    try:
        write(path, 1)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# -- the run directory ------------------------------------------------------------------------------

SEARCH = ["search", *TINY_SEARCH]
GRID = [
    "grid-scale",
    "--proxy",
    "zero-cost",
    "--data",
    "synthetic",
    "--alpha-range",
    "1.2",
    "--beta-range",
    "1.1",
    "--gamma-range",
    "1.15",
    "--tolerance",
    "0.1",
]
FAMILY = ["export-family", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--phi", "1"]


@pytest.mark.parametrize("command", [SEARCH, GRID, FAMILY], ids=["search", "grid-scale", "export-family"])
@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_unwritable_run_directory_is_a_clear_error(command, where, tmp_path, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run_dir = blocker / "run" if where == "under a file" else Path("/proc/effnet-run")
    result = runner.invoke(app, [*command, "--run-dir", str(run_dir)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(run_dir) in lines[0]
    assert "not writable" in lines[0] or "cannot" in lines[0]


@pytest.mark.parametrize("command", [SEARCH, GRID], ids=["search", "grid-scale"])
def test_a_full_disk_is_a_clear_error_before_training(command, tmp_path, monkeypatch, no_training):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(100 * 2**30, 100 * 2**30 - 2**20, 2**20))
    result = runner.invoke(app, [*command, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: only 1 MiB free under ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "study.journal").exists()


def test_bad_heartbeat_settings_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_HEARTBEAT_INTERVAL", "5")
    monkeypatch.setenv("EFFNET_HEARTBEAT_GRACE", "5")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = runner.invoke(app, [*SEARCH, "--storage", url, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "EFFNET_HEARTBEAT_GRACE (5 s) must be longer than EFFNET_HEARTBEAT_INTERVAL (5 s)" in result.output
    monkeypatch.setenv("EFFNET_HEARTBEAT_GRACE", "soon")
    result = runner.invoke(app, [*SEARCH, "--storage", url, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "EFFNET_HEARTBEAT_GRACE='soon' must be a whole number" in result.output


def test_a_retry_queued_after_the_budget_is_met_still_runs(tmp_path, one_torch_thread):
    """A dead worker's trial is found by the next run, maybe after the budget was met by others: its retry
    runs all the same (the study ends with one more trained candidate than --trials), and is never left
    waiting forever."""
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--trials", "2", "--run-dir", str(run_dir), "--json"]
    assert runner.invoke(app, args).exit_code == 0
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.load_study(study_name="search", storage=storage)
    done = next(t for t in study.get_trials() if in_band(t) and t.state == TrialState.COMPLETE)
    study.enqueue_trial(done.params)  # a worker took this copy of it and died
    [taken] = study.get_trials(states=(TrialState.WAITING,))
    assert storage.set_trial_state_values(taken._trial_id, TrialState.RUNNING)
    storage.set_trial_user_attr(taken._trial_id, "worker", f"{socket.gethostname()}:{dead_pid()}")

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stop_reason"] == "budget"
    after = journal_trials(run_dir)
    [retry] = [t for t in after if t.user_attrs.get("retry_of") == taken.number]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED) and retry.params == done.params
    assert not [t.number for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_full_disk_mid_run_is_a_clean_error_and_the_journal_resumes(tmp_path, monkeypatch, one_torch_thread):
    """The disk fills while the search runs: one line and exit 2 (it was Optuna's AssertionError), the journal
    left whole (no torn line for the next append to extend), and the same command resumes once there is room."""
    from effnet.nas.study import journal

    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--run-dir", str(run_dir), "--json"]
    assert runner.invoke(app, [*args, "--trials", "2"]).exit_code == 0
    before = completed(journal_trials(run_dir))
    appends = []
    real_open = open

    def filling(file, mode="r"):
        handle = real_open(file, mode)
        if "a" in mode:
            appends.append(file)
            if len(appends) > 12:  # a dozen records get in, then the disk is full
                return DiskFull(handle)
        return handle

    monkeypatch.setattr(journal, "open", filling, raising=False)
    result = runner.invoke(app, [*args, "--trials", "6"])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    *progress, line = result.stderr.strip().splitlines()  # the --json run's progress lines (stderr), then one error
    refusal_stdout_is_right(result)
    assert all(re.match(r"study 'search' in |\[\d+:\d\d:\d\d\] search \d+/6 ", p) for p in progress), progress
    assert line.startswith(
        f"error: the storage journal file {run_dir / 'study.journal'} failed mid-run (OSError: "
        "[Errno 28] No space left on device); what it recorded is kept"
    )
    assert (run_dir / "study.journal").read_bytes().endswith(b"\n")
    rerun = runner.invoke(app, [*args, "--trials", "4"])
    assert rerun.exit_code == 0, rerun.output
    after = completed(journal_trials(run_dir))
    assert all(after.get(n) == v for n, v in before.items()) and len(after) > len(before)


class DiskFull:
    """An open file whose writes put half their bytes on disk, then fail as a full disk does."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_more_workers_than_the_free_memory_holds_are_refused(tmp_path, monkeypatch, no_training):
    from effnet.nas.study import study_config

    monkeypatch.setattr(study_config, "available_memory", lambda: 3 * study_config.WORKER_MEMORY + 2**20)
    result = runner.invoke(app, [*SEARCH, "--workers", "4", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: --workers 4 need about 1.8 GiB (about 450 MiB each) and 1.3 GiB is free; use at most 3\n"
    )
    result = runner.invoke(app, [*SEARCH, "--workers", "3", "--run-dir", str(tmp_path / "run")])
    assert "a worker started" in repr(result.exception), "three fit: the search should have started them"


@dataclass(frozen=True)
class FailsInItsWorkers:
    """A study job whose spawned workers fail with an unexpected error (the command's own process does not)."""

    kind: str = "test"

    def fingerprint(self) -> dict:
        return {}

    def directions(self) -> list[str]:
        return ["maximize"]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def prepare(self, study: optuna.Study) -> None:
        pass

    def objective(self, study, deadline, threads, device, on_detail):
        raise RuntimeError("a bug in the worker")

    def stop_reason(self, study: optuna.Study) -> str | None:
        return None

    def progress(self, study: optuna.Study):
        from effnet.nas.progress import Progress

        return Progress(done=0, total=None)


@pytest.mark.slow
def test_a_failed_worker_leaves_its_traceback_in_the_run_directory_and_a_note(tmp_path):
    from effnet.nas.study.runner import run_study
    from effnet.nas.study.study_config import StudyConfig

    run = run_study(FailsInItsWorkers(), StudyConfig(run_dir=tmp_path, name="broken", workers=2, device="cpu"))
    assert run.stop_reason == "workers ended" and run.failed_workers == [0, 1]
    for index in (0, 1):
        log = tmp_path / f"worker-{index}-error.log"
        assert "RuntimeError: a bug in the worker" in log.read_text()
        assert f"worker {index} failed; its traceback is in {log}" in run.notes


@pytest.mark.parametrize("trials", [2, 50])
def test_a_search_whose_every_trial_fails_alike_stops_with_that_error(trials, tmp_path, monkeypatch, one_torch_thread):
    """A proxy that fails every candidate the same way (an empty RuntimeError, as a broken supernet gave) stops
    the run after three failed trials with the error as one line and exit 2: no spinning to the time limit, and
    no exit 0 asking for a rerun that would fail alike when the budget is smaller than three."""
    from effnet.nas.proxies.train import TrainProxy

    calls: list[int] = []

    def broken(self, spec, report=None, seed=None):
        calls.append(1)
        raise RuntimeError()

    monkeypatch.setattr(TrainProxy, "score", broken)
    run_dir = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--trials", str(trials), "--run-dir", str(run_dir), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.strip().splitlines() if not line.startswith(("[", "study "))]
    assert errors == [
        f"error: all {min(3, trials)} trials of this run failed the same way and none succeeded: "
        "RuntimeError (no message)"
    ]  # beside --json's progress lines, one error line
    failed = [t for t in journal_trials(run_dir) if t.state == TrialState.FAIL]
    assert len(calls) == len(failed) == min(3, trials)
    assert {t.user_attrs["fail_reason"] for t in failed} == {"RuntimeError (no message)"}


def test_a_search_with_some_trials_failing_goes_on(tmp_path, monkeypatch, one_torch_thread):
    """Failures that differ, or alternate with successes, are a candidate's own: the run goes on to its budget."""
    from effnet.nas.proxies.train import TrainProxy

    scored: list[int] = []

    def every_other(self, spec, report=None, seed=None):
        scored.append(1)
        if len(scored) % 2:
            raise RuntimeError(f"candidate {len(scored)} failed")
        return 0.5

    monkeypatch.setattr(TrainProxy, "score", every_other)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--trials", "6", "--run-dir", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stop_reason"] == "budget" and len(scored) == 6


# -- what is loaded is checked before it is used -------------------------------------------------------


def _damage_cache(how: str, array: Path, record: Path) -> None:
    import numpy as np

    if how == "truncated":
        array.write_bytes(array.read_bytes()[: array.stat().st_size // 2])
    elif how == "re-headed":  # a whole .npy of another shape under the cache's name
        np.save(array, np.zeros((2, 3, 5, 5), np.uint8))
    elif how == "other-dtype":
        data = np.load(array)
        np.save(array, data.astype(np.float32)[:, :, :, :])
    elif how == "record-garbage":
        record.write_bytes(b"\x00{not json")
    elif how == "record-of-others":
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "labels": data["labels"][:-1]}))


@pytest.mark.parametrize("how", ["truncated", "re-headed", "other-dtype", "record-garbage", "record-of-others"])
def test_a_damaged_proxy_cache_is_rebuilt_once_with_a_warning(how, tmp_path):
    import numpy as np

    from effnet.nas.data.sources import proxy_data

    from images import jpeg_folder

    jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    first = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    expected = np.array(first.train.images.get())
    array = first.train.images.path
    _damage_cache(how, array, array.with_suffix(".json"))
    again = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    [note] = again.notes
    assert note.startswith(f"the proxy cache {array} was damaged (") and note.endswith("it was decoded again")
    assert np.array_equal(np.array(again.train.images.get()), expected)
    third = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    assert third.notes == ()  # the rebuilt cache is whole


@pytest.mark.parametrize("where", ["array", "lock", "cache-dir"])
def test_a_proxy_cache_path_taken_by_something_else_is_a_clear_error(where, tmp_path):
    from effnet.nas.data.sources import proxy_data
    from effnet.nas.errors import InputError

    from images import jpeg_folder

    jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    cache_dir = tmp_path / "cache"
    first = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=cache_dir, loader_workers=0)
    array = first.train.images.path
    if where == "array":
        array.unlink()
        array.mkdir()
        expected = f"{array} is a directory where effnet keeps its proxy cache"
    elif where == "lock":
        array.with_suffix(".lock").unlink()
        array.with_suffix(".lock").mkdir()
        expected = "Is a directory"
    else:
        cache_dir = tmp_path / "a-file"
        cache_dir.write_text("not a folder")
        expected = "choose a writable directory with --cache-dir"
    with pytest.raises(InputError, match=re.escape(expected)):
        proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=cache_dir, loader_workers=0)


def test_a_network_too_large_for_the_free_memory_is_refused_by_train_and_export_model(tmp_path, monkeypatch):
    """1 GiB free: the tiny spec at 2,000 px trains on batches of 8 with at least 4.6 GiB (twice 8 images' 77M
    feature map values, float32), and at 4,000 px one image's feature maps alone are 1.1 GiB. Both went ahead
    and died of the allocator's error (exit 1), or would have taken the machine's memory."""
    from effnet.nas.net import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)
    base = yaml.safe_load((Path(__file__).parent / "data" / "tiny_base.yaml").read_text())
    paths = {}
    for size in (2000, 4000):
        paths[size] = tmp_path / f"tiny{size}.yaml"
        paths[size].write_text(yaml.safe_dump({**base, "resolution": size}))
    train = [str(paths[2000]), "--data", "synthetic", "--batch-size", "8", "--run-dir", str(tmp_path / "t")]
    result = runner.invoke(app, ["train", *train])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: tiny: to train the network needs about 4.6 GiB (at least, for batches of")
    assert "use a smaller --batch-size" in result.output
    result = runner.invoke(app, ["export-model", str(paths[4000]), "--out", str(tmp_path / "big.onnx")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: tiny: to export the network needs about 1.1 GiB (weights and feature")
    assert not (tmp_path / "big.onnx").exists()


def test_more_loader_workers_than_the_free_memory_holds_are_refused(tmp_path, monkeypatch, no_training):
    """4 GiB free: a search's worker (450 MiB) and 256 loader workers of 200 MiB need 50.4 GiB, (4096 - 450) // 200
    = 18 fit; a training's 256 need 50.0 GiB, 4096 // 200 = 20 fit."""
    from effnet.nas import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 4 * 2**30)
    result = runner.invoke(app, [*SEARCH, "--loader-workers", "256", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: --loader-workers 256 need about 50.4 GiB (about 200 MiB each) and 4.0 GiB is free; use at most 18\n"
    )
    result = runner.invoke(
        app,
        [
            "train",
            str(Path(__file__).parent / "data" / "tiny_base.yaml"),
            "--data",
            "synthetic",
            "--loader-workers",
            "256",
            "--run-dir",
            str(tmp_path / "train"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: --loader-workers 256 need about 50.0 GiB (about 200 MiB each) and 4.0 GiB is free; use at most 20\n"
    )


@pytest.mark.parametrize("damage", ["nan-model", "sparse-ema", "shape-model"])
def test_a_damaged_training_checkpoint_is_refused_on_resume_naming_the_tensor(damage, tmp_path, one_torch_thread):
    import torch

    spec = str(Path(__file__).parent / "data" / "tiny_base.yaml")
    args = [
        "train",
        spec,
        "--data",
        "synthetic",
        "--resolution",
        "16",
        "--batch-size",
        "32",
        "--precise-bn",
        "0",
        "--run-dir",
        str(tmp_path / "run"),
        "--json",
    ]
    first = runner.invoke(app, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    if damage == "nan-model":
        state["model"]["head.0.weight"][0, 0, 0, 0] = float("nan")
        expected = f"{path} (model weights): tensor 'head.0.weight' holds 1 NaN or infinite value"
    elif damage == "sparse-ema":
        weights = state["ema"]["weights"]
        weights["stem.0.weight"] = weights["stem.0.weight"].to_sparse()
        expected = f"{path} (EMA weights): tensor 'stem.0.weight' is stored as torch.sparse_coo, not dense"
    else:
        state["model"]["classifier.bias"] = torch.zeros(3)
        expected = f"{path} (model weights): tensor 'classifier.bias' has shape [3], the model's [4]"
    torch.save(state, path)
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code == 2, result.output
    # the run's description (what it resumes) may come first; the refusal is one error line, and the last
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert errors == [f"error: {expected}; delete the checkpoint to start over"]
    assert result.stderr.strip().splitlines()[-1] == errors[0]


@pytest.mark.slow
def test_a_raw_pickle_is_one_line_without_torch_warnings(tmp_path):
    """torch warns of the pickle protocol before refusing a plain pickle; only effnet's line may show."""
    corpus = Path(__file__).parent / "bad_inputs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "effnet.cli",
            "export-model",
            str(Path(__file__).parent / "data" / "tiny_base.yaml"),
            "--checkpoint",
            str(corpus / "weights" / "raw_pickle.pkl"),
            "--out",
            str(tmp_path / "model.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {corpus / 'weights' / 'raw_pickle.pkl'}: not a readable weights file (not a file torch.save wrote: "
        "a plain pickle or other bytes); give an effnet checkpoint or a state dict saved with torch.save"
    ]


def test_a_strip_image_is_refused_from_its_header_before_any_resize(tmp_path):
    """A 1 x 1,000,000 PNG (about 1 KB, a megapixel: under the pixel limit) would take 16,000,000 x 16 x 3 bytes
    (768 MB) to resize to a 16 px short side; it is refused before its pixels are decoded."""
    import tracemalloc

    from PIL import Image

    from effnet.nas.data.images import BadImage, decode_image

    path = tmp_path / "strip.png"
    Image.new("L", (1_000_000, 1), 128).save(path)
    Image.new("L", (1_000, 10), 128).save(tmp_path / "wide.png")  # 100:1, the widest accepted
    assert decode_image(tmp_path / "wide.png").size == (1_000, 10)
    tracemalloc.start()
    with pytest.raises(BadImage, match=re.escape(f"{path}: 1000000x1 pixels is a strip more than 100 times")):
        decode_image(path, draft=16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20


def test_symlink_loops_are_named_not_crashed_on(tmp_path):
    """A looping or dangling link among a class's files is skipped and named like any file that does not decode
    (not left out unsaid); a data folder or class folder that loops is one clear error."""
    from effnet.nas.data.folder import index_folder
    from effnet.nas.data.sources import proxy_data
    from effnet.nas.errors import InputError

    from images import jpeg_folder

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    (data / "class0" / "loop.jpg").symlink_to("loop.jpg")
    (data / "class1" / "moved.jpg").symlink_to(tmp_path / "no-longer-here.jpg")
    split = proxy_data(str(data), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    loop, dangling = split.skipped
    assert loop.startswith(f"{data / 'class0' / 'loop.jpg'}: cannot read the image (") and "symbolic" in loop
    assert dangling.startswith(f"{data / 'class1' / 'moved.jpg'}: cannot read the image (No such file")
    assert len(split.train) + len(split.val) == 12

    (tmp_path / "root").symlink_to(tmp_path / "root")
    with pytest.raises(InputError, match="a symbolic link that loops; give the data folder itself"):
        index_folder(tmp_path / "root")
    (data / "class2").symlink_to(data / "class2")
    with pytest.raises(
        InputError,
        match=re.escape(f"{data / 'class2'}: cannot read it (Too many levels of symbolic links); fix or remove it"),
    ):
        index_folder(data)


@pytest.mark.parametrize("unreadable", ["root", "class1"])
def test_a_data_folder_that_cannot_be_listed_is_one_clear_error(unreadable, tmp_path, monkeypatch):
    """What a folder without read permission gives (the tests run as root, who reads everything: scandir is
    made to refuse as the kernel would)."""
    from effnet.nas.data.folder import index_folder
    from effnet.nas.errors import InputError

    from images import jpeg_folder

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=2)
    refused = data if unreadable == "root" else data / "class1"
    scandir = os.scandir

    def guarded(path="."):
        if Path(path) == refused:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)
    with pytest.raises(
        InputError,
        match=re.escape(
            f"{refused}: cannot list the folder (Permission denied); make it readable or give another data folder"
        ),
    ):
        index_folder(data)
