"""`effnet search --target-latency`: MnasNet's objective against the latency this machine's table predicts.

The tiny space at 32 px keeps the table small (a few seconds to build, once per test session: the tests share
one cache directory). Bands are computed here from the target and tolerance given, not read from the code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app

from postgres import TINY_SEARCH, TINY_SPACE

runner = CliRunner()
FAST = [
    item
    for flag, value in zip(TINY_SEARCH[::2], TINY_SEARCH[1::2], strict=True)
    if flag not in ("--target-flops", "--flops-tolerance")
    for item in (flag, value)
]
"""The tiny fast search without its FLOPs target: each test gives the targets it is about."""


@pytest.fixture(scope="module")
def reach() -> tuple[float, float]:
    """The tiny space's fastest and slowest predicted networks on this machine (building its table)."""
    result = runner.invoke(app, ["latency-table", "--space", TINY_SPACE, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return data["fastest_s"], data["slowest_s"]


def middle(fastest: float, slowest: float) -> float:
    """A target inside the space's range, away from both ends, in seconds as the command line will read it."""
    return round((fastest * slowest) ** 0.5 * 1000, 4) / 1000


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_latency_search_trains_only_candidates_in_the_latency_band_and_measures_b0(tmp_path, reach):
    fastest, slowest = reach
    target = middle(fastest, slowest)
    tolerance = 0.3
    args = ["search", *FAST, "--target-latency", f"{target * 1000:.4f}ms", "--latency-tolerance", str(tolerance)]
    result = runner.invoke(app, [*args, "--trials", "4", "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["band"] is None  # no FLOPs band without a FLOPs target
    low, high = target * (1 - tolerance), target * (1 + tolerance)
    assert summary["latency_band_s"] == pytest.approx([low, high])
    table = rows(tmp_path)
    assert table and "predicted_latency_s" in table[0]
    for row in table:
        predicted = float(row["predicted_latency_s"])
        inside = low <= predicted <= high
        assert row["in_band"] == str(inside), row
        assert fastest * 0.999 <= predicted <= slowest * 1.001  # the table's range holds every network
        if not inside:
            assert row["accuracy"] == "", row  # never trained
    trained = [r for r in table if r["accuracy"]]
    assert len(trained) >= 4
    b0 = yaml.safe_load((tmp_path / "b0.yaml").read_text())
    latency = b0["provenance"]["latency"]
    assert latency["target_s"] == pytest.approx(target, rel=1e-4)
    assert low <= latency["predicted_s"] <= high
    assert latency["measured_s"] > 0 and latency["p90_s"] >= latency["measured_s"]
    assert (latency["runtime"], latency["batch"], latency["threads"]) == ("folded", 1, 1)
    assert summary["latency"]["measured_s"] == latency["measured_s"]
    assert (tmp_path / "accuracy_vs_latency.png").stat().st_size > 0
    assert "predicted latency" in (tmp_path / "report.html").read_text()


def test_a_flops_band_and_a_latency_band_hold_together(tmp_path, reach):
    fastest, slowest = reach
    target = middle(fastest, slowest)
    args = ["search", *FAST, "--target-latency", f"{target * 1000:.4f}ms", "--latency-tolerance", "0.5"]
    args += ["--target-flops", "1M", "--flops-tolerance", "0.5"]
    result = runner.invoke(app, [*args, "--trials", "3", "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    for row in rows(tmp_path):
        if row["accuracy"]:
            assert 500_000 <= int(row["flops"]) <= 1_500_000
            assert target * 0.5 <= float(row["predicted_latency_s"]) <= target * 1.5


def test_a_target_faster_than_the_fastest_network_is_refused_saying_the_range(tmp_path, reach):
    fastest, slowest = reach
    too_fast = fastest / 3
    args = ["search", *FAST, "--target-latency", f"{too_fast * 1000:.4f}ms", "--trials", "2"]
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: --target-latency") and "no network of the tiny space meets" in lines[-1]
    assert f"{1000 * fastest:.2f}" in lines[-1]  # the fastest network, said
    assert "Traceback" not in result.output
    assert not (tmp_path / "b0.yaml").exists()


@pytest.mark.parametrize("text", ["12", "12 parsecs", "nanms", "1_000us"])
def test_a_latency_without_a_unit_is_refused_in_one_line(tmp_path, text):
    result = runner.invoke(app, ["search", *FAST, "--target-latency", text, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.output
        == f"error: --target-latency {text!r} is not a latency; write it with its unit, like 12ms, "
        + ("0.012s or 800us\n")
    )


@pytest.mark.parametrize("text", ["-3ms", "0ms", "1e-30s", "7200s"])
def test_a_latency_with_its_unit_but_no_network_can_have_is_refused_as_such(tmp_path, text):
    """`0ms` has its unit: "write it with its unit" was the wrong fix; 1e-30 s showed as a band of 0.00-0.00 ms."""
    result = runner.invoke(app, ["search", *FAST, "--target-latency", text, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == f"error: --target-latency {text!r} is not a latency a network can have: give one from " + (
        "1us to 3600s, like 12ms or 800us\n"
    )


@pytest.mark.parametrize(
    "args, words",
    [
        # the search has its own --threads and --device: an error naming those would send the user to the wrong flag
        (["--target-latency", "1ms", "--latency-threads", "1000"], "error: --latency-threads 1000 is more than the"),
        (["--target-latency", "1ms", "--latency-device", "cuda:7"], "error: --latency-device 'cuda:7': "),
        (["--target-latency", "1ms", "--latency-batch", "0"], "error: --latency-batch must be at least 1, got 0"),
        (["--target-latency", "1ms", "--latency-runtime", "tflite"], "error: --latency-runtime must be one of"),
        # without a latency target they were taken silently (run.yaml recorded a device this machine has not)
        (["--latency-device", "cuda:7"], "error: --latency-device is a setting of the latency target; add --target-"),
        (["--latency-tolerance", "0.2"], "error: --latency-tolerance is a setting of the latency target; add --tar"),
    ],
)
def test_latency_settings_are_named_as_the_search_takes_them(tmp_path, args, words):
    result = runner.invoke(app, ["search", *FAST, *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(words) and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_latency_target_is_refused(tmp_path, reach):
    fastest, slowest = reach
    target = middle(fastest, slowest)
    first = ["search", *FAST, "--target-latency", f"{target * 1000:.4f}ms", "--latency-tolerance", "0.5"]
    result = runner.invoke(app, [*first, "--trials", "1", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    second = ["search", *FAST, "--target-latency", f"{target * 1100:.4f}ms", "--latency-tolerance", "0.5"]
    result = runner.invoke(app, [*second, "--trials", "2", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "target_latency_s" in result.output


def test_the_hard_constraint_trains_nothing_predicted_slower_than_the_target(tmp_path, reach):
    fastest, slowest = reach
    target = middle(fastest, slowest)
    args = ["search", *FAST, "--objective", "hard", "--target-latency", f"{target * 1000:.4f}ms"]
    result = runner.invoke(app, [*args, "--latency-tolerance", "0.5", "--trials", "3", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    trained = [float(r["predicted_latency_s"]) for r in rows(tmp_path) if r["accuracy"]]
    assert trained and all(target * 0.5 <= t <= target for t in trained)


def test_pareto_weighs_accuracy_against_the_predicted_latency(tmp_path, reach):
    fastest, slowest = reach
    target = middle(fastest, slowest)
    args = ["search", *FAST, "--objective", "pareto", "--target-latency", f"{target * 1000:.4f}ms"]
    result = runner.invoke(app, [*args, "--latency-tolerance", "0.5", "--trials", "4", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    trained = [(float(r["accuracy"]), float(r["predicted_latency_s"])) for r in rows(tmp_path) if r["accuracy"]]
    b0 = yaml.safe_load((tmp_path / "b0.yaml").read_text())["provenance"]
    chosen = (b0["accuracy"], b0["latency"]["predicted_s"])
    assert chosen in trained
    # b0 lies on the front of (accuracy up, predicted latency down): no trained candidate beats it on both
    assert not any(a >= chosen[0] and t <= chosen[1] and (a, t) != chosen for a, t in trained)


def test_a_worker_on_another_machine_cannot_join_a_latency_study(tmp_path, reach, monkeypatch):
    """Its table would predict other latencies: the rewards of the study's trials would not compare."""
    fastest, slowest = reach
    args = ["search", *FAST, "--target-latency", f"{middle(fastest, slowest) * 1000:.4f}ms"]
    args += ["--latency-tolerance", "0.5", "--run-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, "--trials", "1"])
    assert result.exit_code == 0, result.output
    monkeypatch.setattr("effnet.nas.latency.fingerprint.cpu_model", lambda: "Another CPU 9000")
    result = runner.invoke(app, [*args, "--trials", "2"])
    assert result.exit_code == 2
    assert "latency_machine" in result.output
