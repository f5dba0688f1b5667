"""`effnet export-model` and BatchNorm folding: the exported ONNX / TorchScript file run by onnxruntime / torch.jit
here (not by the exporter's own check) against the unfolded torch model at batch 1 and 3, for the reference B0 at
its initialisation and for a trained tiny checkpoint (its EMA weights, trained resolution and classes); an export
that computes another function fails with exit 1 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from effnet.nas.inputs import parse_yaml
from effnet.nas.net.fold import fold_batch_norm
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec, spec_from_dict
from effnet.scaling.presets import reference_b0

from test_train import TINY_SPEC as TRAIN_TINY_SPEC

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_SPEC = TRAIN_TINY_SPEC.replace("repeats: 2, kernel: 3", "repeats: 2, kernel: 5") + "padding: same\n"
"""test_train's tiny network with a 5x5 strided stage and TensorFlow's SAME padding (odd pixels padded after)."""
SHOW_TOLERANCE = 1e-4


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def images(batch: int, size: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(100 + batch))


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> dict:
    """Two epochs of the tiny SAME-padded spec on digits at 16 px: trained weights with logits of a real scale."""
    from typer.testing import CliRunner

    from effnet.cli.app import app

    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(root / "tiny.yaml"),
            "--resolution",
            "16",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--run-dir",
            str(root / "run"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return {"spec": root / "tiny.yaml", "checkpoint": root / "run" / "checkpoint.pt", "root": root}


def trained_model(checkpoint: Path) -> nn.Module:
    """The checkpoint's EMA model, read here with torch.load as the trainer wrote it."""
    state = torch.load(checkpoint, weights_only=True)
    model = build_model(spec_from_dict(parse_yaml(state["spec"], "checkpoint"))).eval()
    model.load_state_dict(state["ema"]["weights"])
    return model


def test_b0_exports_to_onnx_that_onnxruntime_runs_at_batch_1_and_3(cli, tmp_path, b0_yaml):
    out = tmp_path / "b0.onnx"
    result = cli("export-model", b0_yaml, "--format", "onnx", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["max_abs_diff"] <= SHOW_TOLERANCE and data["within_tolerance"] and data["batch_norm_folded"]
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named (dynamic) batch axis
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 224, 224]
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    torch.manual_seed(0)  # the command's seed 0: the same initialisation
    model = build_model(load_spec(b0_yaml)).eval()
    for batch in (1, 3):
        x = images(batch, 224)
        with torch.no_grad():
            expected = model(x)
        got = run_onnx(out, x)
        assert got.shape == (batch, 1000)
        assert relative_diff(got, expected) < SHOW_TOLERANCE


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_a_trained_checkpoint_exports_with_its_ema_weights_resolution_and_classes(cli, tiny_checkpoint, format):
    out = tiny_checkpoint["root"] / f"tiny.{format}"
    result = cli(
        "export-model",
        tiny_checkpoint["spec"],
        "--checkpoint",
        tiny_checkpoint["checkpoint"],
        "--weights",
        "ema",
        "--format",
        format,
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["resolution"], data["num_classes"], data["padding"]) == (16, 10, "same")
    assert "checkpoint EMA" in data["weights"] and data["max_abs_diff"] <= SHOW_TOLERANCE
    model = trained_model(tiny_checkpoint["checkpoint"])
    if format == "torchscript":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            loaded = torch.jit.load(str(out))
    for batch in (1, 3):
        x = images(batch, 16)
        with torch.no_grad():
            expected = model(x)
            got = run_onnx(out, x) if format == "onnx" else loaded(x)
        assert expected.abs().max() > 1.0  # trained logits, not the initialisation's near-zero ones
        assert relative_diff(got, expected) < SHOW_TOLERANCE


def test_an_export_of_another_function_fails_and_writes_nothing(cli, tmp_path, tiny_checkpoint, monkeypatch):
    """A folding that loses the SAME padding (the same weights, symmetric pads) must not pass the check."""
    from effnet.nas import export

    def wrong_fold(model):
        symmetric = build_model(model.spec.replace(padding="symmetric"))
        symmetric.load_state_dict(model.state_dict())
        return fold_batch_norm(symmetric)

    monkeypatch.setattr(export, "fold_batch_norm", wrong_fold)
    out = tmp_path / "tiny.onnx"
    result = cli(
        "export-model", tiny_checkpoint["spec"], "--checkpoint", tiny_checkpoint["checkpoint"], "--out", out, "--json"
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert not data["within_tolerance"] and data["max_abs_diff"] > data["tolerance"] and not data["written"]
    assert not out.exists()


def test_a_checkpoint_of_another_spec_is_refused_naming_the_field(cli, tmp_path, tiny_checkpoint):
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("kernel: 5", "kernel: 3"))
    result = cli("export-model", other, "--checkpoint", tiny_checkpoint["checkpoint"], "--out", tmp_path / "x.onnx")
    assert result.exit_code == 2, result.output
    assert "spec.stages[1].kernel is 3 here, 5 in the checkpoint" in result.stderr


def test_missing_onnx_packages_get_one_line_naming_the_extra(cli, tmp_path, b0_yaml, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    result = cli("export-model", b0_yaml, "--out", tmp_path / "b0.onnx")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: ONNX export needs onnxruntime, not installed; pip install 'effnet[onnx]'"


def test_unknown_format_is_worded_with_its_flag(cli, tmp_path, b0_yaml):
    result = cli("export-model", b0_yaml, "--format", "tflite", "--out", tmp_path / "b0.tflite")
    assert result.exit_code == 2 and "--format must be one of onnx, torchscript, timm, torchvision" in result.stderr


# -- folding ---------------------------------------------------------------------------------------


def with_trained_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm statistics and affine parameters away from their initial identity, so that folding them matters."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(0.3 + torch.rand(m.num_features, generator=generator))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=generator))
    return model.eval()


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_folded_b0_computes_the_eval_model_without_batch_norm(padding):
    torch.manual_seed(0)
    model = with_trained_statistics(build_model(reference_b0().replace(resolution=64, padding=padding)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random_state = torch.random.get_rng_state()
    folded = fold_batch_norm(model)
    assert torch.equal(torch.random.get_rng_state(), random_state)  # the caller's random stream untouched
    assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(p.requires_grad for p in folded.parameters()) and not any(m.training for m in folded.modules())
    x = images(3, 64)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert expected.abs().max() > 0.05
    assert relative_diff(got, expected) < 1e-5  # float32 rounding, not a different function
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model itself unchanged
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folding_a_batch_norm_the_wrong_way_would_be_seen():
    """The comparison above can fail: leaving one BatchNorm out of B0 moves the outputs far beyond 1e-5."""
    torch.manual_seed(0)
    model = with_trained_statistics(build_model(reference_b0().replace(resolution=64)))
    broken = fold_batch_norm(model)
    broken.stem[0].bias.data.zero_()  # the stem's BatchNorm shift dropped
    x = images(3, 64)
    with torch.no_grad():
        assert relative_diff(broken(x), model(x)) > 1e-3
