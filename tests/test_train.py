"""`effnet train`: the paper's recipe, real accuracy on the embedded digits, exact resume, clean errors."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.data.loader import EpochSampler
from effnet.nas.data.sources import training_data
from effnet.nas.errors import InputError
from effnet.nas.inputs import parse_yaml
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec, spec_from_dict
from effnet.nas.training.distributed import Distributed, distributed_from_env
from effnet.nas.training.ema import WeightEma
from effnet.nas.training.job import TrainConfig
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.recipe import Recipe, lr_multiplier, make_optimizer, paper_lr
from effnet.nas.training.trainer import train_network, training_spec

TINY_SPEC = """\
name: tiny
resolution: 224
num_classes: 1000
stem: {out_channels: 8, kernel: 3, stride: 2}
stages:
- {block: mbconv, repeats: 1, kernel: 3, stride: 1, expand: 1, out_channels: 8}
- {block: mbconv, repeats: 2, kernel: 3, stride: 2, expand: 3, out_channels: 16}
head: {out_channels: 32}
"""
"""Two stages, 4x downsampling, 5,018 parameters with 10 classes, the reference's BatchNorm decay 0.99.
With the moving statistics alone (--precise-bn 0) its 88 steps evaluated at chance (0.10)."""

TRAIN_ARGS = ["--resolution", "16", "--batch-size", "64", "--warmup-epochs", "1", "--device", "cpu", "--seed", "0"]
"""Digits at 16 px: 1,437 training images, 22 steps of 64 per epoch."""

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, ["train", *(str(a) for a in args)])


def metrics_without_time(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 5k-parameter net gains nothing from a second thread, and OpenMP's barriers stall on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread) -> dict[str, object]:
    """A 4-epoch run, and the same run stopped after 2 epochs and resumed to 4 (a copy kept at 2)."""
    root = tmp_path_factory.mktemp("train")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    whole = invoke(spec, *TRAIN_ARGS, "--epochs", 4, "--run-dir", root / "whole", "--json")
    assert whole.exit_code == 0, whole.output
    first = invoke(spec, *TRAIN_ARGS, "--epochs", 2, "--run-dir", root / "resumed", "--json")
    assert first.exit_code == 0, first.output
    shutil.copytree(root / "resumed", root / "at-epoch-2")
    resumed = invoke(spec, *TRAIN_ARGS, "--epochs", 4, "--run-dir", root / "resumed", "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    return {
        "root": root,
        "spec": spec,
        "whole": json.loads(whole.stdout),
        "first": json.loads(first.stdout),
        "resumed": json.loads(resumed.stdout),
        "whole_progress": whole.stderr,
    }


def test_compile_flag_compiles_the_training_module_only(tmp_path, monkeypatch, one_thread):
    """--compile hands the training module to torch.compile; without the flag nothing is compiled, and the
    run's results are the same either way. The compile is real (TorchDynamo captures the graphs) but uses
    its `eager` backend: inductor's code generation takes a minute on CPU."""
    compiled = []
    real_compile = torch.compile

    def record(module, *args, **kwargs):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", record)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    plain = invoke(spec, *TRAIN_ARGS, "--epochs", 1, "--run-dir", tmp_path / "plain", "--json")
    assert plain.exit_code == 0, plain.output
    assert compiled == []
    with_flag = invoke(spec, *TRAIN_ARGS, "--epochs", 1, "--run-dir", tmp_path / "compiled", "--compile", "--json")
    assert with_flag.exit_code == 0, with_flag.output
    assert len(compiled) == 1 and isinstance(compiled[0], nn.Module)
    assert sum(p.numel() for p in compiled[0].parameters()) == 5_018
    first, second = json.loads(plain.stdout), json.loads(with_flag.stdout)
    assert (second["top1"], second["ema_top1"]) == (first["top1"], first["ema_top1"])


# -- the recipe ------------------------------------------------------------------------------------


def test_learning_rate_follows_the_papers_batch_rule():
    assert paper_lr(4096) == pytest.approx(0.256)
    assert paper_lr(64) == pytest.approx(0.004)  # 0.256 * 64 / 4096
    assert paper_lr(256) == pytest.approx(0.016)  # the TensorFlow reference's base rate per 256 images


def test_schedule_warms_up_linearly_then_decays_097_every_24_epochs():
    steps_per_epoch = 10
    warmup, decay = 5 * steps_per_epoch, 24  # 5 warm-up epochs; 2.4 epochs per decay step
    assert lr_multiplier(0, warmup, decay, 0.97) == pytest.approx(1 / 50)
    assert lr_multiplier(24, warmup, decay, 0.97) == pytest.approx(25 / 50)
    assert lr_multiplier(49, warmup, decay, 0.97) == pytest.approx(1.0)
    assert lr_multiplier(50, warmup, decay, 0.97) == pytest.approx(0.97**2)  # floor(50 / 24) = 2 decays
    assert lr_multiplier(72, warmup, decay, 0.97) == pytest.approx(0.97**3)
    assert lr_multiplier(3500, warmup, decay, 0.97) == pytest.approx(0.97**145)  # end of 350 epochs


def test_rmsprop_maps_tensorflows_epsilon_and_spares_batchnorm_from_weight_decay():
    spec = training_spec(spec_from_dict(parse_yaml(TINY_SPEC, "tiny"), "tiny"), training_data("digits", 16, 0), 16)
    model = build_model(spec)
    recipe = Recipe(data="digits", resolution=16, epochs=1, batch_size=64, lr=0.004, warmup_epochs=0)
    optimizer = make_optimizer(model, recipe)
    decayed, free = optimizer.param_groups
    assert optimizer.defaults["alpha"] == 0.9 and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["eps"] == pytest.approx(math.sqrt(1e-3))
    assert decayed["weight_decay"] == 1e-5 and free["weight_decay"] == 0.0
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    # stem 1 + block 1 (dw, project) 2 + blocks 2-3 (expand, dw, project) 3 each + head 1 = 10 layers
    assert len(batch_norms) == 10
    assert len(free["params"]) == 2 * len(batch_norms)


def test_first_rmsprop_step_is_tensorflows_within_the_epsilon_mapping():
    """TF: ms = 0.9 * 1 + 0.1 * g**2; step = lr * g / sqrt(ms + 1e-3) (ms starts at 1, eps inside the root)."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()  # weight decay then adds nothing to the gradient
    recipe = Recipe(data="digits", resolution=16, epochs=1, batch_size=64, lr=0.01, warmup_epochs=0)
    optimizer = make_optimizer(model, recipe)
    model.weight.grad = torch.full_like(model.weight, 0.1)
    optimizer.step()
    tensorflow_step = 0.01 * 0.1 / math.sqrt(0.9 + 0.1 * 0.1**2 + 1e-3)  # 1.0529e-3
    assert -model.weight.item() == pytest.approx(tensorflow_step, rel=0.05)


def test_ema_warms_its_decay_up_as_tensorflow_does():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEma(model, decay=0.9999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9999, 1/10) = 0.1: 0.1 * 0 + 0.9 * 1
    assert ema.average.weight.item() == pytest.approx(0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)  # decay 2/11: 2/11 * 0.9 + 9/11 * 2
    assert ema.average.weight.item() == pytest.approx(2 / 11 * 0.9 + 9 / 11 * 2)


def test_precise_batchnorm_statistics_are_the_plain_average_over_the_batches():
    layer = nn.BatchNorm2d(2)
    model = nn.Sequential(nn.Conv2d(2, 2, 1), layer, nn.Dropout(0.5))
    generator = torch.Generator().manual_seed(0)
    images = 3.0 + 2.0 * torch.randn(12, 2, 3, 3, generator=generator)
    with torch.no_grad():
        features = model[0](images)
    recompute_batch_norm(model, images.split(4), torch.device("cpu"))
    batches = features.split(4)
    assert torch.allclose(layer.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    expected_var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(layer.running_var, expected_var, atol=1e-5)
    assert layer.momentum == 0.1 and not model.training


def test_torchrun_environment_is_read_and_checked():
    assert distributed_from_env({}) == Distributed()
    assert distributed_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Distributed(3, 4, 1)
    with pytest.raises(InputError, match="inconsistent"):
        distributed_from_env({"RANK": "4", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})


def test_processes_share_each_global_batch_without_overlap():
    """Two processes with batches of 32 together train on exactly the global batches of 64 one process would."""

    def order(rank: int, world: int) -> list[int]:
        sampler = EpochSampler(256, seed=0, shuffle=True, rank=rank, world=world, even=True)
        sampler.set_epoch(3)
        return [index for _, _, index in sampler]

    whole, halves = order(0, 1), [order(rank, 2) for rank in (0, 1)]
    for step in range(4):
        shared = halves[0][step * 32 : (step + 1) * 32] + halves[1][step * 32 : (step + 1) * 32]
        assert sorted(shared) == sorted(whole[step * 64 : (step + 1) * 64])


# -- training through the CLI ------------------------------------------------------------------------


def test_progress_under_json_is_one_plain_line_per_epoch_on_stderr(runs):
    lines = re.findall(r"^\[\d+:\d\d:\d\d\] train (\d+)/88 epoch (\d)/4(.*)$", runs["whole_progress"], re.M)
    assert [(int(steps), int(epoch)) for steps, epoch, _ in lines] == [(0, 1), (22, 1), (44, 2), (66, 3), (88, 4)]
    assert all("top-1" in rest and "loss" in rest for _, _, rest in lines[1:])  # each finished epoch's figures
    assert "━" not in runs["whole_progress"]


def test_training_reports_the_run_then_every_step_and_each_epochs_record(tmp_path, one_thread):
    """`on_progress` gets the run described first, then every step counted against all the steps (digits at 16 px:
    1,437 training images, 22 steps of 64 per epoch, 44 in two), and each epoch's record as the `metrics` of the
    event that ends it."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    events = []
    result = train_network(
        TrainConfig(
            spec=load_spec(spec),
            resolution=16,
            epochs=2,
            batch_size=64,
            warmup_epochs=1,
            precise_bn=1,
            device="cpu",
            run_dir=tmp_path / "run",
        ),
        on_progress=events.append,
    )
    described, *rest = events
    assert described.preparing and described.status.startswith("tiny @ 16 px on digits (1437 train, 360 val images")
    counted = [(e.done, e.status) for e in rest if e.metrics is None]
    assert counted == [(step, "epoch 1/2") for step in range(23)] + [(step, "epoch 2/2") for step in range(22, 45)]
    assert {e.total for e in rest} == {44} and not any(e.preparing for e in rest)
    ends = [e for e in rest if e.metrics is not None]
    assert [(e.done, e.status) for e in ends] == [(22, "epoch 1/2"), (44, "epoch 2/2")]
    assert [dict(e.metrics) for e in ends] == result.history
    assert set(result.history[0]) == {"epoch", "train_loss", "val_top1", "ema_val_top1", "lr", "seconds"}


def test_tiny_spec_learns_digits_well_above_chance(runs):
    result = runs["whole"]
    assert result["num_classes"] == 10 and result["resolution"] == 16 and result["epochs"] == 4
    assert result["lr"] == pytest.approx(0.004)
    # 10 classes: chance is 0.10; seeds 0-3 measured 0.88-0.90 raw and 0.875-0.906 EMA
    assert result["top1"] > 0.7
    assert result["ema_top1"] > 0.7
    assert result["best_top1"] >= max(result["top1"], result["ema_top1"])
    rows = metrics_without_time(Path(result["metrics_csv"]))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_resumed_run_matches_the_uninterrupted_run_exactly(runs):
    whole, resumed = runs["whole"], runs["resumed"]
    assert runs["first"]["epochs"] == 2 and resumed["resumed_from"] == 2 and resumed["epochs"] == 4
    for key in ("top1", "ema_top1", "best_top1", "best_epoch"):
        assert resumed[key] == whole[key], key
    assert metrics_without_time(Path(resumed["metrics_csv"])) == metrics_without_time(Path(whole["metrics_csv"]))
    a = torch.load(whole["checkpoint"], weights_only=True)
    b = torch.load(resumed["checkpoint"], weights_only=True)
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key


def test_checkpoint_loads_with_weights_only_and_holds_the_run(runs):
    path = Path(runs["whole"]["checkpoint"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["epoch"] == 4
    assert state["settings"]["batch_size"] == 64 and state["settings"]["epochs"] == 4
    assert state["scheduler"]["last_epoch"] == 4 * 22
    model = build_model(training_spec(load_spec(runs["spec"]), training_data("digits", 16, 0), 16))
    model.load_state_dict(state["model"])
    model.load_state_dict(state["ema"]["weights"])
    assert len(state["history"]) == 4
    assert not list(path.parent.glob(".checkpoint.pt.*"))  # no temporary file left behind


def test_best_checkpoint_holds_the_best_epoch_with_the_digits_record(runs):
    """best.pt is the epoch whose raw or EMA accuracy (in metrics.csv, raw first on a tie) first reached the
    run's best, without optimizer state; the resumed run's is the uninterrupted run's, tensor for tensor."""
    run_dir = Path(runs["whole"]["run_dir"])
    best_epoch, best_weights, best_top1 = 0, "", -1.0
    for row in metrics_without_time(run_dir / "metrics.csv"):
        for weights, column in (("raw", "val_top1"), ("ema", "ema_val_top1")):
            if float(row[column]) > best_top1:
                best_epoch, best_weights, best_top1 = int(row["epoch"]), weights, float(row[column])
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    assert (best["epoch"], best["best"]["epoch"], best["best"]["weights"]) == (best_epoch, best_epoch, best_weights)
    assert "optimizer" not in best and "scheduler" not in best
    assert best["classes"] == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] and best["resolution"] == 16
    # the 8 x 8 digits are resized whole to 16 x 16, bilinearly, as training evaluated them
    assert best["transform"] == {
        "resize": 16,
        "crop": 16,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    resumed = torch.load(Path(runs["resumed"]["run_dir"]) / "best.pt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == best_epoch
    assert all(torch.equal(resumed["model"][k], v) for k, v in best["model"].items())


def test_run_directory_holds_metrics_and_run_record(runs):
    run_dir = Path(runs["whole"]["run_dir"])
    with (run_dir / "metrics.csv").open() as fh:
        assert fh.readline().strip() == "epoch,train_loss,val_top1,ema_val_top1,lr,seconds"
    record = (run_dir / "run.yaml").read_text()
    assert "command: train" in record and "num_classes: 10" in record


def test_resuming_a_finished_run_reports_it_without_training(runs, tmp_path):
    run_dir = shutil.copytree(runs["whole"]["run_dir"], tmp_path / "finished")
    again = invoke(runs["spec"], *TRAIN_ARGS, "--epochs", 4, "--run-dir", run_dir, "--resume", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["top1"] == runs["whole"]["top1"]


# -- bad input ------------------------------------------------------------------------------------------


def copy_of_epoch_2(runs, name: str) -> Path:
    target = runs["root"] / name
    shutil.copytree(runs["root"] / "at-epoch-2", target)
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (["--lr", "0.01"], "--lr was 0.004"),
        (["--batch-size", "32"], "--batch-size was 64"),
        (["--seed", "1"], "--seed was 0"),
        (["--resolution", "24"], "--resolution was 16"),
        # other data change the spec's classes too; the data are what to name ("a different spec" blamed the spec)
        (["--data", "synthetic"], "--data was digits"),
    ],
)
def test_resume_with_other_settings_is_refused(runs, change, message):
    run_dir = copy_of_epoch_2(runs, f"mismatch{change[0]}")
    args = dict(zip(TRAIN_ARGS[::2], TRAIN_ARGS[1::2], strict=True))
    args.update(dict(zip(change[::2], change[1::2], strict=True)))
    flat = [x for pair in args.items() for x in pair]
    result = invoke(runs["spec"], *flat, "--epochs", 4, "--run-dir", run_dir, "--resume")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert "choose another run directory" in result.stderr
    assert message in result.stderr


def test_resume_with_another_spec_is_refused(runs, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("out_channels: 32", "out_channels: 40"))
    run_dir = copy_of_epoch_2(runs, "other-spec")
    result = invoke(other, *TRAIN_ARGS, "--epochs", 4, "--run-dir", run_dir, "--resume")
    assert result.exit_code == 2
    assert "different spec" in result.stderr


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint_is_a_clean_error(runs, tmp_path, content):
    (tmp_path / "checkpoint.pt").write_bytes(content)
    result = invoke(runs["spec"], *TRAIN_ARGS, "--run-dir", tmp_path, "--resume")
    assert result.exit_code == 2, result.output
    assert "not a readable checkpoint" in result.stderr and "Traceback" not in result.output


def test_foreign_pickle_is_refused_by_weights_only(runs, tmp_path):
    torch.save({"format": "effnet-train-checkpoint", "version": 1, "payload": Path("x")}, tmp_path / "checkpoint.pt")
    result = invoke(runs["spec"], *TRAIN_ARGS, "--run-dir", tmp_path, "--resume")
    assert result.exit_code == 2
    assert "not a readable checkpoint" in result.stderr


def test_checkpoint_with_weights_of_another_shape_is_refused(runs):
    run_dir = copy_of_epoch_2(runs, "tampered")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["model"]["classifier.weight"] = torch.zeros(3, 3)
    torch.save(state, run_dir / "checkpoint.pt")
    result = invoke(runs["spec"], *TRAIN_ARGS, "--epochs", 4, "--run-dir", run_dir, "--resume")
    assert result.exit_code == 2, result.output
    assert "tensor 'classifier.weight' has shape [3, 3], the model's [10, 32]" in result.stderr


def test_fresh_run_never_overwrites_a_checkpoint(runs):
    run_dir = copy_of_epoch_2(runs, "no-overwrite")
    before = (run_dir / "checkpoint.pt").read_bytes()
    result = invoke(runs["spec"], *TRAIN_ARGS, "--epochs", 1, "--run-dir", run_dir)
    assert result.exit_code == 2
    assert "holds an earlier run's checkpoint; resume it" in result.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_resume_asking_fewer_epochs_than_trained_is_refused(runs):
    run_dir = copy_of_epoch_2(runs, "fewer")
    result = invoke(runs["spec"], *TRAIN_ARGS, "--epochs", 1, "--run-dir", run_dir, "--resume")
    assert result.exit_code == 2
    assert "--epochs must be 2 or more" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.yaml"], "no such spec file"),
        (["{spec}", "--data", "{root}/no-such-folder"], "no such data folder"),
        (["{spec}", "--resume"], "no checkpoint to resume from"),
        (["{spec}", "--resolution", "2"], "cannot be reached by the strides"),
        (["{spec}", "--batch-size", "5000"], "exceeds the 1437 training images"),
        (["{spec}", "--epochs", "0"], "--epochs must be at least 1"),
        (["{spec}", "--lr", "-1"], "--lr must be above 0, got -1"),
        (["{spec}", "--device", "tpu"], "--device 'tpu': unknown device"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(runs, tmp_path, args, message):
    filled = [a.format(spec=runs["spec"], root=runs["root"]) for a in args]
    resolution = [] if "--resolution" in filled else ["--resolution", "16"]
    result = invoke(*filled, *resolution, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output


def test_a_spec_for_other_input_channels_is_told_it_is_changed_to_the_datas(tmp_path):
    """Like the class count, the input channels follow the data (three for digits); the change is said."""
    spec = tmp_path / "grey.yaml"
    spec.write_text(TINY_SPEC.replace("num_classes: 1000\n", "num_classes: 1000\nin_channels: 1\n"))
    result = invoke(spec, *TRAIN_ARGS, "--epochs", 1, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    progress = " ".join(result.stderr.split())
    assert "in_channels 1 → 3 from the data" in progress and "num_classes 1000 → 10 from the data" in progress
