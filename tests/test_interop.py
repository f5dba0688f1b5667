"""Weights both ways between effnet and timm's / torchvision's EfficientNet: their models built at random
initialisation (BatchNorm statistics and affine parameters drawn too, so every layer matters), their weights
loaded into the matching spec by name and the outputs compared with theirs (identical in float32 eval), and
effnet's weights saved as a state dict their models load with strict=True. The spec takes the BatchNorm epsilon
each library's model itself uses, read from that model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm
import torch
import torchvision
from torch import nn

from effnet.nas.net.model import build_model
from effnet.nas.net.spec import BatchNormSpec, NetworkSpec
from effnet.nas.training.weights import load_weights, read_weights, save_state_dict
from effnet.scaling.presets import official_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (library, their model, effnet preset, padding): B0 and a larger member from both, and TensorFlow-ported weights
MODELS = [
    ("timm", "efficientnet_b0", "b0", "symmetric"),
    ("timm", "efficientnet_b3", "b3", "symmetric"),
    ("torchvision", "efficientnet_b0", "b0", "symmetric"),
    ("torchvision", "efficientnet_b2", "b2", "symmetric"),
    ("timm", "tf_efficientnet_b0", "b0", "same"),
]
SIZES = (64, 67)
"""An even and an odd input size: SAME padding puts the odd pixel differently on each."""


def their_model(library: str, name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(name) if library == "timm" else getattr(torchvision.models, name)(weights=None)
    randomize_batch_norm(model, seed)
    return model.eval()


def randomize_batch_norm(model: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters away from their initial 0 / 1, so a BatchNorm mapped to the wrong
    layer, or left out, changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))


def matching_spec(model: nn.Module, preset: str, padding: str) -> NetworkSpec:
    eps = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(eps) == 1
    return official_preset(preset).replace(padding=padding, batch_norm=BatchNormSpec(epsilon=eps.pop()))


def outputs(model: nn.Module, size: int) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("library,name,preset,padding", MODELS, ids=[m[1] + "-" + m[0] for m in MODELS])
def test_their_weights_give_their_outputs_in_the_matching_spec(tmp_path, library, name, preset, padding):
    theirs = their_model(library, name, seed=1)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    weights = read_weights(path)
    assert weights.library == library
    ours = build_model(matching_spec(theirs, preset, padding)).eval()
    layers = load_weights(ours, weights)
    assert layers.not_loaded == ()
    for size in SIZES:
        expected = outputs(theirs, size)
        assert expected.abs().max() > 0.05  # logits of a size where a wrong layer shows
        assert torch.equal(outputs(ours, size), expected)


@pytest.mark.parametrize("library,name,preset,padding", MODELS, ids=[m[1] + "-" + m[0] for m in MODELS])
def test_effnet_weights_load_strictly_into_their_model(tmp_path, library, name, preset, padding):
    theirs = their_model(library, name, seed=2)
    torch.manual_seed(3)
    ours = build_model(matching_spec(theirs, preset, padding)).eval()
    randomize_batch_norm(ours, 3)
    path = save_state_dict(ours, library, tmp_path / "state.pth")
    theirs.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for size in SIZES:
        assert torch.equal(outputs(theirs, size), outputs(ours, size))


def test_tf_weights_need_same_padding(tmp_path):
    """The same TensorFlow-ported weights in a symmetric spec compute another function: SAME is what makes them
    fit. Compared on the features (the head's output), which carry the input; at random initialisation the
    classifier's bias dominates the logits. Symmetric padding moves them by about a tenth of their norm here,
    six orders of magnitude above float32 rounding."""
    theirs = their_model("timm", "tf_efficientnet_b0", seed=4)
    torch.save(theirs.state_dict(), tmp_path / "tf.pth")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    features = {}
    for padding in ("same", "symmetric"):
        ours = build_model(matching_spec(theirs, "b0", padding)).eval()
        load_weights(ours, read_weights(tmp_path / "tf.pth"))
        with torch.no_grad():
            features[padding] = ours.features(x)
    with torch.no_grad():
        expected = theirs.forward_features(x)
    assert torch.equal(features["same"], expected)
    assert (features["symmetric"] - expected).norm() > 0.01 * expected.norm()


def test_weights_of_another_member_are_refused_at_the_first_differing_layer(cli, tmp_path, b0_yaml):
    """B1's first stage repeats its block twice (B0's once): timm's blocks.0.1 is the first layer B0 lacks."""
    torch.save(timm.create_model("efficientnet_b1").state_dict(), tmp_path / "b1.pth")
    result = cli("export-model", b0_yaml, "--checkpoint", tmp_path / "b1.pth", "--out", tmp_path / "b0.onnx")
    assert result.exit_code == 2, result.output
    assert "first differing layer blocks.0.1.conv_dw: is in the file but not in the spec" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "b0.onnx").exists()


def test_a_wider_stem_is_named_with_both_shapes(tmp_path):
    torch.save(torchvision.models.efficientnet_b3(weights=None).state_dict(), tmp_path / "b3.pth")
    with pytest.raises(
        Exception,
        match=r"first differing layer features\.0\.0: weight is \[40, 3, 3, 3\] in the "
        r"file, \[32, 3, 3, 3\] in the spec \(stem\.0\.weight\)",
    ):
        load_weights(build_model(official_preset("b0")), read_weights(tmp_path / "b3.pth"))


def test_a_spec_their_efficientnet_cannot_express_is_refused(tmp_path):
    torch.save(timm.create_model("efficientnet_b0").state_dict(), tmp_path / "b0.pth")
    spec = official_preset("b0")
    dsconv = spec.replace(stages=(dataclasses.replace(spec.stages[0], block="dsconv"), *spec.stages[1:]))
    with pytest.raises(Exception, match="stage 1 of 'efficientnet-b0' is a dsconv block: timm's EfficientNet"):
        load_weights(build_model(dsconv), read_weights(tmp_path / "b0.pth"))


def test_a_timm_training_checkpoint_gives_its_ema_weights(tmp_path):
    raw, ema = their_model("timm", "efficientnet_b0", seed=6), their_model("timm", "efficientnet_b0", seed=7)
    torch.save({"epoch": 3, "state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()}, tmp_path / "t.pth")
    weights = read_weights(tmp_path / "t.pth")
    assert weights.library == "timm"
    assert torch.equal(weights.state["conv_stem.weight"], ema.state_dict()["conv_stem.weight"])
    assert not torch.equal(weights.state["conv_stem.weight"], raw.state_dict()["conv_stem.weight"])


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a torch file", "not a readable weights file"),
        (b"hello\n", "not a readable weights file"),  # torch's unpickler answers these two with KeyError, IndexError
        (b"abc", "not a readable weights file"),
        (b"", "not a readable weights file"),
        (None, "a state dict of none of effnet, timm or torchvision"),
    ],
)
def test_foreign_files_are_refused_cleanly(cli, tmp_path, b0_yaml, content, message):
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save({"encoder.weight": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    result = cli("export-model", b0_yaml, "--checkpoint", path, "--out", tmp_path / "b0.onnx")
    assert result.exit_code == 2 and message in result.stderr and "\n" not in result.stderr.strip()


def test_export_model_writes_a_timm_state_dict(cli, tmp_path):
    """The reverse from the command line: `--format timm` for timm's model of the same spec."""
    theirs = their_model("timm", "efficientnet_b0", seed=5)
    spec_path = tmp_path / "b0.yaml"
    from effnet.nas.net.spec_file import dump_spec

    dump_spec(matching_spec(theirs, "b0", "symmetric").replace(resolution=64), spec_path)
    result = cli("export-model", spec_path, "--format", "timm", "--out", tmp_path / "timm.pth", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff"] == 0.0
    theirs.load_state_dict(torch.load(tmp_path / "timm.pth", weights_only=True), strict=True)
