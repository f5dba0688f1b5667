"""The supernet: every candidate of a search space in one network, sharing weights.

Per stage as many layers as its deepest choice; per layer the ops its block-type choices run on, at the
stage's largest width (`supernet_ops`): `separate`, one op with weights of its own per block type and expand
ratio (conv, dsconv, mbconv1, mbconv3, ...); `nested` (Once-for-All's elastic expand), one op for mbconv's
expand ratios above 1, each taking the leading channels of the largest one's expansion, one for the blocks
without an expansion (dsconv and mbconv at expand 1: the same depthwise and projection shapes; the two differ
by the activation after the projection), and one for `conv`, which nests in nothing. Where ops are nested, a
layer that can keep its identity shortcut (all but a stage's first) starts with its last BatchNorm's scale at
zero (Goyal et al.'s zero-gamma), so that every path starts as the same shallow network and its layers grow
from there. Kernel choices share an op's weights by centre slicing, with OFA's transformation matrices or
without, or keep their own (`supernet_kernels`); width choices take the leading channels (of this stage's
output and of the next stage's input), repeats choices the first layers of the stage, and SE and skip choices
switch their branch on or off. The stem, head and classifier are the space's own, with the head taking the last
stage's leading channels.

A path is a spec of the space. `forward(x, spec)` runs its network; `state_for(spec)` gives its weights
as the builder's network of that spec holds them, and `standalone(spec)` builds that network with them:
the inherited network is the stand-alone network, so a candidate is scored by the same code as anywhere.
Shapes, shortcuts and drop rates come from the builder's plan (`plan_network`), so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas import checks
from effnet.nas.errors import InputError
from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.layout import BlockPlan, plan_network, se_channels
from effnet.nas.net.model import DropPath, Network, build_model
from effnet.nas.net.rounding import round_filters
from effnet.nas.net.spec import POOL_SKIP, NetworkSpec
from effnet.nas.proxies.config import OP_SHARING
from effnet.nas.proxies.elastic import KERNEL_SHARING, ConvBN, SqueezeExcite
from effnet.nas.space.choices import SearchSpace, StageChoices

Unit = tuple[ConvBN | SqueezeExcite, tuple[int, ...], bool]
"""One layer of a block as the builder orders them: the module, its shape arguments, an activation after it."""


def op_key(block: str, expand: int, ops: str) -> str:
    """The layer's op a block type runs on: its own per expand ratio (`separate`); or (`nested`) `mbconv` for
    every expand ratio above 1, `mbconv1` for the blocks without an expansion (mbconv at 1, dsconv), `conv`.
    (On measurement, an expand-1 block slicing the expanded op's depthwise conv, which then filters the
    block's input where it otherwise filters the expansion, kept the supernet from learning.)"""
    if ops == "nested":
        if block == "dsconv" or (block == "mbconv" and expand == 1):
            return "mbconv1"
        return block
    return f"mbconv{expand}" if block == "mbconv" else block


class Op(nn.Module):
    """The weights of one layer's block type at the largest shapes: conv; dsconv; mbconv with one expand ratio,
    or (nested: built at the largest ratio) every ratio above 1 sliced from it. It runs the block type of the
    plan it is given: one built for dsconv or expand-1 mbconv runs both."""

    def __init__(
        self,
        block: str,
        expand: int,
        in_max: int,
        out_max: int,
        choices: StageChoices,
        stride: int,
        base: NetworkSpec,
        kernel_sharing: str,
    ):
        super().__init__()
        bn, kernels, sharing = base.batch_norm, choices.kernel, kernel_sharing
        reduced = se_channels(in_max, max(choices.se_ratio))
        self.block = block
        self.expand = self.project = self.conv = self.se = None
        if block == "mbconv":
            mid = in_max * expand
            if expand != 1:
                self.expand = ConvBN(in_max, mid, (1,), 1, bn)
            self.depthwise = ConvBN(
                mid, mid, kernels, stride, bn, depthwise=True, sharing=sharing, padding=base.padding
            )
            self.project = ConvBN(mid, out_max, (1,), 1, bn)
            gated = mid
        elif block == "dsconv":
            self.depthwise = ConvBN(
                in_max, in_max, kernels, stride, bn, depthwise=True, sharing=sharing, padding=base.padding
            )
            self.project = ConvBN(in_max, out_max, (1,), 1, bn)
            gated = in_max
        else:
            self.conv = ConvBN(in_max, out_max, kernels, stride, bn, sharing=sharing, padding=base.padding)
            gated = out_max
        if reduced:
            self.se = SqueezeExcite(gated, reduced, base.activation)

    def units(self, p: BlockPlan) -> list[Unit]:
        """The builder's layers of `Block` for the plan, in its order."""
        gated = {"mbconv": p.mid_channels, "dsconv": p.in_channels}.get(p.block, p.out_channels)
        se: list[Unit] = []
        if p.se_channels:
            assert self.se is not None  # built where the space offers squeeze-excitation, the only paths with it
            se = [(self.se, (gated, p.se_channels), False)]
        if p.block == "mbconv":
            assert self.project is not None
            expand: list[Unit] = []
            if p.mid_channels != p.in_channels:  # expand ratio 1 has no expansion
                assert self.expand is not None
                expand = [(self.expand, (p.in_channels, p.mid_channels, 1), True)]
            return [
                *expand,
                (self.depthwise, (p.mid_channels, p.mid_channels, p.kernel), True),
                *se,
                (self.project, (p.mid_channels, p.out_channels, 1), False),
            ]
        if p.block == "dsconv":
            assert self.project is not None
            return [
                (self.depthwise, (p.in_channels, p.in_channels, p.kernel), True),
                *se,
                (self.project, (p.in_channels, p.out_channels, 1), True),
            ]
        assert self.conv is not None
        return [(self.conv, (p.in_channels, p.out_channels, p.kernel), True), *se]


class Layer(nn.Module):
    """One layer of a stage: an op per block-type choice, the pooling shortcut's projection (the stage's first
    layer, where `pool` is a choice) and stochastic depth."""

    def __init__(
        self,
        choices: StageChoices,
        first: bool,
        in_max: int,
        out_max: int,
        base: NetworkSpec,
        kernel_sharing: str,
        ops: str = "separate",
    ):
        super().__init__()
        stride = choices.stride if first else 1
        self.ops_sharing = ops
        built: dict[str, Op] = {}
        for block in choices.block:
            for expand in choices.expand if block == "mbconv" else (1,):
                key = op_key(block, expand, ops)
                if key == "mbconv" and ops == "nested":  # built at the largest expand ratio, the others sliced
                    expand = max(choices.expand)
                if key not in built:
                    built[key] = Op(block, expand, in_max, out_max, choices, stride, base, kernel_sharing)
        if ops == "nested" and not first:
            for op in built.values():
                last = op.conv if op.block == "conv" else op.project
                assert last is not None
                nn.init.zeros_(last.bn.weight)
        self.ops = nn.ModuleDict(built)
        pooled = first and POOL_SKIP in choices.skip
        self.project = ConvBN(in_max, out_max, (1,), 1, base.batch_norm) if pooled else None
        self.drop_path = DropPath(0.0)
        self.act = ACTIVATION_OPS[base.activation].function

    def units(self, p: BlockPlan) -> list[Unit]:
        op = self.ops[op_key(p.block, p.mid_channels // p.in_channels, self.ops_sharing)]
        assert isinstance(op, Op)
        return op.units(p)

    def forward(self, x: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        branch = x
        for module, shape, act in self.units(p):
            branch = module(branch, *shape)
            if act:
                branch = self.act(branch)
        if not p.residual:
            return branch
        shortcut = x
        if p.pool_shortcut:
            shortcut = F.avg_pool2d(shortcut, 2, 2, ceil_mode=True, count_include_pad=False)
        if p.project_shortcut:
            assert self.project is not None  # a stage's first layer where pooling is a choice: the only projecting one
            shortcut = self.project(shortcut, p.in_channels, p.out_channels, 1)
        self.drop_path.drop_rate = p.drop_rate
        return self.drop_path(shortcut, branch)

    def state(self, prefix: str, p: BlockPlan) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for index, (module, shape, _) in enumerate(self.units(p)):
            state.update(module.state(f"{prefix}.layers.{index}", *shape))
        if p.project_shortcut:  # after the pooling, where the block pools
            assert self.project is not None
            state.update(
                self.project.state(f"{prefix}.shortcut.{int(p.pool_shortcut)}", p.in_channels, p.out_channels, 1)
            )
        return state


class Supernet(nn.Module):
    """Every path of `space` at `resolution` px with `num_classes` outputs; `kernels` is one of
    `elastic.KERNEL_SHARING` (`shared`, `separate`, `transformed`), `ops` `separate` or `nested`."""

    def __init__(
        self,
        space: SearchSpace,
        resolution: int,
        num_classes: int,
        in_channels: int = 3,
        kernels: str = "shared",
        ops: str = "separate",
    ):
        super().__init__()
        checks.choice("supernet_kernels", kernels, KERNEL_SHARING)
        checks.choice("supernet_ops", ops, OP_SHARING)
        self.space = space
        self.base = base = space.base.replace(resolution=resolution, num_classes=num_classes, in_channels=in_channels)
        bn = base.batch_norm
        self.stem = ConvBN(
            in_channels, base.stem.out_channels, (base.stem.kernel,), base.stem.stride, bn, padding=base.padding
        )
        in_max, stages = base.stem.out_channels, []
        for choices in space.stages:
            out_max = max(round_filters(choices.out_channels, w) for w in choices.width)
            depth = choices.repeats + max(choices.repeats_offset)
            stages.append(
                nn.ModuleList(
                    Layer(choices, i == 0, out_max if i else in_max, out_max, base, kernels, ops) for i in range(depth)
                )
            )
            in_max = out_max
        self.stages = nn.ModuleList(stages)
        self.head = ConvBN(in_max, base.head.out_channels, (1,), 1, bn)
        self.classifier = nn.Linear(base.head.out_channels, num_classes)
        bound = 1.0 / num_classes**0.5  # the reference's classifier initialisation
        nn.init.uniform_(self.classifier.weight, -bound, bound)
        nn.init.zeros_(self.classifier.bias)
        self.act = ACTIVATION_OPS[base.activation].function

    def network(self, spec: NetworkSpec) -> NetworkSpec:
        """The path's network as the supernet runs it: the spec at the supernet's resolution and classes."""
        self.check(spec)
        return spec.replace(
            resolution=self.base.resolution, num_classes=self.base.num_classes, in_channels=self.base.in_channels
        )

    def check(self, spec: NetworkSpec) -> None:
        """Refuse a spec that is not a path of the space (a choice it does not offer, another stem or head)."""
        space = self.space
        if len(spec.stages) != len(space.stages):
            raise InputError(
                f"{spec.name}: {len(spec.stages)} stages, the space {space.name!r} has "
                f"{len(space.stages)}: not a path of its supernet"
            )
        for index, (stage, c) in enumerate(zip(spec.stages, space.stages, strict=True), start=1):
            decisions = [
                ("block", stage.block, c.block),
                ("kernel", stage.kernel, c.kernel),
                ("se_ratio", stage.se_ratio, c.se_ratio),
                ("skip", stage.skip, c.skip),
                ("stride", stage.stride, (c.stride,)),
                ("expand", stage.expand, c.expand if stage.block == "mbconv" else (1,)),
                ("out_channels", stage.out_channels, tuple(round_filters(c.out_channels, w) for w in c.width)),
                ("repeats", stage.repeats, tuple(c.repeats + o for o in c.repeats_offset)),
            ]
            for name, value, options in decisions:
                if value not in options:
                    raise InputError(
                        f"{spec.name}: stage {index} has {name} {value!r}, not a choice of the space "
                        f"{space.name!r} ({', '.join(map(repr, options))}): not a path of its supernet"
                    )
        fixed = ("stem", "head", "activation", "batch_norm")
        if any(getattr(spec, f) != getattr(self.base, f) for f in fixed):
            raise InputError(
                f"{spec.name}: its stem, head, activation or batch norm differ from the space "
                f"{space.name!r}'s: not a path of its supernet"
            )

    def _blocks(self, spec: NetworkSpec) -> Iterator[tuple[BlockPlan, Layer]]:
        """The path's blocks, each with the supernet layer it runs on (a stage's first layers)."""
        plan = plan_network(self.network(spec))
        first = 0
        for stage_index, stage in enumerate(spec.stages):
            layers = self.stages[stage_index]
            assert isinstance(layers, nn.ModuleList)
            for block in plan.blocks[first : first + stage.repeats]:
                layer = layers[block.position - first]
                assert isinstance(layer, Layer)
                yield block, layer
            first += stage.repeats

    def forward(self, x: torch.Tensor, spec: NetworkSpec) -> torch.Tensor:
        stem = self.base.stem
        x = self.act(self.stem(x, self.base.in_channels, stem.out_channels, stem.kernel))
        channels = stem.out_channels
        for block, layer in self._blocks(spec):
            x = layer(x, block)
            channels = block.out_channels
        x = self.act(self.head(x, channels, self.base.head.out_channels, 1))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(F.dropout(x, spec.dropout, self.training))

    def state_for(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        """The path's weights, keyed as `build_model(network(spec)).state_dict()` (views of the supernet's, but
        transformed kernels, computed from them)."""
        stem = self.base.stem
        state = self.stem.state("stem", self.base.in_channels, stem.out_channels, stem.kernel)
        channels = stem.out_channels
        for block, layer in self._blocks(spec):
            state.update(layer.state(f"blocks.{block.position}", block))
            channels = block.out_channels
        state.update(self.head.state("head", channels, self.base.head.out_channels, 1))
        state.update({"classifier.weight": self.classifier.weight, "classifier.bias": self.classifier.bias})
        return state

    def standalone(self, spec: NetworkSpec) -> Network:
        """The builder's network of the path holding copies of its weights (built without initialising it)."""
        with torch.device("meta"):
            model = build_model(self.network(spec))
        state: dict[str, Any] = {k: v.detach().clone() for k, v in self.state_for(spec).items()}
        model.load_state_dict(state, strict=True, assign=True)
        return model
