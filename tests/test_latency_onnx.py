"""A latency table's parts in onnxruntime: each part (stem, every kind of block, head, both paddings) exported by
the fast exporter computes what the torch part in eval mode computes, at the table's batch; the table's parts go
through that exporter and whole networks through the graph `effnet export-model` writes. No test compares timings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from effnet.nas.latency import runtimes, timing
from effnet.nas.latency.parts import Part, space_parts
from effnet.nas.latency.runtimes import prepare, random_images
from effnet.nas.space.load import load_space

pytest.importorskip("onnxruntime")

TINY_SPACE = Path(__file__).parent / "data" / "tiny_space.yaml"
"""32 px, 8-32 channels: a part exports in tens of milliseconds."""
POOL_SKIP = ("skip: [true, false]", "skip: [true, false, pool]")
"""The tiny space's skip choices, and with the pooling shortcut too (strided residual blocks)."""
CPU = torch.device("cpu")


def one_of_each(padding: str, folder: Path) -> list[Part]:
    """The tiny space's (with the pooling shortcut) stem, a head, and one block of each type and shortcut, in
    `padding`."""
    text = TINY_SPACE.read_text()
    assert POOL_SKIP[0] in text
    (folder / "space.yaml").write_text(text.replace(*POOL_SKIP))
    space = load_space(folder / "space.yaml")
    space = dataclasses.replace(space, base=space.base.replace(padding=padding))
    kinds: dict[tuple, Part] = {}
    for part in space_parts(space):
        plan = part.plan
        kind = (part.kind,) if plan is None else (plan.block, plan.residual, plan.pool_shortcut, plan.project_shortcut)
        kinds[kind] = part  # the last: with squeeze-excitation where the space has it (listed after without)
    return list(kinds.values())


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_each_part_exported_for_onnxruntime_computes_the_torch_part(padding, tmp_path):
    parts = one_of_each(padding, tmp_path)
    assert {part.kind for part in parts} == {"stem", "block", "head"}
    assert {part.plan.block for part in parts if part.plan is not None} == {"mbconv", "dsconv", "conv"}
    assert any(part.plan is not None and part.plan.pool_shortcut for part in parts)  # a strided residual block
    assert any(part.plan is not None and part.plan.se_channels > 0 for part in parts)
    for part in parts:
        torch.manual_seed(0)
        model = part.build()
        weights = {name: value.clone() for name, value in model.state_dict().items()}
        with torch.no_grad():
            expected = model.eval()(random_images(2, part.input_shape))
        model.train()
        out = prepare(model, part.input_shape, "onnxruntime", CPU, 2, 1, part=True).run()
        assert out.shape == expected.shape, part.key
        scale = float(expected.abs().max())
        assert float((out - expected).abs().max()) <= 1e-4 * scale, part.key  # float rounding, as the export's check
        assert model.training, part.key  # the part handed in is left as it was
        assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items()), part.key


class Exports:
    """Which exporter made each graph onnxruntime was given (each called through to the real one)."""

    def __init__(self, monkeypatch):
        self.parts = 0
        self.networks = 0
        part_graph, onnx_graph = runtimes.part_graph, runtimes.onnx_graph

        def counted_part(*args):
            self.parts += 1
            return part_graph(*args)

        def counted_network(*args):
            self.networks += 1
            return onnx_graph(*args)

        monkeypatch.setattr(runtimes, "part_graph", counted_part)
        monkeypatch.setattr(runtimes, "onnx_graph", counted_network)


def test_the_table_times_parts_on_the_fast_export_and_calibrates_on_the_deployed_graph(monkeypatch, tmp_path):
    exports = Exports(monkeypatch)
    parts = one_of_each("symmetric", tmp_path)[:4]
    progress = []
    times = timing.time_parts(parts, "onnxruntime", CPU, 1, 1, progress.append)
    assert set(times) == {part.key for part in parts}
    assert all(part_time.median_s > 0 for part_time in times.values())
    assert (exports.parts, exports.networks) == (len(parts), 0)
    space = load_space(TINY_SPACE)
    network = timing.calibration_networks(space)[0]
    measured = timing.time_networks([network], "onnxruntime", CPU, 1, 1, progress.append)
    assert len(measured) == 1 and measured[0] > 0
    assert (exports.parts, exports.networks) == (len(parts), 1)
