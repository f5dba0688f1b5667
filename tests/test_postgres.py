"""Many workers on one study in a real PostgreSQL database (tests/postgres.py starts the server).

Every trial is counted once, the best is the same whichever process reports it (given what it could
see), no worker crashes on contention, and the storage password shows up nowhere.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from refusals import refusal_stdout_is_right
from typer.testing import CliRunner

from effnet.cli.app import app

from postgres import TINY_BASE, TINY_SEARCH, Command, files_holding, postgres_study, wait_all, wait_for

pytestmark = pytest.mark.slow  # every test here starts or uses a PostgreSQL server
BUDGET = 6
runner = CliRunner()
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@contextmanager
def study_at(url: str, name: str = "search") -> Iterator[optuna.Study]:
    """The study read straight through Optuna and psycopg2 (not through effnet's storage code)."""
    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        yield optuna.load_study(study_name=name, storage=storage)
    finally:
        storage.engine.dispose()


def in_band(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("in_band") is True


def trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Candidates inside the FLOPs band that were trained: completed, pruned, or failed by their own error."""
    return [
        t
        for t in trials
        if in_band(t)
        and (
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)
        )
    ]


def best_of(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The highest reward among completed in-band trials; the lower number wins a tie."""
    done = [t for t in trials if in_band(t) and t.state == TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number), default=None)


def check_sums(trials: list[FrozenTrial], summary: dict) -> None:
    """A summary's counts add up to every finished trial of the study it read."""
    requeued = {t.user_attrs.get("retry_of") for t in trials}
    cut_short = [t for t in trials if t.number in requeued]  # failed and queued again: no failure of the candidate's
    finished = [t for t in trials if t.state in FINISHED and t not in cut_short]
    assert summary["trials_completed"] == sum(in_band(t) and t.state == TrialState.COMPLETE for t in trials)
    assert summary["trials_pruned"] == sum(in_band(t) and t.state == TrialState.PRUNED for t in trials)
    assert summary["trials_failed"] == sum(t.state == TrialState.FAIL for t in trials if t not in cut_short)
    assert summary["trials_outside_band"] == sum(not in_band(t) and t.state == TrialState.COMPLETE for t in trials)
    assert (
        summary["trials_completed"]
        + summary["trials_pruned"]
        + summary["trials_failed"]
        + summary["trials_outside_band"]
    ) == len(finished)


def check_shared_study(trials: list[FrozenTrial], workers: int) -> None:
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), "a trial number is missing or repeated"
    assert not [t.number for t in trials if t.state not in FINISHED], "a trial was left running or waiting"
    # Each worker checks the budget before it starts a trial and stops once the study holds BUDGET
    # trained trials; when the last one lands, each other worker can be in the middle of one more
    # (decided before the budget was met), which it finishes and records: at most workers-1 extra.
    assert BUDGET <= len(trained(trials)) <= BUDGET + workers - 1
    assert [t.user_attrs["error"] for t in trials if "error" in t.user_attrs] == []  # e.g. a storage error


def check_no_password(password: str, commands: list[Command], *folders: Path) -> None:
    for command in commands:
        assert password not in command.stdout and password not in command.stderr
    assert files_holding(password, *folders) == []


def test_three_search_processes_share_one_study(
    postgres_server, postgres_url, tmp_path, one_torch_thread, effnet_command
):
    """Three `effnet search` commands started at once, as on three machines, each with its own run dir (and
    the same seed: the study's, part of its settings; each worker's sampler differs by its first trial)."""
    commands = [
        effnet_command(
            [
                "search",
                *TINY_SEARCH,
                "--trials",
                BUDGET,
                "--storage",
                postgres_url,
                "--study",
                "search",
                "--run-dir",
                tmp_path / f"machine{k}",
                "--json",
            ],
            f"machine{k}",
        )
        for k in range(3)
    ]
    wait_all(commands, 300)
    assert not [c for c in commands if "Traceback" in c.stderr]
    with study_at(postgres_url) as study:
        trials = study.get_trials()
    check_shared_study(trials, workers=3)
    assert {t.user_attrs["worker"] for t in trials} == {c.worker for c in commands}

    for command in commands:
        # Each command reports the best of the study as it read it once its own worker stopped:
        # after its own last trial, before it exited. Trials other workers finish after that read
        # may beat it, so its best is the best of the trials finished by some moment in between.
        summary = command.json()
        reported = next(t for t in trials if t.number == summary["trial"])
        assert reported.state == TrialState.COMPLETE and in_band(reported)
        assert (summary["reward"], summary["flops"]) == (reported.value, reported.user_attrs["flops"])
        own_last = max(t.datetime_complete for t in trials if t.user_attrs["worker"] == command.worker)
        moments = sorted(
            {own_last, *(t.datetime_complete for t in trials if own_last < t.datetime_complete <= command.ended)}
        )
        seen = [best_of([t for t in trials if t.datetime_complete <= moment]) for moment in moments]
        assert reported.number in {t.number for t in seen if t is not None}
        assert (tmp_path / f"machine{commands.index(command)}" / "b0.yaml").is_file()

    # The same command once more on the finished study trains nothing and reports its best and sums.
    reader = runner.invoke(
        app,
        [
            "search",
            *TINY_SEARCH,
            "--trials",
            str(BUDGET),
            "--storage",
            postgres_url,
            "--run-dir",
            str(tmp_path / "reader"),
            "--json",
        ],
    )
    assert reader.exit_code == 0, reader.output
    summary = json.loads(reader.stdout)
    assert summary["stop_reason"] == "budget"
    with study_at(postgres_url) as study:
        assert [t.number for t in study.get_trials()] == [t.number for t in trials]
    check_sums(trials, summary)
    assert summary["trial"] == best_of(trials).number
    assert postgres_server.password not in reader.output
    check_no_password(postgres_server.password, commands, tmp_path)


def test_one_command_with_three_workers(postgres_server, postgres_url, tmp_path, effnet_command):
    run_dir = tmp_path / "run"
    command = effnet_command(
        [
            "search",
            *TINY_SEARCH,
            "--trials",
            BUDGET,
            "--workers",
            3,
            "--storage",
            postgres_url,
            "--run-dir",
            run_dir,
            "--json",
        ],
        "workers3",
    )
    assert command.wait(300) == 0, command.stderr[-3000:]
    assert "exited with an error" not in command.stderr and "Traceback" not in command.stderr
    with study_at(postgres_url) as study:
        trials = study.get_trials()
    check_shared_study(trials, workers=3)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    summary = command.json()
    check_sums(trials, summary)  # all workers have stopped before the command reads the study
    assert summary["trial"] == best_of(trials).number
    check_no_password(postgres_server.password, [command], tmp_path)


# alpha 1.1..1.3, beta and gamma 1.0..1.2 by 0.1, |alpha*beta^2*gamma^2 - 2| <= 0.15 keeps 7 points (by hand:
# 1.1*1.1²*1.2² = 1.1*1.2²*1.1² = 1.9166, 1.2*1.1²*1.2² = 1.2*1.2²*1.1² = 2.0909,
# 1.3*1.0²*1.2² = 1.3*1.2²*1.0² = 1.872, 1.3*1.1²*1.1² = 1.9033; every other one is further than 0.15 from 2).
# They build four networks (tests/test_grid_scale.py works them out by hand), each evaluated at its first point:
GRID_POINTS = 7
GRID_NETWORKS = {(1.1, 1.1, 1.2), (1.1, 1.2, 1.1), (1.3, 1.1, 1.1), (1.3, 1.2, 1.0)}


def test_two_grid_scale_processes_score_each_network_once(postgres_server, postgres_url, tmp_path, effnet_command):
    args = [
        "grid-scale",
        "--base",
        TINY_BASE,
        "--alpha-range",
        "1.1:1.3",
        "--beta-range",
        "1.0:1.2",
        "--gamma-range",
        "1.0:1.2",
        "--step",
        "0.1",
        "--tolerance",
        "0.15",
        "--proxy",
        "zero-cost",
        "--data",
        "synthetic",
        "--proxy-resolution",
        "16",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--storage",
        postgres_url,
        "--json",
    ]
    commands = [effnet_command([*args, "--run-dir", tmp_path / f"machine{i}"], f"grid{i}") for i in range(2)]
    wait_all(commands, 300)
    with study_at(postgres_url, "grid") as study:
        trials = study.get_trials()
    scored = [t for t in trials if t.state == TrialState.COMPLETE]
    points = [tuple(round(t.params[k], 6) for k in ("alpha", "beta", "gamma")) for t in scored]
    assert sorted(points) == sorted(GRID_NETWORKS), "a network was scored twice or not at all"
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # Each command reports the study as it read it when its own worker stopped; the one that scored the last
    # point read it after that point, so it reports every point (the other may have stopped earlier).
    reported = [c.json()["points_scored"] for c in commands]
    assert max(reported) == GRID_POINTS, reported
    check_no_password(postgres_server.password, commands, tmp_path)


def test_a_wrong_password_is_a_clear_error_that_hides_it(postgres_server, postgres_url, tmp_path, no_training):
    wrong = postgres_url.replace(postgres_server.password, "not-the-password-9431")
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--storage", wrong, "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 2
    refusal_stdout_is_right(result)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the storage postgresql://effnet:***@127.0.0.1:")
    assert 'password authentication failed for user "effnet"' in line and "not-the-password-9431" not in line
    assert "not-the-password-9431" not in result.stdout  # nor in the JSON object of the error


def test_workers_opening_an_empty_database_at_once_all_get_in(postgres_url, tmp_path):
    """Each worker creates Optuna's tables on first contact; without a retry, all but one of six lose
    that race with a unique violation (seen: 5 of 6, three times out of three)."""
    from effnet.nas.study.storage import open_storage

    barrier, errors = threading.Barrier(6), []

    def open_at_once() -> None:
        barrier.wait()
        try:
            open_storage(postgres_url, tmp_path).engine.dispose()
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=open_at_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg2"])
def test_other_spellings_of_the_url_reach_the_same_server(postgres_url, scheme, tmp_path):
    from effnet.nas.study.storage import open_storage

    storage = open_storage(postgres_url.replace("postgresql", scheme, 1), tmp_path)
    assert storage.get_all_studies() == []
    storage.engine.dispose()


ODD_PASSWORD = 'it\'s "a" pw%x@y'
"""Quotes, a space, a percent and an at sign: what the redaction used to miss."""


@pytest.mark.parametrize("form", ["userinfo, unencoded", "query parameter"])
def test_a_password_in_any_form_works_and_shows_nowhere(postgres_server, form, tmp_path, one_torch_thread):
    user = database = f"odd_{secrets.token_hex(4)}"
    postgres_server.create_user(user, ODD_PASSWORD)
    postgres_server.create_database(database, owner=user)
    host = f"127.0.0.1:{postgres_server.port}"
    if form.startswith("userinfo"):  # only % and @ need encoding there; the quotes and the space stay as typed
        url = f"postgresql://{user}:{ODD_PASSWORD.replace('%', '%25').replace('@', '%40')}@{host}/{database}"
    else:
        url = f"postgresql://{user}@{host}/{database}?password={quote(ODD_PASSWORD, safe='')}"
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["search", *TINY_SEARCH, "--trials", "1", "--storage", url, "--run-dir", str(run_dir), "--json"]
    )
    assert result.exit_code == 0, result.output  # the password reached the server intact
    written = url.split(f"{user}:", 1)[1].split("@1")[0] if form.startswith("userinfo") else url.rsplit("=", 1)[1]
    for secret in (ODD_PASSWORD, written):
        assert secret not in result.stdout + result.stderr and files_holding(secret, run_dir) == []
    assert json.loads(result.stdout)["storage"].startswith(f"postgresql://{user}")


def test_a_database_outage_mid_run_is_a_clean_error_and_the_study_resumes(tmp_path, effnet_command):
    """The server goes away while a candidate trains: one line, exit 2, no traceback (it was an UnboundLocalError
    from Optuna's trial loop); once it is back, the same command resumes."""
    from postgres import server_bin_dir, start_server

    server = start_server(server_bin_dir())  # its own: this test stops it
    try:
        url = server.create_database("outage")
        args = [
            "search",
            *TINY_SEARCH,
            "--proxy-epochs",
            "3",
            "--storage",
            url,
            "--run-dir",
            tmp_path / "run",
            "--json",
        ]
        command = effnet_command([*args, "--trials", 200], "search")
        with postgres_study(url) as read:
            wait_for(lambda: len(trained(read())) >= 2, 240)
            before = read()
        # the test server commits asynchronously (synchronous_commit=off): an immediate stop loses what its WAL
        # writer has not flushed yet (every 200 ms), a trial's completion read just above included; a server with
        # the default synchronous commits keeps them. Let the writer flush what `before` read, then stop it.
        time.sleep(1.0)
        server.halt()
        assert command.wait(120) == 2, command.stderr[-3000:]
        [line] = command.stderr.strip().splitlines()[-1:]
        assert (
            line.startswith(
                f"error: the storage postgresql://effnet:***@127.0.0.1:{server.port}/outage failed "
                "mid-run (OperationalError"
            )
            and "rerun the same command to resume" in line
        )
        assert "Traceback" not in command.stderr and "UnboundLocalError" not in command.stderr
        assert server.password not in command.stderr
        server.resume()
        rerun = effnet_command([*args, "--trials", len(trained(before)) + 1], "rerun")
        assert rerun.wait(300) == 0, rerun.stderr[-3000:]
        with study_at(url) as study:
            every = {t.number: t for t in study.get_trials()}
        changed = [  # every trial completed before the outage, kept as it was
            (t.number, t.value, every[t.number].state, every[t.number].value)
            for t in before
            if t.state == TrialState.COMPLETE and (every[t.number].state, every[t.number].value) != (t.state, t.value)
        ]
        assert not changed, changed
    finally:
        server.stop()
