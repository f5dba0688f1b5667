"""`effnet proxy-check` end to end on synthetic data with a tiny space and budget, its bad inputs, and the rank
correlations it reports against hand counts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.net.flops import analytic_flops
from effnet.nas.space.load import load_space
from effnet.nas.study.proxy_check import draw_candidates
from effnet.nas.study.rank import kendall, spearman

TINY_SPACE = str(Path(__file__).parent / "data" / "tiny_space.yaml")
TINY_ARGS = [
    "--space",
    TINY_SPACE,
    "--target-flops",
    "1M",
    "--flops-tolerance",
    "0.3",
    "--data",
    "synthetic",
    "--proxy-epochs",
    "1",
    "--reference-epochs",
    "2",
    "--candidates",
    "3",
    "--proxy-resolution",
    "16",
    "--threads",
    "1",
]


def invoke(*args):
    """`effnet proxy-check ARGS...` in-process."""
    return CliRunner().invoke(app, ["proxy-check", *[str(a) for a in args]])


def hand_kendall_tau_b(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b by counting pairs: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))."""
    pairs = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x))]
    sign = [((x[i] > x[j]) - (x[i] < x[j])) * ((y[i] > y[j]) - (y[i] < y[j])) for i, j in pairs]
    untied_x = sum(x[i] != x[j] for i, j in pairs)
    untied_y = sum(y[i] != y[j] for i, j in pairs)
    if not untied_x or not untied_y:
        return None  # a constant side: no ranking to agree with
    return sum(sign) / (untied_x * untied_y) ** 0.5


def test_proxy_check_end_to_end(tmp_path):
    run_dir = tmp_path / "check"
    result = invoke(*TINY_ARGS, "--proxy", "train", "--proxy", "zero-cost", "--run-dir", run_dir, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["candidates"] == 3
    assert set(summary["correlations"]) == {"train", "zero-cost", "params", "flops"}
    rows = list(csv.DictReader((run_dir / "proxy_check.csv").read_text().splitlines()))
    assert len(rows) == 3
    for row in rows:
        assert 0.7e6 <= int(row["flops"]) <= 1.3e6  # inside the band 1M ± 30 %
        assert 0.0 <= float(row["reference"]) <= 1.0 and float(row["zero-cost"]) > 0
    reference = [float(r["reference"]) for r in rows]
    for name in ("train", "zero-cost", "params", "flops"):
        scores = [float(r[name]) for r in rows]
        expected = hand_kendall_tau_b(scores, reference)
        assert summary["correlations"][name]["kendall_tau"] == (None if expected is None else round(expected, 4))
    saved = yaml.safe_load((run_dir / "proxy_check.yaml").read_text())
    assert saved["correlations"] == summary["correlations"] and len(saved["results"]) == 3
    assert (run_dir / "run.yaml").exists()


def test_proxy_check_with_the_supernet_trains_it_once_and_amortises_it(tmp_path):
    run_dir = tmp_path / "check"
    args = [*TINY_ARGS, "--proxy", "supernet", "--supernet-epochs", "2", "--run-dir", run_dir, "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    row, supernet = summary["correlations"]["supernet"], summary["supernet"]
    checkpoint = Path(supernet["checkpoint"])
    assert checkpoint.parent == run_dir and checkpoint.name.startswith("supernet-")
    assert (supernet["epochs"], supernet["kernels"], supernet["steps"]) == (2, "separate", 8)  # 256 images / 64
    assert row["setup_seconds"] == pytest.approx(supernet["training_s"], abs=0.05)
    assert row["amortised_seconds"] == pytest.approx(row["seconds_per_candidate"] + row["setup_seconds"] / 1000)
    rows = list(csv.DictReader((run_dir / "proxy_check.csv").read_text().splitlines()))
    scores, reference = [float(r["supernet"]) for r in rows], [float(r["reference"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    expected = hand_kendall_tau_b(scores, reference)
    assert row["kendall_tau"] == (None if expected is None else round(expected, 4))
    assert row["kendall_p"] is None or 0.0 < row["kendall_p"] <= 1.0
    trained = checkpoint.stat().st_mtime_ns
    again = json.loads(invoke(*args).stdout)  # a rerun finds the supernet trained
    assert again["supernet"] == supernet and checkpoint.stat().st_mtime_ns == trained
    assert again["correlations"]["supernet"]["kendall_tau"] == row["kendall_tau"]


def test_proxy_check_prints_tables(tmp_path):
    result = invoke(*TINY_ARGS, "--proxy", "synflow", "--run-dir", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert "Kendall" in result.stdout and "params (baseline)" in result.stdout


def test_candidates_are_distinct_and_inside_the_band():
    space = load_space(TINY_SPACE)
    specs = draw_candidates(space, 5, 0.7e6, 1.3e6, seed=3)
    assert len({repr(s.stages) for s in specs}) == 5
    assert all(0.7e6 <= analytic_flops(s) <= 1.3e6 for s in specs)
    assert [s.stages for s in specs] == [s.stages for s in draw_candidates(space, 5, 0.7e6, 1.3e6, seed=3)]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    cases = [
        (["--target-flops", "400X"], "not a size"),
        (["--proxy", "magic"], "--proxy must be one of train, supernet, zero-cost, naswot, synflow, got 'magic'"),
        (["--supernet-epochs", "0"], "--supernet-epochs must be at least 1, got 0"),
        (["--supernet-kernels", "both"], "--supernet-kernels must be one of shared, separate, transformed, got 'both'"),
        (["--supernet-recipe", "bignas"], "--supernet-recipe must be one of uniform, sandwich, got 'bignas'"),
        (["--candidates", "2"], "--candidates must be at least 3, got 2"),
        (["--flops-tolerance", "1.5"], "--flops-tolerance must be below 1, got 1.5"),
        (["--target-flops", "1"], "which no network of the tiny space has"),
        # a target whose band's upper bound overflowed a float (found by the random-values test)
        (["--target-flops", "1.38e308"], "which no network of the tiny space has"),
        (["--target-flops", "142K", "--flops-tolerance", "0.0001"], "found only 0 distinct candidates"),
        (["--space", tmp_path / "none.yaml"], "no such search-space file"),
    ]
    for extra, message in cases:
        result = invoke(*TINY_ARGS, "--run-dir", tmp_path / "r", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output


# -- rank correlations ----------------------------------------------------------------------------


def test_kendall_and_spearman_against_hand_computed_values():
    # one adjacent swap of 4 items: 5 concordant and 1 discordant pair -> tau = (5 - 1) / 6;
    # rank differences 0, 1, 1, 0 -> rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]).statistic == pytest.approx(2 / 3)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]).statistic == pytest.approx(0.8)
    assert kendall([1, 2, 3], [30, 20, 10]).statistic == pytest.approx(-1.0)
    assert spearman([0.1, 0.5, 0.2], [10, 50, 20]).statistic == pytest.approx(1.0)


def test_p_values_against_hand_computed_values():
    # Kendall, exact: of the 24 orders of 4 items, 1 has no discordant pair and 3 have one, so
    # P(tau >= 2/3) = 4/24 and the two-sided p is 8/24 = 1/3.
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]).pvalue == pytest.approx(1 / 3)
    assert kendall([1, 2, 3, 4], [1, 2, 3, 4]).pvalue == pytest.approx(2 / 24)
    # Spearman, exact for few items: rho = 1 - sum(d^2) / 10 for 4 items, so |rho| >= 0.8 for the order itself and
    # its 3 adjacent swaps (sum 0 or 2) and for their 4 reverses (sum 20 or 18): p = 8/24. For 3 items in the same
    # order 2 of the 6 orders have |rho| = 1: p = 1/3 (the t distribution's approximation said 0.2 and 0).
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]).pvalue == pytest.approx(1 / 3)
    assert spearman([1, 2, 3], [10, 20, 30]).pvalue == pytest.approx(1 / 3)
    # from 9 items on, the t distribution with n - 2 degrees of freedom: for 9 items with one adjacent swap,
    # rho = 1 - 6 * 2 / (9 * 80) = 59/60, t = rho * sqrt(7 / (1 - rho^2)) = 14.3096, p = 2 P(T7 > t) = 1.936e-6
    assert spearman(list(range(9)), [0, 1, 2, 3, 5, 4, 6, 7, 8]).pvalue == pytest.approx(1.936e-6, rel=0.001)


def test_rank_correlation_of_a_constant_is_nan_and_bad_input_raises():
    assert all(math.isnan(v) for v in kendall([1, 1, 1], [1, 2, 3]))
    assert all(math.isnan(v) for v in spearman([1, 2, 3], [5, 5, 5]))
    with pytest.raises(ValueError, match="equal length"):
        kendall([1, 2], [1, 2, 3])
