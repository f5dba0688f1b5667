"""`effnet describe`: JSON and table output for a spec file and the official presets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from refusals import refusal_stdout_is_right

FVCORE_OPERATORS = {"conv", "batch_norm", "adaptive_avg_pool2d", "linear"}


def describe_json(cli, *args) -> dict:
    result = cli("describe", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout


def test_b0_json(cli, b0_yaml):
    data = describe_json(cli, b0_yaml)
    assert data["params"] == 5_288_548
    assert data["flops"] == 399_352_864
    assert data["flops_by_operator"] == {
        "conv": 384_534_752,
        "batch_norm": 13_475_392,
        "adaptive_avg_pool2d": 62_720,
        "linear": 1_280_000,
    }
    assert data["resolution"] == 224
    stages = data["stages"]
    assert len(stages) == 7
    assert [s["out_channels"] for s in stages] == [16, 24, 40, 80, 112, 192, 320]
    assert [s["in_channels"] for s in stages] == [32, 16, 24, 40, 80, 112, 192]
    # 224 / 2 (stem) = 112, then strides 1, 2, 2, 2, 1, 2, 1
    assert [s["out_size"] for s in stages] == [112, 56, 28, 14, 14, 7, 7]
    parts = [data["stem"], *stages, data["head"]]
    assert sum(p["params"] for p in parts) == data["params"]
    assert sum(p["flops"] for p in parts) == data["flops"]
    assert "fvcore" not in data


def test_b0_json_with_fvcore(cli, b0_yaml, one_torch_thread):
    data = describe_json(cli, b0_yaml, "--fvcore")
    assert set(data["fvcore"]["flops_by_operator"]) == FVCORE_OPERATORS
    assert data["fvcore"]["flops"] == 399_352_864
    assert data["fvcore"]["matches_analytic"] is True


def test_b0_table_with_fvcore(cli, b0_yaml, one_torch_thread):
    result = cli("describe", b0_yaml, "--fvcore")
    assert result.exit_code == 0, result.output
    assert "efficientnet-b0 @ 224 px, 1000 classes" in result.stdout
    assert result.stdout.count("399,352,864") == 2  # the analytic and the fvcore column
    assert "agree exactly" in result.stdout
    assert result.stderr == ""


def test_preset_json(cli):
    data = describe_json(cli, "--preset", "b2")
    assert data["params"] == 9_109_994
    assert data["resolution"] == 260
    assert data["name"] == "efficientnet-b2"
    assert set(data["flops_by_operator"]) == FVCORE_OPERATORS


def test_preset_table(cli):
    result = cli("describe", "--preset", "b7")
    assert result.exit_code == 0, result.output
    assert "efficientnet-b7 @ 600 px, 1000 classes" in result.stdout
    assert "38,326,538,880" in result.stdout


def test_file_and_preset_together_is_an_error(cli, b0_yaml):
    result = cli("describe", b0_yaml, "--preset", "b1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--preset" in result.stderr
    refusal_stdout_is_right(result)


def test_neither_file_nor_preset_is_an_error(cli):
    result = cli("describe")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--preset" in result.stderr


def test_unknown_preset(cli):
    result = cli("describe", "--preset", "b8", "--json")
    assert result.exit_code == 2
    assert "'b8'" in result.stderr and "b7" in result.stderr
    refusal_stdout_is_right(result)


@pytest.mark.slow
def test_console_script_keeps_fvcore_warnings_away(b0_yaml):
    """fvcore's import warns from its own modules; a user of `effnet describe --fvcore` sees none of it."""
    effnet = Path(sys.executable).with_name("effnet")
    done = subprocess.run(
        [str(effnet), "describe", str(b0_yaml), "--fvcore", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["fvcore"]["flops"] == 399_352_864


def test_same_padding_is_described_with_the_same_counts(cli, b0_yaml, tmp_path):
    """SAME padding changes no output size, so describe counts exactly what it counts for symmetric B0 above."""
    same = tmp_path / "b0-same.yaml"
    same.write_text(b0_yaml.read_text() + "padding: same\n")
    data = describe_json(cli, same)
    assert data["padding"] == "same" and describe_json(cli, b0_yaml)["padding"] == "symmetric"
    assert (data["params"], data["flops"]) == (5_288_548, 399_352_864)
    table = cli("describe", same)
    assert table.exit_code == 0 and "TensorFlow SAME padding" in table.stdout
