"""effnet's parameter names against timm's and torchvision's EfficientNet, for any spec they can express.

A network `build_model` makes from an EfficientNet-like spec (mbconv blocks with squeeze-excitation, no pooling
shortcut) has, tensor for tensor, the parameters of timm's `efficientnet_*` / `tf_efficientnet_*` and of
torchvision's `efficientnet_b*` of the same shape; only the names differ. `foreign_names` pairs every name of
the spec's state dict with the other library's, layer by layer from the block plan, so weights move both ways
by name, and a file built for another network is refused at the first layer that differs.

    effnet                         timm                          torchvision
    stem.0 / stem.1                conv_stem / bn1               features.0.0 / features.0.1
    blocks.{i}.layers.{k}          blocks.{stage}.{j}.<layer>    features.{stage+1}.{j}.block.{k}
    head.0 / head.1                conv_head / bn2               features.{stages+1}.0 / .1
    classifier                     classifier                    classifier.1

timm names a block's layers by role: an expanding block has conv_pw/bn1 (expand), conv_dw/bn2 (depthwise),
se.conv_reduce/se.conv_expand, conv_pwl/bn3 (project); a block without expansion (timm's depthwise-separable
block) has conv_dw/bn1, se, conv_pw/bn2. torchvision numbers them as effnet does, its SE as fc1/fc2.
The state dicts hold no BatchNorm epsilon or padding: those are the spec's `batch_norm.epsilon` and `padding`
(timm's efficientnet_b* and torchvision's b0-b4 use epsilon 1e-5, torchvision's b5-b7 1e-3; timm's
tf_efficientnet_b* epsilon 1e-3 with `padding: same`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from effnet.nas.errors import InputError
from effnet.nas.net.layout import BlockPlan, plan_network
from effnet.nas.net.spec import NetworkSpec

FOREIGN_FORMATS = ("timm", "torchvision")
LIBRARIES = ("effnet", *FOREIGN_FORMATS)

_TIMM_ROLES = {
    True: {"expand": ("conv_pw", "bn1"), "dw": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")},
    False: {"dw": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")},
}
"""timm's (conv, BatchNorm) names of each layer, for blocks with (True) and without (False) an expanding conv."""
_SE_NAMES = {"timm": ("se.conv_reduce", "se.conv_expand"), "torchvision": ("fc1", "fc2")}


def block_roles(plan: BlockPlan) -> list[str]:
    """An mbconv block's layers in `Block.layers` order: expand (where it expands), dw, se (where it has one),
    project."""
    return (
        (["expand"] if plan.mid_channels != plan.in_channels else [])
        + ["dw"]
        + (["se"] if plan.se_channels else [])
        + ["project"]
    )


def _check_expressible(spec: NetworkSpec, library: str) -> None:
    for index, stage in enumerate(spec.stages):
        if stage.block != "mbconv":
            raise InputError(
                f"stage {index + 1} of {spec.name!r} is a {stage.block} block: {library}'s EfficientNet "
                "has mbconv blocks only"
            )
    for block in plan_network(spec).blocks:
        if block.pool_shortcut or block.project_shortcut:
            raise InputError(
                f"block {block.position} of {spec.name!r} has a pooling shortcut (skip: pool): "
                f"{library}'s EfficientNet has identity shortcuts only"
            )


def _module_names(spec: NetworkSpec, library: str) -> dict[str, str]:
    """effnet module name -> the library's, for every module holding parameters or buffers."""
    plan = plan_network(spec)
    timm = library == "timm"
    last = len(spec.stages) + 1
    names = {
        "stem.0": "conv_stem" if timm else "features.0.0",
        "stem.1": "bn1" if timm else "features.0.1",
        "head.0": "conv_head" if timm else f"features.{last}.0",
        "head.1": "bn2" if timm else f"features.{last}.1",
        "classifier": "classifier" if timm else "classifier.1",
    }
    first_of_stage: dict[int, int] = {}
    for block in plan.blocks:
        first_of_stage.setdefault(block.stage, block.position)
        position = block.position - first_of_stage[block.stage]
        theirs = f"blocks.{block.stage}.{position}" if timm else f"features.{block.stage + 1}.{position}.block"
        roles = _TIMM_ROLES[block.mid_channels != block.in_channels]
        for k, role in enumerate(block_roles(block)):
            ours = f"blocks.{block.position}.layers.{k}"
            layer = theirs if timm else f"{theirs}.{k}"
            if role == "se":
                reduce, expand = _SE_NAMES[library]
                names[f"{ours}.reduce"], names[f"{ours}.expand"] = f"{layer}.{reduce}", f"{layer}.{expand}"
            elif timm:
                names[f"{ours}.0"], names[f"{ours}.1"] = (f"{theirs}.{n}" for n in roles[role])
            else:
                names[f"{ours}.0"], names[f"{ours}.1"] = f"{layer}.0", f"{layer}.1"
    return names


def foreign_names(spec: NetworkSpec, library: str, keys: list[str]) -> dict[str, str]:
    """Each of `keys` (the spec's state-dict names, in order) -> the name `library` gives that tensor (itself for
    effnet); refuses a spec the library's EfficientNet cannot express."""
    if library not in LIBRARIES:
        raise InputError(f"library must be one of {', '.join(LIBRARIES)}, got {library!r}")
    if library == "effnet":
        return {key: key for key in keys}
    _check_expressible(spec, library)
    modules = _module_names(spec, library)
    names = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        names[key] = f"{modules[module]}.{leaf}"
    return names


def to_foreign(state: Mapping[str, torch.Tensor], spec: NetworkSpec, library: str) -> dict[str, torch.Tensor]:
    """An effnet state dict under `library`'s names, in its order (what its model's `load_state_dict` takes)."""
    names = foreign_names(spec, library, list(state))
    return {names[key]: tensor for key, tensor in state.items()}


def to_effnet(
    state: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    spec: NetworkSpec,
    library: str,
    source: str,
    skip_classifier: bool = False,
) -> dict[str, torch.Tensor]:
    """`library`'s state dict `state` under effnet's names, checked tensor by tensor against `reference` (the
    spec's own state dict): a missing, extra or differently shaped tensor is refused as the first layer, in the
    file's order, where the file and the spec differ. `skip_classifier` leaves a classifier of another shape out
    (fine-tuning to other classes)."""
    names = foreign_names(spec, library, list(reference))
    ours_of = {theirs: ours for ours, theirs in names.items()}
    mapped = {}
    for key, tensor in state.items():
        ours = ours_of.get(key)
        if ours is None:
            raise mismatch(source, spec, key.rpartition(".")[0], library, "is in the file but not in the spec")
        if tuple(tensor.shape) != tuple(reference[ours].shape):
            if skip_classifier and ours.startswith("classifier."):
                continue
            raise mismatch(
                source,
                spec,
                key.rpartition(".")[0],
                library,
                f"{key.rpartition('.')[2]} is {list(tensor.shape)} in the file, "
                f"{list(reference[ours].shape)} in the spec ({ours})",
            )
        mapped[ours] = tensor
    for ours, theirs in names.items():
        if theirs not in state:
            raise mismatch(
                source, spec, theirs.rpartition(".")[0], library, f"is in the spec ({ours}) but not in the file"
            )
    return mapped


def mismatch(source: str, spec: NetworkSpec, layer: str, library: str, problem: str) -> InputError:
    return InputError(
        f"{source}: {library} weights that do not fit {spec.name!r}: first differing layer {layer}: "
        f"{problem}; use the spec of the network the weights were trained for"
    )
