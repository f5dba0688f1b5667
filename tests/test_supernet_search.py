"""`search --proxy supernet`: the supernet trained once before the study, reused by workers and resumed runs,
counted in the run's time limit, resumable after a stop; grid-scale refuses it."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.search import search
from effnet.nas.signals import last_stop_signal, request_stop, stop_requested
from effnet.nas.study.study_config import StudyConfig

TINY = str(Path(__file__).parent / "data" / "tiny_space.yaml")
ARGS = [
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
    "--proxy-resolution",
    "16",
    "--batch-size",
    "32",
    "--timeout",
    "none",
    "--threads",
    "1",
]


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("supernet-*.pt"))


@pytest.mark.slow
def test_search_trains_the_supernet_once_and_workers_and_resumed_runs_reuse_it(tmp_path):
    first = CliRunner().invoke(app, ["search", *ARGS, "--trials", "4", "--run-dir", tmp_path, "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    [checkpoint] = checkpoints(tmp_path)
    assert summary["supernet"]["checkpoint"] == str(checkpoint)
    assert summary["supernet"]["steps"] == summary["supernet"]["total_steps"] == 16  # 2 epochs of 256 images / 32
    assert summary["trials_completed"] == 4 and summary["stop_reason"] == "budget"
    trained = checkpoint.stat().st_mtime_ns
    # the resumed study, with two worker processes: both score with the parent's supernet, none trains it again
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "effnet.cli",
            "search",
            *ARGS,
            "--trials",
            "24",
            "--workers",
            "2",
            "--run-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["supernet"]["trained_now_s"] == 0.0 and resumed["supernet"]["steps"] == 16
    assert checkpoints(tmp_path) == [checkpoint] and checkpoint.stat().st_mtime_ns == trained
    rows = [
        r
        for r in csv.DictReader((tmp_path / "trials.csv").read_text().splitlines())
        if r["state"] == "COMPLETE" and r["in_band"] == "True"
    ]
    assert len(rows) >= 24 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    # host:pid: both workers scored (20 candidates, so that one starting seconds after the other still gets some)
    assert len({r["worker"] for r in rows[4:]}) == 2
    record = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert record["settings"]["proxy"]["supernet_epochs"] == 2


def tiny_search(tmp_path: Path, **study) -> SearchConfig:
    return SearchConfig(
        target_flops=1_000_000,
        flops_tolerance=0.3,
        space=TINY,
        trials=3,
        pruner="none",
        proxy=ProxyConfig(
            name="supernet", data="synthetic", resolution=16, batch_size=32, supernet_epochs=20, max_train_batches=1
        ),
        study=StudyConfig(run_dir=tmp_path, name="search", threads=1, **study),
    )


def test_supernet_training_counts_in_the_time_limit_and_resumes(tmp_path):
    config = tiny_search(tmp_path, timeout_s=0.5)
    slow = lambda progress: time.sleep(0.05)  # noqa: E731  (20 steps: at least a second in all)
    stopped = search(config, on_progress=slow)
    assert stopped.stop_reason == "timeout" and stopped.summary.trained == 0 and stopped.best_spec is None
    assert 0 < stopped.supernet["steps"] < 20
    assert (tmp_path / "trials.csv").exists() and (tmp_path / "run.yaml").exists()
    finished = search(
        SearchConfig(**{**config.__dict__, "study": StudyConfig(run_dir=tmp_path, name="search", threads=1)})
    )
    assert finished.supernet["steps"] == 20 and finished.summary.trained == 3
    # the first run's seconds counted too (each figure rounded to 0.1 s; under load the first run may train only
    # a step or two before its 0.5 s run out, so the two totals can round alike)
    first, now, total = (
        stopped.supernet["training_s"],
        finished.supernet["trained_now_s"],
        finished.supernet["training_s"],
    )
    assert total == pytest.approx(first + now, abs=0.11) and total >= now > 0


def test_a_stop_signal_during_the_supernet_training_keeps_its_checkpoint(tmp_path):
    config = tiny_search(tmp_path)

    def stop_at_step_5(progress):
        if progress.status.startswith("training the supernet") and progress.done == 5:
            request_stop(signal.SIGINT)

    result = search(config, on_progress=stop_at_step_5)
    assert (result.stop_reason, result.signal, result.summary.trained) == ("interrupt", signal.SIGINT, 0)
    # The stop was the search's: it does not stop the next call of this process, and the signal is still known.
    assert stop_requested() is None and last_stop_signal() == signal.SIGINT
    [checkpoint] = checkpoints(tmp_path)
    assert torch.load(checkpoint, weights_only=True)["step"] == 5


def test_grid_scale_refuses_the_supernet(tmp_path, b0_yaml, no_training):
    result = CliRunner().invoke(
        app,
        [
            "grid-scale",
            "--base",
            str(b0_yaml),
            "--proxy",
            "supernet",
            "--data",
            "synthetic",
            "--run-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "--proxy supernet scores the networks of a search space" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
