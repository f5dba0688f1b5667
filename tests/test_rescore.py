"""`search --proxy supernet --rescore-top K`: the supernet's top K trained again by the train proxy, b0 the best of
them; resumable; refused without the supernet."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from refusals import refusal_stdout_is_right
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.proxies.supernet_training import SupernetTraining
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.rescore import ScreeningJob, candidate_training_s
from effnet.nas.study.trial_attrs import IN_BAND_ATTR

TINY = str(Path(__file__).parent / "data" / "tiny_space.yaml")
ARGS = [
    "search",
    "--space",
    TINY,
    "--target-flops",
    "1M",
    "--flops-tolerance",
    "0.3",
    "--data",
    "synthetic",
    "--proxy",
    "supernet",
    "--supernet-epochs",
    "2",
    "--proxy-epochs",
    "1",
    "--proxy-resolution",
    "16",
    "--batch-size",
    "32",
    "--timeout",
    "none",
    "--threads",
    "1",
    "--trials",
    "6",
    "--json",
]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def top_by_reward(trials_csv: Path, k: int) -> list[int]:
    """The screening's top k from its trials.csv: complete, in the band, highest reward first (ties: lower number)."""
    done = [r for r in rows(trials_csv) if r["state"] == "COMPLETE" and r["in_band"] == "True"]
    done.sort(key=lambda r: (-float(r["reward"]), int(r["number"])))
    return [int(r["number"]) for r in done[:k]]


@pytest.mark.slow
def test_the_top_k_are_trained_again_and_b0_is_the_best_of_them_and_a_rerun_adds_only_what_is_missing(tmp_path):
    first = CliRunner().invoke(app, [*ARGS, "--rescore-top", "3", "--run-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    top3 = top_by_reward(tmp_path / "trials.csv", 3)
    assert summary["rescored"]["screened_trials"] == top3
    assert summary["rescored"]["completed"] == 3 and summary["rescored"]["study"] == "search-rescore"

    rescored = rows(tmp_path / "rescored.csv")
    assert sorted(int(r["screened_trial"]) for r in rescored) == sorted(top3)
    screening = {int(r["number"]): r for r in rows(tmp_path / "trials.csv")}
    for r in rescored:
        assert r["state"] == "COMPLETE" and float(r["proxy_seconds"]) > 0 and r["epochs_trained"] == "1"
        # the screening's accuracy rides along; the new one is the train proxy's own
        assert float(r["screened_accuracy"]) == pytest.approx(float(screening[int(r["screened_trial"])]["accuracy"]))
        assert {k: v for k, v in r.items() if k.startswith("stage")} == {
            k: v for k, v in screening[int(r["screened_trial"])].items() if k.startswith("stage")
        }

    best = max(rescored, key=lambda r: (float(r["reward"]), -int(r["number"])))
    b0 = yaml.safe_load((tmp_path / "b0.yaml").read_text())["provenance"]
    assert b0["proxy"] == "train" and b0["study"] == "search-rescore"
    assert b0["trial"] == int(best["number"]) and b0["screened_trial"] == int(best["screened_trial"])
    assert b0["accuracy"] == pytest.approx(float(best["accuracy"]))
    assert summary["trial"] == int(best["screened_trial"])  # the candidate by its number in trials.csv

    terminal = [a for a in ARGS if a != "--json"]  # the rerun prints its tables and lines instead
    again = CliRunner().invoke(app, [*terminal, "--rescore-top", "4", "--run-dir", str(tmp_path), "--force"])
    assert again.exit_code == 0, again.output
    assert "re-scored by the train proxy: 4 of the supernet's top 4" in " ".join(again.output.split())
    assert "rescored.csv" in again.output
    after = rows(tmp_path / "rescored.csv")
    assert len(after) == 4  # the fourth queued and trained; the first three not again
    assert {r["number"]: r["proxy_seconds"] for r in after if r["number"] in {x["number"] for x in rescored}} == {
        r["number"]: r["proxy_seconds"] for r in rescored
    }
    assert int(after[-1]["screened_trial"]) == top_by_reward(tmp_path / "trials.csv", 4)[3]


def test_rescoring_without_the_supernet_is_refused_in_one_line(tmp_path):
    args = [a if a != "supernet" else "train" for a in ARGS]
    result = CliRunner().invoke(app, [*args, "--rescore-top", "3", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--rescore-top" in lines[0] and "--proxy supernet" in lines[0], result.output
    refusal_stdout_is_right(result)
    assert "Traceback" not in result.output


def test_the_screening_leaves_the_rescoring_its_k_trainings_as_the_supernet_and_the_screening_timed_them():
    # 100 steps in 50 s of a sandwich (4 paths a step): 0.125 s a path-step; 20 steps an epoch (5 epochs);
    # 3 train-proxy epochs: 7.5 s of training a candidate; screening trials of 5, 1, 2 and 4 s in the band
    # (median 3; the first 2 s of set-up) and one of 10 s out of it (not counted): 4 x (7.5 + 3 x 3) + 2 = 68 s.
    config = SearchConfig(
        target_flops=400_000_000,
        rescore_top=4,
        proxy=ProxyConfig(name="supernet", supernet_epochs=5, supernet_recipe="sandwich", epochs=3),
    )
    training = SupernetTraining(Path("x.pt"), steps=100, total_steps=100, seconds=50.0, seconds_now=50.0)
    assert candidate_training_s(training, config) == pytest.approx(7.5)
    uniform = dataclasses.replace(config, proxy=dataclasses.replace(config.proxy, supernet_recipe="uniform"))
    assert candidate_training_s(training, uniform) == pytest.approx(30.0)

    study = optuna.create_study(direction="maximize")
    start = datetime.datetime(2026, 1, 1)
    for seconds, in_band in ((5, True), (1, True), (2, True), (10, False), (4, True)):
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0, state=TrialState.COMPLETE, value=0.5, datetime_start=start,
                datetime_complete=start + datetime.timedelta(seconds=seconds), params={}, distributions={},
                user_attrs={IN_BAND_ATTR: in_band}, system_attrs={}, intermediate_values={}, trial_id=0,
            )
        )  # fmt: skip
    now = time.time()
    job = ScreeningJob(config, SimpleNamespace(), ends_by=now + 100.0, screens_until=now, training_s=7.5)
    assert job.reserve_s(study) == pytest.approx(68.0)
    assert job.stop_reason(study) is None  # 100 s left
    assert dataclasses.replace(job, ends_by=now + 60.0).stop_reason(study) == "timeout"
    assert dataclasses.replace(job, ends_by=now + 60.0, screens_until=now + 30.0).stop_reason(study) is None


@pytest.mark.slow
def test_under_a_time_limit_the_screening_stops_in_time_for_the_rescoring(tmp_path):
    """No trial limit, a 25 s limit: the screening ends by the time it was given, leaving time that it measured
    for the rescoring, which trains again at least the best of the top 2 (each a second or so here, where a
    worker's first imports can take the second's time), b0 from them, the whole run within the limit and a
    few seconds."""
    args = [a if a != "none" else "25s" for a in ARGS]
    args[args.index("--trials") + 1] = "100000"
    args[args.index("--proxy-epochs") + 1] = "3"
    result = CliRunner().invoke(app, [*args, "--rescore-top", "2", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stop_reason"] == "timeout" and summary["rescored"]["completed"] >= 1
    assert summary["rescored"]["reserved_s"] > 0
    assert yaml.safe_load((tmp_path / "b0.yaml").read_text())["provenance"]["study"] == "search-rescore"
    assert summary["elapsed_s"] < 25 + 10
