"""What a search space can reach: its FLOPs range and largest network, exact against enumerating every network."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.errors import InputError
from effnet.nas.net.limits import spec_cost
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space, space_from_dict
from effnet.nas.space.reach import space_reach

from postgres import TINY_SEARCH, TINY_SPACE
from random_specs import every_network

TINY = yaml.safe_load(Path(TINY_SPACE).read_text())
runner = CliRunner()


def network_costs(space: SearchSpace) -> list:
    """The costs of every distinct network of the space, by enumerating every decision."""
    return [spec_cost(spec) for spec in every_network(space)]


def small_space(seed: int) -> SearchSpace:
    """The tiny space with a random few options per decision: a few thousand networks at most."""
    rng = random.Random(seed)
    document = copy.deepcopy(TINY)
    pools = {
        "block": ["mbconv", "dsconv", "conv"],
        "expand": [1, 3, 6],
        "kernel": [1, 3, 5],
        "se_ratio": [0.0, 0.25, 0.5],
        "skip": [True, False],
        "width": [0.5, 0.75, 1.0, 1.5, 2.0],
        "repeats_offset": [0, 1, 2],
    }
    for stage in document["skeleton"]:
        stage["choices"] = {
            key: rng.sample(pool, rng.choice([1, 2]) if key != "width" else rng.choice([2, 3]))
            for key, pool in pools.items()
        }
    document["base"]["resolution"] = rng.choice([16, 32, 48])
    return space_from_dict(document, f"small-{seed}")


@pytest.mark.parametrize("seed", range(12))
def test_the_range_and_the_largest_network_match_enumerating_every_network(seed):
    space = small_space(seed)
    costs = network_costs(space)
    reach = space_reach(space)
    assert reach.min_flops == min(c.flops for c in costs)
    assert reach.max_flops == max(c.flops for c in costs)
    assert reach.largest.params == max(c.params for c in costs)
    assert reach.largest.activations == max(c.activations for c in costs)
    assert reach.largest.blocks == max(c.blocks for c in costs)


def test_the_shipped_spaces_reach_every_sampled_network():
    """Too large to enumerate (10^19 networks): every one of many random draws lies inside the range."""
    rng = random.Random(3)
    for name in ("efficientnet", "mnasnet"):
        space = load_space(name)
        reach = space_reach(space)
        for _ in range(300):
            cost = spec_cost(space.random_spec(rng))
            assert reach.min_flops <= cost.flops <= reach.max_flops and cost.params <= reach.largest.params


def test_a_space_whose_largest_network_is_over_the_limits_is_refused():
    document = copy.deepcopy(TINY)
    # the skeleton is small; its widest choice expands 32,000 channels six-fold and projects them to 48,000
    # channels in one 1x1 conv: 192,000 x 48,000 = 9.2e9 weights
    document["skeleton"][1]["choices"] = {"width": [1.0, 2000.0]}
    document["skeleton"][2]["choices"] = {"width": [1.0, 2000.0]}
    with pytest.raises(InputError, match="the space's largest network has .* parameters, over the limit of 2.00G"):
        space_from_dict(document, "wide.yaml")


@pytest.mark.parametrize("target", ["1", "1e30"])
def test_an_unreachable_target_is_refused_with_the_spaces_range(target, tmp_path, no_training):
    reach = space_reach(load_space(TINY_SPACE))
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--target-flops", target, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --target-flops asks for ") and "which no network of the tiny space has" in line
    assert f"they cost {reach.min_flops / 1e3:.1f}K–{reach.max_flops / 1e6:.1f}M FLOPs" in line
    assert not (tmp_path / "study.journal").exists()


def test_a_band_that_touches_the_range_is_searched(tmp_path, no_training):
    """The least network of the space at the band's top end: reachable, so the search starts (and the
    no_training fixture stops it when it does)."""
    reach = space_reach(load_space(TINY_SPACE))
    target = math.ceil(reach.min_flops / 1.3)
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--target-flops", str(target), "--run-dir", str(tmp_path)])
    assert "a worker started" in repr(result.exception)


def test_proxy_check_refuses_an_unreachable_band(tmp_path):
    result = runner.invoke(
        app,
        [
            "proxy-check",
            "--space",
            TINY_SPACE,
            "--target-flops",
            "1e30",
            "--data",
            "synthetic",
            "--run-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "which no network of the tiny space has" in result.output
