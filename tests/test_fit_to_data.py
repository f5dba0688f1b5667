"""Specs fitted to the data (class count, resolution) and signals that say when they are noise (chance level,
pruning held back until the proxy separates candidates, grid ties, members larger than the data's images)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.pruners import BasePruner
from PIL import Image
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.data.facts import ImageSize, data_facts, fitted_resolution
from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.job import SearchJob
from effnet.nas.search.pruning import ChanceGate
from effnet.nas.search.search import fitted_space
from effnet.nas.search.trial import reported_accuracy
from effnet.nas.space.load import load_space
from effnet.nas.study.chance import ChanceLevel, chance_level
from effnet.nas.study.opening import open_study
from effnet.nas.study.study_config import StudyConfig
from effnet.scaling import grid_study

from images import jpeg_folder
from postgres import TINY_BASE, TINY_SEARCH

runner = CliRunner()


def noise_folder(root: Path, classes: int = 3, per_class: int = 10, size: tuple[int, int] = (48, 40)) -> Path:
    """`root/<class>/i.jpg`: uniform noise of one size in every class, so no network can beat guessing."""
    rng = np.random.default_rng(7)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


def search(*args: str) -> dict:
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--trials", "2", "--loader-workers", "0", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def torch_params(spec) -> int:
    return sum(p.numel() for p in build_model(spec).parameters())


# -- specs fitted to the data -------------------------------------------------------------------------


def test_a_search_on_a_folder_writes_its_class_count_and_counts_that_head(tmp_path):
    """The tiny space's file says 4 classes; a 3-class folder makes every candidate and b0.yaml 3-way, and the
    parameters and FLOPs reported are the 3-way network's (torch's parameter count, fvcore's FLOPs)."""
    data = noise_folder(tmp_path / "data")
    summary = search("--data", str(data), "--run-dir", str(tmp_path / "run"))
    spec = load_spec(summary["best_spec"])
    assert spec.num_classes == 3 and summary["classes"] == 3
    assert build_model(spec).classifier.out_features == 3
    assert summary["params"] == torch_params(spec)
    assert summary["flops"] == fvcore_count(spec).total
    # a 4-way head (the space file's) would hold 32 + 1 more parameters: the 32-channel head's weights and a bias
    assert torch_params(spec.replace(num_classes=4)) - summary["params"] == 33
    # the chance level of a balanced 3-class split is 1/3, and noise images stay near it: a warning, everywhere
    assert summary["chance"]["chance"] == pytest.approx(1 / 3) and summary["chance"]["val_images"] == 6
    (warning,) = summary["warnings"]
    assert "of chance 0.3333" in warning and "--proxy-epochs" in warning
    run = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    assert warning in json.dumps(run)
    report = (tmp_path / "run" / "report.html").read_text()
    assert "chance level 0.3333" in report and "of chance 0.3333" in report  # the level, and the warning
    # the search recorded the folder's median image size (48 x 40) in b0's provenance: export-family warns from it
    family = runner.invoke(
        app,
        [
            "export-family",
            "--base",
            summary["best_spec"],
            "--alpha",
            "1.2",
            "--beta",
            "1.1",
            "--gamma",
            "1.15",
            "--phi",
            "2",
            "--run-dir",
            str(tmp_path / "family"),
            "--json",
        ],
    )
    assert family.exit_code == 0, family.output
    (too_large,) = json.loads(family.stdout)["warnings"]
    assert "b2 42 px (1.05x)" in too_large and "short side 40 px" in too_large  # round(32 * 1.15^2) = 42
    assert load_spec(tmp_path / "family" / "b2.yaml").num_classes == 3


def test_digits_and_synthetic_give_their_own_class_counts():
    assert data_facts("digits").classes == 10 and data_facts("synthetic").classes == 4
    assert data_facts("digits").image_size is None  # 8 px digits: the space's resolution, as before
    assert data_facts("synthetic").image_size.short_side == 32


def test_the_median_image_size_and_the_resolution_rule(tmp_path):
    folder = jpeg_folder(tmp_path / "data", classes=2, per_class=5, sizes=(20, 21))  # every image 20 x 20
    for i, (width, height) in enumerate([(320, 240), (320, 240), (320, 240), (64, 48)]):
        Image.new("RGB", (width, height)).save(folder / "class0" / f"big{i}.jpg")
    size = data_facts(str(folder)).image_size
    # 14 images: ten 20x20, three 320x240, one 64x48; the lower median of 14 widths is the 7th smallest
    assert (size.width, size.height, size.short_side, size.sampled) == (20, 20, 20, 14)
    assert fitted_resolution(224, ImageSize(320, 240, 240, 9)) == 224  # ImageNet-sized: the space's own
    assert fitted_resolution(224, ImageSize(200, 150, 150, 9)) == 144  # 150 rounded down to a multiple of 16
    assert fitted_resolution(224, ImageSize(20, 20, 20, 9)) == 32  # never below 32
    assert fitted_resolution(224, None) == 224


def test_resolution_sets_the_base_and_the_band_is_counted_there(tmp_path):
    summary = search("--resolution", "64", "--target-flops", "4M", "--run-dir", str(tmp_path))
    spec = load_spec(summary["best_spec"])
    assert spec.resolution == 64 and summary["resolution"] == 64
    assert 2.8e6 <= fvcore_count(spec).total == summary["flops"] <= 5.2e6
    assert analytic_cost(spec.replace(resolution=32)).flops < 2.8e6  # the same network at 32 px misses the band
    assert summary["data"]["resolution"] == 32  # the proxy keeps its own resolution


def test_a_resumed_study_refuses_other_classes_or_resolution(tmp_path):
    def open_with(**fit):
        config = SearchConfig(
            target_flops=1_000_000,
            flops_tolerance=0.3,
            space=TINY_SEARCH[1],
            **fit,
            proxy=ProxyConfig(data="synthetic"),
            study=StudyConfig(run_dir=tmp_path, name="search"),
        )
        return open_study(SearchJob(config, fitted_space(config)[0]), config.study)

    open_with()
    with pytest.raises(Exception, match="classes: 4 -> 5"):
        open_with(classes=5)
    with pytest.raises(Exception, match="resolution: 32 -> 40"):
        open_with(resolution=40)


# -- chance and pruning --------------------------------------------------------------------------------


def test_the_chance_level_and_its_margin_by_hand():
    balanced = chance_level(np.repeat(np.arange(5), 36), 5)  # 180 validation images, 5 classes
    assert balanced.chance == 0.2 and balanced.balanced
    assert balanced.margin == pytest.approx(3 * math.sqrt(0.2 * 0.8 / 180))
    assert balanced.near(0.28) and not balanced.near(0.30)
    skewed = chance_level(np.array([0] * 70 + [1] * 20 + [2] * 10), 3)
    assert skewed.chance == 0.7 and not skewed.balanced


def test_a_class_with_no_validation_image_is_counted_and_warned_of():
    every = chance_level(np.array([0, 0, 1, 2]), 3)
    assert every.unseen == 0 and every.unseen_warning() is None
    two_missing = chance_level(np.array([0, 0, 0]), 3)  # classes 1 and 2 held out no image
    assert two_missing.unseen == 2 and two_missing.record()["classes_without_val_images"] == 2
    assert "2 of the 3 classes have no image among the proxy's 3 validation images" in two_missing.unseen_warning()


def test_a_proxy_resolution_far_above_the_images_is_refused_before_any_cache(tmp_path):
    """Images of 24-40 px at 4096 px would cache 65 MiB an image; the limit the line names is itself accepted."""
    data = tmp_path / "data"
    jpeg_folder(data, classes=2, per_class=6, sizes=(24, 41))
    cache = tmp_path / "cache"

    def search(resolution: int | str, run: str):
        args = [*TINY_SEARCH, "--data", data, "--proxy-resolution", resolution, "--trials", 1, "--cache-dir", cache]
        return runner.invoke(app, ["search", *map(str, args), "--run-dir", str(tmp_path / run)])

    refused = search(4096, "r")
    assert refused.exit_code == 2, refused.output
    assert "--proxy-resolution is 4096 px" in refused.stderr and "use at most" in refused.stderr
    assert not cache.exists()
    at_most = int(refused.stderr.split("use at most ")[1].split()[0])
    accepted = search(at_most, "r2")
    assert accepted.exit_code == 0 and "--proxy-resolution is" not in accepted.stderr, accepted.output


def test_a_search_whose_held_out_split_misses_a_class_warns(tmp_path):
    """10 images of one class and 1 of the other: the held-out fifth draws per class in proportion, so it is all
    of the first class, and a proxy accuracy of 1.0 there says nothing of the second."""
    data = tmp_path / "data"
    jpeg_folder(data, classes=2, per_class=10)
    for extra in sorted((data / "class1").iterdir())[1:]:
        extra.unlink()
    result = runner.invoke(
        app, ["search", *TINY_SEARCH, "--data", str(data), "--trials", "1", "--run-dir", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["chance"]["classes_without_val_images"] == 1
    assert any("1 of the 2 classes have no image among the proxy's" in w for w in summary["warnings"])
    assert "1 of the 2 classes have no image among the proxy&#x27;s" in (tmp_path / "r" / "report.html").read_text()


class AlwaysPrune(BasePruner):
    def prune(self, study, trial):
        return True


TARGET = 1_000_000


def gated_study(chance: ChanceLevel, completed: list[tuple[float, int]]) -> optuna.Study:
    """A study whose pruner always wants to prune, behind the gate; `completed` trials as (accuracy, FLOPs),
    each reporting its reward at epoch 1."""
    accuracy = lambda trial, value: reported_accuracy("reward", "flops", TARGET, trial, value)  # noqa: E731
    study = optuna.create_study(direction="maximize", pruner=ChanceGate(AlwaysPrune(), chance, accuracy))
    for acc, flops in completed:
        reward = acc * (flops / TARGET) ** -0.07
        study.add_trial(
            optuna.trial.create_trial(value=reward, intermediate_values={1: reward}, user_attrs={"flops": flops})
        )
    return study


def should_prune(study: optuna.Study, accuracy: float, flops: int = TARGET) -> bool:
    trial = study.ask()
    trial.set_user_attr("flops", flops)
    trial.report(accuracy * (flops / TARGET) ** -0.07, 1)
    return trial.should_prune()


CHANCE = chance_level(np.repeat(np.arange(5), 36), 5)  # 0.2, margin 0.0894: threshold 0.2894


def test_no_pruning_before_three_candidates_completed():
    assert not should_prune(gated_study(CHANCE, [(0.9, TARGET), (0.9, TARGET)]), 0.2)
    assert should_prune(gated_study(CHANCE, [(0.9, TARGET)] * 3), 0.2)


def test_no_pruning_while_every_candidate_is_within_the_chance_margin():
    """The 5-class folder: after one epoch every candidate at 0.20-0.26, chance 0.20: nobody is pruned."""
    study = gated_study(CHANCE, [(0.22, TARGET), (0.26, TARGET), (0.24, TARGET)])
    assert not should_prune(study, 0.20)


def test_no_pruning_of_a_candidate_within_the_margin_of_the_best():
    study = gated_study(CHANCE, [(0.6, TARGET), (0.3, TARGET), (0.3, TARGET)])
    assert not should_prune(study, 0.55)  # 0.05 behind: within 0.0894
    assert should_prune(study, 0.45)


def test_the_gate_reads_accuracy_behind_the_reward():
    """A candidate at twice the target reports 0.30 * 2^-0.07 = 0.2858, under the threshold 0.2894 as a reward
    but over it as the accuracy 0.30 it is: that separates from chance, so a candidate at chance is pruned."""
    study = gated_study(CHANCE, [(0.30, 2 * TARGET), (0.21, TARGET), (0.21, TARGET)])
    assert should_prune(study, 0.15)


def test_the_search_gates_its_configured_pruners():
    config = SearchConfig(
        target_flops=TARGET,
        flops_tolerance=0.3,
        space=TINY_SEARCH[1],
        pruner="hyperband",
        proxy=ProxyConfig(data="synthetic", epochs=3),
    )
    pruner = SearchJob(config, load_space(config.space), CHANCE).make_pruner()
    assert isinstance(pruner, ChanceGate) and isinstance(pruner.pruner, optuna.pruners.HyperbandPruner)


# -- grid ties and the family's warnings ---------------------------------------------------------------


def test_a_tied_grid_says_so_in_coefficients_and_export_family(tmp_path, monkeypatch):
    monkeypatch.setattr(grid_study, "PointScorer", lambda proxy, runtime: lambda spec, resolution, seed: 0.40)
    grid = runner.invoke(
        app,
        [
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
            "--threads",
            "1",
            "--run-dir",
            str(tmp_path / "grid"),
        ],
    )
    assert grid.exit_code == 0, grid.output
    assert "tied with the runner-up" in " ".join(grid.output.split())
    record = yaml.safe_load((tmp_path / "grid" / "coefficients.yaml").read_text())
    assert record["tied_with_runner_up"] is True and record["runner_up"]["score"] == record["score"] == 0.40
    assert "tie goes to the lower measured FLOPs ratio" in record["tie_rule"]
    family = runner.invoke(
        app,
        [
            "export-family",
            "--base",
            TINY_BASE,
            "--coefficients",
            str(tmp_path / "grid" / "coefficients.yaml"),
            "--phi",
            "1",
            "--run-dir",
            str(tmp_path / "family"),
            "--json",
        ],
    )
    assert family.exit_code == 0, family.output
    warnings = json.loads(family.stdout)["warnings"]
    assert any("tied with the runner-up" in w for w in warnings)
    assert any(
        "tied with the runner-up" in w
        for w in yaml.safe_load((tmp_path / "family" / "run.yaml").read_text())["result"]["warnings"]
    )


def test_export_family_warns_of_members_larger_than_the_datas_images(tmp_path):
    data = noise_folder(tmp_path / "data", size=(48, 40))  # median short side 40 px
    family = runner.invoke(
        app,
        [
            "export-family",
            "--base",
            TINY_BASE,
            "--alpha",
            "1.2",
            "--beta",
            "1.1",
            "--gamma",
            "1.15",
            "--phi",
            "1,2",
            "--data",
            str(data),
            "--classes",
            "3",
            "--run-dir",
            str(tmp_path / "family"),
            "--json",
        ],
    )
    assert family.exit_code == 0, family.output
    out = json.loads(family.stdout)
    # tiny base 32 px: b1 round(32 * 1.15) = 37 px (under 40), b2 round(32 * 1.3225) = 42 px, 1.05x of 40
    (warning,) = out["warnings"]
    assert "b2 42 px (1.05x)" in warning and "b1" not in warning and "short side 40 px" in warning
    assert load_spec(tmp_path / "family" / "b2.yaml").num_classes == 3
    assert out["members"][1]["params"] == torch_params(load_spec(tmp_path / "family" / "b2.yaml"))


def test_grid_points_are_counted_for_the_given_class_count():
    from effnet.scaling.grid import class_note
    from effnet.scaling.grid_space import GridConfig, GridDefinition, point_spec

    grid = GridDefinition.from_ranges(alpha="1.2", beta="1.1", gamma="1.15", tolerance=0.2)
    config = GridConfig(base=load_spec(TINY_BASE), grid=grid, classes=3)
    (point,) = config.points()
    spec = point_spec(config.base, point.alpha, point.beta, point.gamma, 1)
    assert spec.num_classes == 3 and point.params == torch_params(spec)
    assert config.fingerprint()["classes"] == 3
    assert class_note(config, {16: {"classes": 3}}) == []
    (note,) = class_note(config, {16: {"classes": 5}})
    assert "has 3 classes and the data 5" in note and "--classes 5" in note


def test_a_grid_near_chance_is_a_caveat_and_a_hand_written_record_cannot_break_it():
    from effnet.scaling.caveats import grid_caveats

    (near,) = grid_caveats({"near_chance": True, "score": 0.26, "chance": CHANCE.record()})
    assert "best score 0.2600 is within 0.0894 of the proxy's chance level 0.2000" in near
    (tied,) = grid_caveats({"tied_with_runner_up": True, "runner_up": "not a mapping", "score": 0.4})
    assert "tied with the runner-up" in tied and "mean score 0.4000 each" in tied
    assert grid_caveats({"near_chance": False, "tied_with_runner_up": False}) == ()
    (unseen,) = grid_caveats({"chance": chance_level(np.array([0, 0, 0]), 3).record()})  # a grid's record as well
    assert "2 of the 3 classes have no image among the proxy's 3 validation images" in unseen


def test_a_grid_whose_proxy_resolution_is_far_above_the_images_is_refused_before_its_study(tmp_path):
    """As search: a proxy resolution over 8x the synthetic data's 32 px images, refused before the study."""
    args = ["grid-scale", "--base", TINY_BASE, "--proxy", "zero-cost", "--data", "synthetic", "--proxy-resolution"]
    args += ["300", "--alpha-range", "1.2", "--beta-range", "1.1", "--gamma-range", "1.15"]
    result = runner.invoke(app, [*map(str, args), "--run-dir", str(tmp_path / "grid")])
    assert result.exit_code == 2, result.output
    assert "--proxy-resolution is 300 px, 9x the data's median image short side (32 px)" in result.stderr
    assert not (tmp_path / "grid").exists()
