"""`effnet grid-scale --latency` and `effnet export-family --latency`: each network's measured latency in the
result table, --json, the CSV and the YAML files, the same number everywhere; the settings recorded; bad settings
refused before any work. The wiring tests time nothing real (the runs' times are given), the others only check
that a real measurement is there and positive: the machine running them may be busy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from refusals import refusal_stdout_is_right

from effnet.nas.cpus import usable_cores
from effnet.nas.latency import measure

from postgres import TINY_BASE

PAPER = ["--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15"]
GRID = ["--alpha-range", "1.1:1.3", "--beta-range", "1.0:1.2", "--gamma-range", "1.0:1.2", "--step", "0.1"]
GRID += ["--tolerance", "0.15", "--proxy", "zero-cost", "--data", "synthetic", "--proxy-resolution", "16"]
GRID += ["--batch-size", "8", "--threads", "1"]
RUNS = [0.004, 0.001, 0.002]
"""The timed runs' seconds every measurement gets in the wiring tests: median 2 ms; 90th percentile by hand,
interpolated between the two largest of the sorted runs: 2 + 0.8 * (4 - 2) = 3.6 ms."""


@pytest.fixture
def given_runs(monkeypatch):
    seen = []

    def runs(prepared, warmup, repeats, report):
        seen.append((warmup, repeats))
        return RUNS

    monkeypatch.setattr(measure, "time_runs", runs)
    return seen


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_export_family_latency_is_in_the_json_the_csv_and_run_yaml(cli, tmp_path, given_runs):
    run = tmp_path / "family"
    result = cli("export-family", "--base", TINY_BASE, *PAPER, "--phi", "1,2", "--run-dir", run, "--latency", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert given_runs == [(2, 5), (2, 5)]  # one measurement per member, few runs by default
    assert "latency of b2" in result.stderr  # progress, as plain lines in a log
    assert data["latency"] == {
        "runtime": "folded",
        "device": "cpu",
        "batch": 1,
        "threads": None,
        "warmup": 2,
        "repeats": 5,
    }
    for member in data["members"]:
        assert member["latency_ms"] == pytest.approx(2.0) and member["latency_p90_ms"] == pytest.approx(3.6)
    rows = read_csv(run / "family.csv")
    assert [row["name"] for row in rows] == ["b1", "b2"]
    assert [float(row["latency_ms"]) for row in rows] == pytest.approx([2.0, 2.0])
    record = yaml.safe_load((run / "run.yaml").read_text())
    assert record["settings"]["latency"]["repeats"] == 5
    assert record["result"]["latency_ms"] == pytest.approx({"b1": 2.0, "b2": 2.0})


def test_export_family_latency_column_in_the_table(cli, tmp_path, given_runs):
    result = cli(
        "export-family",
        "--base",
        TINY_BASE,
        *PAPER,
        "--phi",
        "1",
        "--run-dir",
        tmp_path / "f",
        "--latency",
        "--repeats",
        "3",
        "--batch",
        "2",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert given_runs == [(2, 3)]
    header = next(line for line in result.stdout.splitlines() if "FLOPs" in line and "name" in line)
    assert header.split()[-1] == "latency"
    assert "2.00 ms" in result.stdout


def test_export_family_without_latency_has_no_latency_columns(cli, tmp_path):
    run = tmp_path / "family"
    result = cli("export-family", "--base", TINY_BASE, *PAPER, "--phi", "1", "--run-dir", run, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency"] is None and "latency_ms" not in data["members"][0]
    assert "latency_ms" not in read_csv(run / "family.csv")[0]


def test_export_family_measures_for_real(cli, tmp_path):
    run = tmp_path / "family"
    result = cli(
        "export-family",
        "--base",
        TINY_BASE,
        *PAPER,
        "--phi",
        "1",
        "--run-dir",
        run,
        "--latency",
        "--threads",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    member = json.loads(result.stdout)["members"][0]
    assert 0 < member["latency_ms"] <= member["latency_p90_ms"] and member["latency_cv"] >= 0
    assert json.loads(result.stdout)["latency"]["threads"] == 1


def test_grid_scale_latency_per_network_in_every_output(cli, tmp_path):
    run = tmp_path / "grid"
    result = cli(
        "grid-scale",
        "--base",
        TINY_BASE,
        *GRID,
        "--run-dir",
        run,
        "--latency",
        "--latency-threads",
        "1",
        "--latency-repeats",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency"]["threads"] == 1 and data["latency"]["repeats"] == 3
    by_network: dict[str, set[float]] = {}
    for point in data["points"]:
        assert point["latency_ms"] > 0
        by_network.setdefault(point["network"], set()).add(point["latency_ms"])
    assert len(by_network) == 4 and all(len(times) == 1 for times in by_network.values())  # twins: one measurement
    rows = read_csv(run / "grid.csv")
    assert {row["network"]: float(row["latency_ms"]) for row in rows} == {
        network: times.pop() for network, times in by_network.items()
    }
    coefficients = yaml.safe_load((run / "coefficients.yaml").read_text())
    best = next(p for p in data["points"] if p["network"] == coefficients["network"])
    assert coefficients["latency_ms"] == best["latency_ms"] == data["best"]["latency_ms"]
    assert "latency of" in result.stderr  # progress while measuring


@pytest.mark.parametrize(
    "command, args, words",
    [
        (
            "export-family",
            ["--runtime", "torch"],
            "error: --runtime is a setting of the latency measurement; add --latency",
        ),
        ("export-family", ["--latency", "--batch", "0"], "error: --batch must be at least 1"),
        ("export-family", ["--latency", "--repeats", "1"], "error: --repeats must be at least 2"),
        ("grid-scale", ["--latency-threads", "1"], "error: --latency-threads is a setting of the latency measurement"),
        (
            "grid-scale",
            ["--latency", "--latency-threads", str(usable_cores() + 1)],
            f"error: --latency-threads {usable_cores() + 1} is more than the",
        ),
        ("grid-scale", ["--latency", "--runtime", "tensorrt"], "error: --runtime must be one of folded, torch"),
    ],
)
def test_bad_latency_settings_are_one_line_exit_2_before_any_work(cli, tmp_path, command, args, words):
    base = ["--base", TINY_BASE, *(PAPER if command == "export-family" else GRID)]
    result = cli(command, *base, "--run-dir", tmp_path / "run", *args, "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith(words) and result.stderr.count("\n") == 1, result.stderr
    refusal_stdout_is_right(result)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_member_too_large_to_time_is_refused_in_one_line_before_any_member_is_timed(cli, tmp_path, monkeypatch):
    from effnet.nas.net.limits import memory_needed
    from effnet.nas.net.spec_file import load_spec
    from effnet.scaling.compound import Coefficients
    from effnet.scaling.family import compound_family

    small, large = compound_family(load_spec(TINY_BASE), Coefficients(1.2, 1.1, 1.15), (1.0, 3.0))
    free = (memory_needed(small.spec) + memory_needed(large.spec)) // 2  # b1 fits, b3 does not
    monkeypatch.setattr("effnet.nas.net.limits.available_memory", lambda: free)
    monkeypatch.setattr("effnet.nas.latency.measure.available_memory", lambda: free)
    timed = []
    real = measure.measure_latency
    monkeypatch.setattr("effnet.scaling.latency.measure_latency", lambda *a, **k: timed.append(a) or real(*a, **k))
    args = ["--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--phi", "1,3", "--latency", "--json"]
    result = cli("export-family", "--base", TINY_BASE, *args, "--run-dir", tmp_path / "family")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: b3: to measure its latency"), result.output
    refusal_stdout_is_right(result)
    assert timed == []  # b1 was not timed first, only to be thrown away


def test_a_grid_point_too_large_to_time_is_refused_before_the_grid_is_evaluated(cli, tmp_path, monkeypatch):
    from effnet.nas.net.limits import memory_needed
    from effnet.nas.net.spec_file import load_spec
    from effnet.scaling.grid_space import point_spec

    base = load_spec(TINY_BASE)
    free = memory_needed(point_spec(base, 1.1, 1.0, 1.0, 1.0)) + memory_needed(point_spec(base, 1.3, 1.2, 1.2, 1.0))
    monkeypatch.setattr("effnet.nas.net.limits.available_memory", lambda: free // 2)  # the smallest fits
    monkeypatch.setattr("effnet.nas.latency.measure.available_memory", lambda: free // 2)
    run = tmp_path / "grid"
    result = cli("grid-scale", "--base", TINY_BASE, *GRID, "--latency", "--run-dir", run, "--json")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "needs about" in lines[0], result.output
    refusal_stdout_is_right(result)
    assert "use at most 1" not in lines[0]  # batch 1 is what did not fit: the fix is another network
    assert not (run / "study.journal").exists()  # refused before the study: no point was evaluated
