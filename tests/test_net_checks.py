"""A spec built in Python is checked as a spec file is, and nas/net's public functions raise library errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.errors import InputError
from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.counting import count_flops
from effnet.nas.net.fold import fold_batch_norm
from effnet.nas.net.layout import plan_network
from effnet.nas.net.model import Block, build_model
from effnet.nas.net.spec import ACTIVATIONS, BatchNormSpec, HeadSpec, NetworkSpec, StageSpec, StemSpec
from effnet.nas.net.spec_file import dump_spec_text, load_spec, spec_from_dict, spec_to_dict
from effnet.scaling.compound import compound_scale

MBCONV = StageSpec(block="mbconv", repeats=1, kernel=3, stride=1, expand=1, out_channels=16)


def tiny(**changes) -> NetworkSpec:
    return NetworkSpec(**{"stages": (MBCONV,), "resolution": 32, "num_classes": 10, **changes})


def stage(**changes) -> StageSpec:
    return dataclasses.replace(MBCONV, **changes)


# Each bad value as a Python caller would write it, and the error the spec file's reader has always given for it
# (the field's path and the problem, worded by hand here).
BAD = {
    "kernel 4": (dict(stages=(stage(kernel=4),)), "stages[0].kernel: must be odd (3, 5, 7, ...), got 4"),
    "stride 3": (dict(stages=(MBCONV, stage(stride=3))), "stages[1].stride: must be 1 or 2, got 3"),
    "unknown block": (
        dict(stages=(stage(block="resnet"),)),
        "stages[0].block: must be one of mbconv, dsconv, conv; got 'resnet'",
    ),
    "expanding dsconv": (
        dict(stages=(stage(block="dsconv", expand=6),)),
        "stages[0].expand: must be 1 for a dsconv block (only mbconv expands), got 6",
    ),
    "no repeats": (dict(stages=(stage(repeats=0),)), "stages[0].repeats: must be at least 1, got 0"),
    "boolean channels": (
        dict(stages=(stage(out_channels=True),)),
        "stages[0].out_channels: must be an integer, got boolean True",
    ),
    "se_ratio 1": (dict(stages=(stage(se_ratio=1.0),)), "stages[0].se_ratio: must lie in [0.0, 1.0), got 1.0"),
    "skip yes": (
        dict(stages=(stage(skip="yes"),)),
        "stages[0].skip: must be true or false (the identity shortcut or none) or pool, got string 'yes'",
    ),
    "resolution 0": (dict(resolution=0), "spec.resolution: must be at least 1, got 0"),
    "huge resolution": (dict(resolution=10**8), "spec.resolution: must be at most 10,000,000, got 100000000"),
    "no classes": (dict(num_classes=0), "spec.num_classes: must be at least 1, got 0"),
    "string classes": (dict(num_classes="10"), "spec.num_classes: must be an integer, got string '10'"),
    "activation": (dict(activation="gelu"), "spec.activation: must be one of silu, relu, relu6, hardswish; got 'gelu'"),
    "padding": (dict(padding="valid"), "spec.padding: must be one of symmetric, same; got 'valid'"),
    "dropout 1": (dict(dropout=1.0), "spec.dropout: must lie in [0.0, 1.0), got 1.0"),
    "empty name": (dict(name=""), "spec.name: must be a non-empty string, got string ''"),
    "stem stride": (dict(stem=StemSpec(stride=3)), "stem.stride: must be 1 or 2, got 3"),
    "stem kernel": (dict(stem=StemSpec(kernel=2)), "stem.kernel: must be odd (3, 5, 7, ...), got 2"),
    "head": (dict(head=HeadSpec(out_channels=0)), "head.out_channels: must be at least 1, got 0"),
    "epsilon 0": (dict(batch_norm=BatchNormSpec(epsilon=0.0)), "batch_norm.epsilon: must lie in [1e-12, 1.0], got 0.0"),
    "decay nan": (
        dict(batch_norm=BatchNormSpec(decay=float("nan"))),
        "batch_norm.decay: must be a number, got number nan",
    ),
    "provenance": (dict(provenance=[1]), "spec.provenance: must be a mapping, got list"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_spec_built_in_python_is_refused_naming_the_field(case):
    changes, message = BAD[case]
    with pytest.raises(InputError) as raised:
        tiny(**changes)
    assert str(raised.value) == message


@pytest.mark.parametrize("case", [c for c in BAD if c not in ("provenance",)])
def test_the_reader_gives_the_same_error_after_the_file_name(case):
    """One home for the checks: a spec file with the same bad value fails with the same words, after its name."""
    changes, message = BAD[case]
    data = {**spec_to_dict(tiny()), **{key: _plain(value) for key, value in changes.items()}}
    with pytest.raises(InputError) as raised:
        spec_from_dict(data, "net.yaml")
    assert str(raised.value) == f"net.yaml: {message}"


def _plain(value):
    """A field's value as a spec file writes it (a part as a mapping, a stage tuple as a list of mappings)."""
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def test_replace_goes_through_the_checks():
    spec = tiny()
    with pytest.raises(InputError, match=r"^stages\[0\]\.kernel: must be odd"):
        spec.replace(stages=(stage(kernel=6),))
    with pytest.raises(InputError, match=r"^spec\.in_channels: must be at least 1, got 0"):
        dataclasses.replace(spec, in_channels=0)


def test_stages_must_be_a_non_empty_tuple_of_stages():
    with pytest.raises(InputError, match=r"spec\.stages: must be a non-empty tuple of StageSpec, got tuple"):
        tiny(stages=())
    with pytest.raises(InputError, match=r"spec\.stages\[0\]: must be a StageSpec, got dict"):
        tiny(stages=({"block": "mbconv"},))


def test_a_whole_number_is_kept_as_the_float_a_spec_file_gives():
    """`se_ratio: 0` read from a file has always become 0.0; the same spec built in Python dumps the same text."""
    built = tiny(stages=(stage(se_ratio=0),), dropout=0, batch_norm=BatchNormSpec(epsilon=1))
    assert (built.stages[0].se_ratio, built.dropout, built.batch_norm.epsilon) == (0.0, 0.0, 1.0)
    assert all(type(v) is float for v in (built.stages[0].se_ratio, built.dropout, built.batch_norm.epsilon))
    assert "se_ratio: 0.0" in dump_spec_text(built)


def test_compound_scaling_builds_its_specs_through_the_checks(b0_yaml):
    b0 = load_spec(b0_yaml)
    b1 = compound_scale(b0, 1.2, 1.1, 1.15, 1.0)
    # by hand: 224 * 1.15 = 257.6 -> 258 px; stage 2 of B0 (2 repeats, 24 channels): ceil(1.2 * 2) = 3 repeats,
    # 24 * 1.1 = 26.4 to the nearest multiple of 8 is 24 (not below 90 % of 26.4)
    assert (b1.resolution, b1.stages[1].repeats, b1.stages[1].out_channels) == (258, 3, 24)
    with pytest.raises(InputError, match=r"^stages\[0\]\.repeats: must be at most 10,000,000"):
        compound_scale(b0, 4.0, 1.0, 1.0, 30.0)


def test_an_unknown_block_string_is_refused_by_the_builder_naming_the_known_ones():
    """The builder maps block strings to layers; one it does not know is refused, not built as a plain conv."""
    spec = tiny()
    plan = plan_network(spec).blocks[0]._replace(block="resnet")
    with pytest.raises(InputError, match=r"unknown block 'resnet'; known blocks: mbconv, dsconv, conv"):
        Block(plan, spec)


def test_count_flops_refuses_an_unknown_method_with_an_input_error():
    with pytest.raises(InputError, match=r"method must be analytic or fvcore, got 'nope'"):
        count_flops(tiny(), method="nope")


def test_folding_a_network_with_a_loose_batch_norm_is_an_input_error():
    loose = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with pytest.raises(InputError, match=r"^1: a BatchNorm outside a conv-BN-activation layer cannot be folded"):
        fold_batch_norm(loose)


# torch's own names for the four activations (its documentation), not effnet's table read back
TORCH_ACTIVATIONS = {
    "silu": (nn.SiLU, F.silu),
    "relu": (nn.ReLU, F.relu),
    "relu6": (nn.ReLU6, F.relu6),
    "hardswish": (nn.Hardswish, F.hardswish),
}


def test_the_activation_table_covers_every_name_a_spec_takes():
    assert tuple(ACTIVATION_OPS) == ACTIVATIONS
    assert {name: (op.layer, op.function) for name, op in ACTIVATION_OPS.items()} == TORCH_ACTIVATIONS


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_the_builder_and_the_folded_network_apply_the_named_activation(name):
    torch.manual_seed(0)
    model = build_model(tiny(activation=name)).eval()
    layer = TORCH_ACTIVATIONS[name][0]
    assert type(model.stem[2]) is layer and {type(m) for m in model.modules()} >= {layer}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fold_batch_norm(model)(x), model(x), atol=1e-5)
