"""What a spec may cost: limits checked from the spec alone, before anything is allocated."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import torch
from torch import nn

from effnet.nas.errors import InputError
from effnet.nas.net import limits
from effnet.nas.net.limits import activation_count, check_memory, spec_cost
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec, spec_from_dict, spec_to_dict
from effnet.scaling.presets import reference_b0

from postgres import TINY_BASE


def conv_outputs(spec) -> int:
    """Values every convolution of the built model writes for one image (forward hooks; squeeze-excitation
    convs, which see a 1x1 pooled map, left out, as the counter leaves them)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if inputs[0].shape[-1] > 1:
            total += output.numel()

    model = build_model(spec).eval()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize(
    "changes", [{}, {"resolution": 64}, {"block": "dsconv"}, {"block": "conv"}], ids=["tiny", "64px", "dsconv", "conv"]
)
def test_the_feature_map_count_is_what_the_model_writes(changes):
    spec = load_spec(TINY_BASE)
    if "block" in changes:
        spec = spec.replace(
            stages=tuple(s.__class__(**{**s.__dict__, "block": changes["block"], "expand": 1}) for s in spec.stages)
        )
    spec = spec.replace(resolution=changes.get("resolution", spec.resolution))
    assert activation_count(spec) == conv_outputs(spec)


def dict_with(**changes):
    data = spec_to_dict(reference_b0())
    stage = changes.pop("stage", None)
    if stage:
        data["stages"][0] = {**data["stages"][0], **stage}
    return {**data, **changes}


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(stage={"repeats": 5_000_000}), "blocks, over the limit of 10.0K"),
        (dict(resolution=100_000), "FLOPs per image, over the limit of 10.00T"),
        (dict(head={"out_channels": 1_000_000}, num_classes=10_000), "parameters, over the limit of 2.00G"),
        (
            dict(
                resolution=30_000,
                in_channels=1,
                num_classes=2,
                stem={"out_channels": 8, "kernel": 1, "stride": 1},
                stages=[{"block": "conv", "repeats": 1, "kernel": 1, "stride": 1, "expand": 1, "out_channels": 8}],
                head={"out_channels": 8},
            ),
            "feature-map values per image, over the limit of 10.00G",
        ),
    ],
    ids=["repeats", "resolution", "params", "activations"],
)
def test_a_spec_over_a_limit_is_refused_before_anything_is_built(changes, words):
    """Each field is within its own bound; together they would ask for tens of GB or more."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InputError, match=f"^big.yaml: spec: the network has [0-9.]+[KMGT]? {words}; "):
            spec_from_dict(dict_with(**changes), "big.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1
    # counted per stage, not per block or layer: a plan object for each of 5,000,000 blocks would take ~GBs
    assert peak < 10 * 2**20, f"{peak / 2**20:.0f} MiB of Python objects allocated before the refusal"


def test_the_limits_sit_far_above_the_largest_official_network():
    from effnet.scaling.presets import official_preset

    b7 = spec_cost(official_preset("b7"))
    assert b7.blocks * 100 < limits.MAX_BLOCKS and b7.params * 20 < limits.MAX_PARAMS
    assert b7.flops * 100 < limits.MAX_FLOPS and b7.activations * 30 < limits.MAX_ACTIVATIONS


def test_building_a_network_the_free_memory_cannot_hold_is_refused(monkeypatch):
    spec = reference_b0()
    needed = 4 * (5_288_548 + activation_count(spec))  # the parameters by the reference implementations' count
    monkeypatch.setattr(limits, "available_memory", lambda: needed - 1)
    with pytest.raises(InputError, match=r"needs about 0\.\d GiB .* and 0\.\d GiB is free"):
        check_memory(spec, "count it with fvcore")
    monkeypatch.setattr(limits, "available_memory", lambda: needed)
    check_memory(spec, "count it with fvcore")


def test_describe_with_fvcore_refuses_a_network_too_big_for_the_memory(cli, b0_yaml, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 2**20)
    result = cli("describe", b0_yaml, "--fvcore")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: efficientnet-b0: to count it with fvcore the network needs about")
