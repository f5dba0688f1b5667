"""`effnet train --init`: a run that starts from a timm state dict or an effnet checkpoint, the classifier replaced
where the class count differs, and the layers loaded and not loaded in run.yaml."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app

B0_ARGS = [
    "--data",
    "digits",
    "--resolution",
    "32",
    "--batch-size",
    "64",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--precise-bn",
    "2",
]
"""B0 on digits at 32 px, the smallest size its 32x downsampling reaches: one epoch of 22 steps."""


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    yield


def train(*args):
    return CliRunner().invoke(app, ["train", *(str(a) for a in args)])


@pytest.fixture(scope="module")
def timm_b0(tmp_path_factory):
    """timm's efficientnet_b0 at its random initialisation (1000 classes), saved as a state dict."""
    torch.manual_seed(11)
    path = tmp_path_factory.mktemp("timm") / "efficientnet_b0.pth"
    torch.save(timm.create_model("efficientnet_b0").state_dict(), path)
    return path


def test_init_from_timm_replaces_the_classifier_and_records_the_layers(tmp_path, b0_yaml, timm_b0):
    """With a learning rate of 1e-12 one epoch leaves the weights where they started: the checkpoint's stem is
    timm's, its classifier is new (10 digits, not 1000)."""
    result = train(b0_yaml, *B0_ARGS, "--lr", "1e-12", "--init", timm_b0, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["init"]
    assert (summary["library"], summary["weights"], summary["layers_not_loaded"]) == (
        "timm",
        "state dict",
        ["classifier"],
    )
    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["settings"]["init"]
    theirs = torch.load(timm_b0, weights_only=True)
    layers_with_tensors = {key.rpartition(".")[0] for key in theirs}
    assert record["not_loaded"] == ["classifier"]
    assert set(record["loaded"]) | {"classifier"} == {
        k.rpartition(".")[0] for k in torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    }
    assert len(record["loaded"]) == len(layers_with_tensors) - 1  # every one of timm's layers but its classifier
    model = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert torch.allclose(model["stem.0.weight"], theirs["conv_stem.weight"], atol=1e-6)
    assert torch.allclose(model["blocks.15.layers.3.0.weight"], theirs["blocks.6.0.conv_pwl.weight"], atol=1e-6)
    assert model["classifier.weight"].shape == (10, 1280)


def test_init_from_an_effnet_checkpoint_loads_every_layer(tmp_path, b0_yaml):
    first = train(b0_yaml, *B0_ARGS, "--run-dir", tmp_path / "first", "--json")
    assert first.exit_code == 0, first.output
    second = train(
        b0_yaml, *B0_ARGS, "--init", tmp_path / "first" / "checkpoint.pt", "--run-dir", tmp_path / "second", "--json"
    )
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)["init"]
    assert (summary["library"], summary["weights"], summary["layers_not_loaded"]) == ("effnet", "checkpoint EMA", [])
    recorded = yaml.safe_load((tmp_path / "second" / "run.yaml").read_text())["settings"]["init"]
    resumed = train(b0_yaml, *B0_ARGS, "--epochs", "2", "--resume", "--run-dir", tmp_path / "second", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["init"] == summary  # a resumed run still says what it started from
    assert yaml.safe_load((tmp_path / "second" / "run.yaml").read_text())["settings"]["init"] == recorded


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--resume"], "--init starts a new run from weights"),
        (["--resolution", "32"], "first differing layer blocks.0.1.conv_dw"),
    ],
)
def test_init_refusals_are_one_line(tmp_path, b0_yaml, extra, message):
    torch.save(timm.create_model("efficientnet_b1").state_dict(), tmp_path / "b1.pth")
    result = train(b0_yaml, "--init", tmp_path / "b1.pth", *extra, "--run-dir", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run" / "run.yaml").exists()
