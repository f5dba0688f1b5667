"""effnet: search a base network under a FLOPs budget, find how to grow it, and emit the grown family.

The Python API, the same pipeline as the command line::

    import effnet

    spec = effnet.load_spec("configs/efficientnet-b0.yaml")      # or effnet.reference_b0()
    effnet.count_flops(spec).total                                 # 399,352,864 (fvcore's convention)
    model = effnet.build_model(spec)                               # a torch nn.Module

    found = effnet.search(effnet.SearchConfig(target_flops=400_000_000))     # writes runs/search/
    grid = effnet.grid_scale(effnet.GridConfig(base=found.best_spec, grid=effnet.GridDefinition.from_ranges()))
    family = effnet.export_family(effnet.FamilyConfig(found.best_spec, grid.coefficients, run_dir="runs/family"))

Stages:

- `search(SearchConfig) -> SearchResult`: an Optuna study over a MnasNet search space for a base network
  near a FLOPs target, by the reward ACC(m) * (FLOPS(m) / T) ** -0.07 with a measured accuracy proxy.
- `grid_scale(GridConfig) -> GridResult`: a grid over the compound coefficients at phi = 1 (or k) under
  alpha * beta^2 * gamma^2 ~ 2, each distinct network scored once (or K times) and shared by its twins.
- `export_family(FamilyConfig) -> FamilyResult`: the members B1-B7 with the reference rounding.
- Fitted to the data: `SearchConfig.classes` / `.resolution` (None: the data's class count, a resolution
  derived from the space and the data's median image size: `data_facts(source)`), `GridConfig.classes` and
  `FamilyConfig.classes` / `.image_size`; `SearchResult.fit`, `.chance` (the proxy's `ChanceLevel`) and
  `.warnings` say what was chosen and when the best accuracy is near chance.
- `proxy_check(ProxyCheckConfig)`, `train_network(TrainConfig)`: how well a proxy ranks; full training
  (`TrainConfig.init`: from an effnet checkpoint or a timm / torchvision state dict).

Deployment: `fold_batch_norm(model)` (an eval-only copy with BatchNorm folded into the convs, the fast
inference path), `export_model(spec, out, format, weights)` (ONNX, TorchScript, or a timm / torchvision state
dict, checked against the torch model), `read_weights` / `load_weights` (a checkpoint or a timm / torchvision
state dict into a spec's model, by name) and `save_state_dict` (the reverse). `measure_latency(spec, runtime,
device, batch, threads) -> Latency`: the median and 90th percentile time of a batch on this machine (torch, folded
or onnxruntime). `build_latency_table(load_space(...), TableSettings(...))`: every part a search space's networks
are made of, timed on this machine; its `LatencyTable.predict(spec)` a network's latency in seconds, and
`latency_reach(space, table)` the fastest and slowest the space can make.

Every long call takes a progress callback (`on_progress`) and never prints; bad input raises
`InputError` (a `SettingError` names the setting). A call leaves process-wide state as it found it
(signal handlers, Optuna's log level, torch's threads). Importing `effnet` is cheap: each name loads
its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what editors and type checkers see: each exported name from its module (_EXPORTS)
    from effnet.nas.data.facts import ImageSize, data_facts
    from effnet.nas.errors import InputError, SettingError
    from effnet.nas.export import ExportResult, export_model
    from effnet.nas.inference import ModelInfo, eval_transform, load_model
    from effnet.nas.latency.measure import Latency, measure_latency
    from effnet.nas.latency.reach import latency_reach
    from effnet.nas.latency.table import LatencyTable, TableSettings, build_latency_table
    from effnet.nas.net.counting import FlopCount, count_flops
    from effnet.nas.net.fold import fold_batch_norm
    from effnet.nas.net.model import build_model
    from effnet.nas.net.spec import NetworkSpec, StageSpec
    from effnet.nas.net.spec_file import dump_spec, load_spec, spec_from_dict, spec_to_dict
    from effnet.nas.predict import PredictResult, predict
    from effnet.nas.progress import Progress, ProgressCallback
    from effnet.nas.proxies.config import ProxyConfig
    from effnet.nas.search.config import SearchConfig
    from effnet.nas.search.result import SearchResult
    from effnet.nas.search.search import search
    from effnet.nas.space.fit import DataFit
    from effnet.nas.space.load import load_space
    from effnet.nas.study.chance import ChanceLevel
    from effnet.nas.study.proxy_check import ProxyCheckConfig, proxy_check
    from effnet.nas.study.study_config import StudyConfig
    from effnet.nas.training.job import TrainConfig, TrainResult
    from effnet.nas.training.trainer import train_network
    from effnet.nas.training.weights import load_weights, read_weights, save_state_dict, state_dict_for
    from effnet.scaling.compound import Coefficients, compound_scale, scale
    from effnet.scaling.export import FamilyConfig, FamilyResult, export_family
    from effnet.scaling.grid import GridResult, grid_scale
    from effnet.scaling.grid_space import GridConfig, GridDefinition
    from effnet.scaling.presets import official_preset, reference_b0

_EXPORTS = {
    # the network language
    "NetworkSpec": "effnet.nas.net.spec",
    "StageSpec": "effnet.nas.net.spec",
    "load_spec": "effnet.nas.net.spec_file",
    "dump_spec": "effnet.nas.net.spec_file",
    "spec_from_dict": "effnet.nas.net.spec_file",
    "spec_to_dict": "effnet.nas.net.spec_file",
    "build_model": "effnet.nas.net.model",
    "fold_batch_norm": "effnet.nas.net.fold",
    "count_flops": "effnet.nas.net.counting",
    "FlopCount": "effnet.nas.net.counting",
    "reference_b0": "effnet.scaling.presets",
    "official_preset": "effnet.scaling.presets",
    # scaling
    "scale": "effnet.scaling.compound",
    "compound_scale": "effnet.scaling.compound",
    "Coefficients": "effnet.scaling.compound",
    # studies
    "StudyConfig": "effnet.nas.study.study_config",
    "Progress": "effnet.nas.progress",
    "ProgressCallback": "effnet.nas.progress",
    "ProxyConfig": "effnet.nas.proxies.config",
    "SearchConfig": "effnet.nas.search.config",
    "SearchResult": "effnet.nas.search.result",
    "search": "effnet.nas.search.search",
    "GridConfig": "effnet.scaling.grid_space",
    "GridDefinition": "effnet.scaling.grid_space",
    "GridResult": "effnet.scaling.grid",
    "grid_scale": "effnet.scaling.grid",
    "FamilyConfig": "effnet.scaling.export",
    "FamilyResult": "effnet.scaling.export",
    "export_family": "effnet.scaling.export",
    "DataFit": "effnet.nas.space.fit",
    "ChanceLevel": "effnet.nas.study.chance",
    "ImageSize": "effnet.nas.data.facts",
    "data_facts": "effnet.nas.data.facts",
    "ProxyCheckConfig": "effnet.nas.study.proxy_check",
    "proxy_check": "effnet.nas.study.proxy_check",
    "TrainConfig": "effnet.nas.training.job",
    "TrainResult": "effnet.nas.training.job",
    "train_network": "effnet.nas.training.trainer",
    # deployment and pretrained weights
    "export_model": "effnet.nas.export",
    "ExportResult": "effnet.nas.export",
    "read_weights": "effnet.nas.training.weights",
    "load_weights": "effnet.nas.training.weights",
    "save_state_dict": "effnet.nas.training.weights",
    "state_dict_for": "effnet.nas.training.weights",
    # latency where the network runs
    "measure_latency": "effnet.nas.latency.measure",
    "Latency": "effnet.nas.latency.measure",
    "LatencyTable": "effnet.nas.latency.table",
    "TableSettings": "effnet.nas.latency.table",
    "build_latency_table": "effnet.nas.latency.table",
    "latency_reach": "effnet.nas.latency.reach",
    "load_space": "effnet.nas.space.load",
    # using a trained network
    "load_model": "effnet.nas.inference",
    "eval_transform": "effnet.nas.inference",
    "ModelInfo": "effnet.nas.inference",
    "predict": "effnet.nas.predict",
    "PredictResult": "effnet.nas.predict",
    # errors
    "InputError": "effnet.nas.errors",
    "SettingError": "effnet.nas.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'effnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only: not this module's own helpers (`importlib`, `annotations`, `Any`)."""
    return list(__all__)
