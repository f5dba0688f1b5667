"""`effnet export-family` end to end: files, JSON, the official preset, and clean errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.model import build_model, count_parameters
from effnet.nas.net.spec_file import load_spec
from effnet.scaling.presets import official_preset

PAPER_FLAGS = ["--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15"]
B0_PATH = str(Path(__file__).resolve().parents[1] / "configs" / "efficientnet-b0.yaml")
B0_FVCORE_FLOPS = 399_352_864
B2_PARAMS = 9_109_994


def invoke(*args: str):
    return CliRunner().invoke(app, ["export-family", *args])


def run_json(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def paper_family(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("family")
    data = run_json("--base", B0_PATH, *PAPER_FLAGS, "--run-dir", str(run_dir))
    return run_dir, data


def test_writes_b1_to_b7_with_growing_flops(paper_family):
    run_dir, data = paper_family
    members = data["members"]
    assert [m["name"] for m in members] == [f"b{i}" for i in range(1, 8)]
    assert [m["phi"] for m in members] == [float(i) for i in range(1, 8)]
    flops = [m["flops"] for m in members]
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False))
    for m in members:
        assert m["path"] == str(run_dir / f"{m['name']}.yaml")
        spec = load_spec(m["path"])
        assert analytic_flops(spec) == m["flops"]
        assert spec.provenance["phi"] == m["phi"] and spec.provenance["alpha"] == 1.2
        assert m["ideal_ratio"] == pytest.approx(1.92027 ** m["phi"])
        assert m["flops_ratio"] == pytest.approx(m["flops"] / B0_FVCORE_FLOPS)
    assert [m["dropout"] for m in members] == [0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]
    # phi = 1: B2's network (9,109,994 parameters) at 258 px, about 2.55x B0 (see test_family for the hand count).
    assert members[0]["params"] == B2_PARAMS and members[0]["resolution"] == 258
    assert 2.54 < members[0]["flops_ratio"] < 2.57
    for name in ("family.csv", "family.png", "run.yaml"):
        assert (run_dir / name).stat().st_size > 0
    with open(run_dir / "family.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["flops"]) for r in rows] == flops
    record = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert record["command"] == "export-family"  # the run record every command writes
    assert set(record["versions"]) >= {"effnet", "torch", "optuna"}
    assert record["settings"]["gamma"] == 1.15 and record["settings"]["mode"] == "compound"
    assert record["result"]["members"] == [f"b{k}" for k in range(1, 8)]


def test_every_member_builds_and_fvcore_agrees_on_b1_to_b3(paper_family):
    run_dir, data = paper_family
    for m in data["members"]:
        spec = load_spec(m["path"])
        model = build_model(spec)
        assert count_parameters(model) == m["params"]
        if m["name"] in ("b1", "b2", "b3"):
            assert fvcore_count(spec, model).total == m["flops"]


def test_table_shows_measured_beside_ideal(tmp_path):
    result = invoke(*PAPER_FLAGS, "--phi", "1,2", "--run-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "2.55x" in result.stdout and "1.92x" in result.stdout and "b2" in result.stdout


def test_match_flops_hits_every_ladder_step(tmp_path):
    data = run_json(*PAPER_FLAGS, "--match-flops", "--run-dir", str(tmp_path))
    assert data["mode"] == "match-flops"
    for k, m in enumerate(data["members"], start=1):
        assert m["name"] == f"b{k}" and m["step"] == k
        assert m["target_flops"] == round(2**k * B0_FVCORE_FLOPS)
        assert abs(m["flops"] / m["target_flops"] - 1) <= 0.05
        assert m["within_tolerance"] is True and m["why"] is None
        assert load_spec(m["path"]).provenance["phi"] == m["phi"]


def test_match_flops_reports_why_a_step_is_out_of_reach(tmp_path):
    result = invoke(*PAPER_FLAGS, "--match-flops", "--phi", "0.1,1", "--run-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "no network within 5% of 1.072x B0" in result.stdout
    with open(tmp_path / "family.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert "16 to 23 blocks" in rows["b0p1"]["why"] and rows["b0p1"]["within_tolerance"] == "False"
    assert rows["b1"]["why"] == ""


def test_preset_official_reproduces_the_presets(tmp_path):
    data = run_json("--preset", "official", "--run-dir", str(tmp_path))
    assert [m["name"] for m in data["members"]] == [f"b{i}" for i in range(1, 8)]
    for m in data["members"]:
        assert load_spec(m["path"]) == official_preset(m["name"])
    assert data["coefficients"]["source"] == "the paper's (none given)"
    fit = {f["name"]: f for f in data["official_fit"]}
    assert fit["b2"]["phi"] == pytest.approx(1.0, abs=0.03)
    assert (tmp_path / "official_fit.csv").exists()


def test_a_second_family_into_the_same_run_directory_leaves_none_of_the_first_behind(tmp_path):
    """The official B1-B7 first, then a two-member family with other coefficients: b3-b7 and official_fit.csv of
    the first would describe a family the directory no longer holds (train b5.yaml: a member of which family?).
    They go, said once; a file of the user's put there in between stays."""
    run_json("--preset", "official", "--run-dir", str(tmp_path))
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke("--base", B0_PATH, *PAPER_FLAGS, "--phi", "1,2", "--run-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["removed"] == [*(f"b{i}.yaml" for i in range(3, 8)), "official_fit.csv"]
    assert "removed b3.yaml, b4.yaml" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "b1.yaml",
        "b2.yaml",
        "family.csv",
        "family.png",
        "notes.txt",
        "run.yaml",
    ]
    assert load_spec(tmp_path / "b2.yaml").provenance["phi"] == 2  # the new family's, not the official B2


def test_coefficients_file(tmp_path):
    path = tmp_path / "coefficients.yaml"
    path.write_text("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\nscores: []\n")
    data = run_json("--coefficients", str(path), "--phi", "1", "--run-dir", str(tmp_path / "run"))
    assert data["members"][0]["params"] == B2_PARAMS
    assert data["coefficients"]["source"] == str(path)


@pytest.mark.parametrize(
    "record, warning",
    [
        (
            "complete: false\nevaluations_done: 4\nevaluations_total: 38\n",
            "the coefficients come from an incomplete grid (4 of 38 evaluations done)",
        ),
        (
            "complete: false\npoints_scored: 4\npoints_total: 63\n",  # a record written before grids shared twins
            "the coefficients come from an incomplete grid (4 of 63 points done)",
        ),
        (
            "complete: true\nwithin_noise: true\nmargin_sd: 0.4\nrepeats: 3\n",
            "the grid's choice is within noise: the best network leads the runner-up by 0.40 standard deviations",
        ),
    ],
)
def test_a_partial_grid_or_a_choice_within_noise_is_warned_and_recorded(tmp_path, record, warning):
    path = tmp_path / "coefficients.yaml"
    path.write_text("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\n" + record)
    result = invoke("--coefficients", str(path), "--phi", "1", "--run-dir", str(tmp_path / "run"), "--json")
    assert result.exit_code == 0, result.output
    (recorded,) = json.loads(result.stdout)["warnings"]
    assert recorded.startswith(warning)
    assert f"warning: {warning}" in " ".join(result.stderr.split())
    assert yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["result"]["warnings"] == [recorded]


def test_complete_coefficients_or_flags_give_no_warning(tmp_path, paper_family):
    path = tmp_path / "coefficients.yaml"
    path.write_text("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\ncomplete: true\nwithin_noise: false\n")
    assert run_json("--coefficients", str(path), "--phi", "1", "--run-dir", str(tmp_path / "run"))["warnings"] == []
    assert paper_family[1]["warnings"] == []


def write(tmp_path, text: str) -> str:
    path = tmp_path / "coefficients.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "{tmp}/missing.yaml", *PAPER_FLAGS], "no such spec file"),
        (["--base", "{tmp}/missing.yaml"], "no such spec file"),  # the base first, before the missing coefficients
        (["--coefficients", "{tmp}/missing.yaml"], "no such coefficients file"),
        (["--coefficients", "{bad_yaml}"], "YAML syntax error"),
        (["--coefficients", "{no_gamma}"], "missing key 'gamma'"),
        (["--alpha", "0.9", "--beta", "1.1", "--gamma", "1.15"], "alpha must be at least 1"),
        (["--alpha", "1.2", "--beta", "1.1"], "--gamma missing"),
        ([], "no scaling coefficients"),
        ([*PAPER_FLAGS, "--phi", "0"], "every phi must be a positive number"),
        ([*PAPER_FLAGS, "--phi=1,-2"], "every phi must be a positive number"),
        ([*PAPER_FLAGS, "--phi", "1,two,3"], "'two' is not a number"),
        ([*PAPER_FLAGS, "--preset", "tf"], "the only preset is 'official'"),
        (["--preset", "official", "--match-flops"], "drop --phi and --match-flops"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, args, message):
    files = {"tmp": str(tmp_path), "bad_yaml": write(tmp_path, "alpha: [1.2\n")}
    files["no_gamma"] = str(tmp_path / "no_gamma.yaml")
    (tmp_path / "no_gamma.yaml").write_text("alpha: 1.2\nbeta: 1.1\n")
    result = invoke(*[a.format(**files) for a in args], "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
