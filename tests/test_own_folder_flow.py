"""A person's own folder through the whole pipeline, as the README runs it: search -> grid-scale -> export-family
-> train a member -> export-model ONNX -> predict, on a tiny generated folder of 3 classes with images of odd sizes.
Each stage's output must fit the folder (its class count in every spec) and deploy without guessing (the class
names and the transform in the ONNX metadata; `predict` labels equal to the torch model's argmax)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import effnet
from effnet.cli.app import app
from effnet.nas.net.spec_file import load_spec

from images import jpeg_folder
from postgres import TINY_SPACE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["class0", "class1", "class2"]
"""The class folders jpeg_folder writes, in sorted (index) order: what every output must name."""
QUICK = [
    "--proxy-epochs",
    "1",
    "--proxy-resolution",
    "16",
    "--batch-size",
    "8",
    "--loader-workers",
    "0",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--json",
]


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_own_folder_search_grid_family_train_export_predict(tmp_path):
    data = jpeg_folder(tmp_path / "data", classes=3, per_class=8, val_per_class=3, sizes=(30, 52))

    found = run(
        "search",
        "--space",
        TINY_SPACE,
        "--target-flops",
        "1M",
        "--flops-tolerance",
        "0.3",
        "--data",
        data,
        "--trials",
        "2",
        "--timeout",
        "none",
        "--run-dir",
        tmp_path / "search",
        *QUICK,
    )
    b0 = load_spec(found["best_spec"])
    assert b0.num_classes == 3 and found["classes"] == 3  # the tiny space's file says 4: the folder decides
    chance, held_out = found["chance"]["chance"], found["chance"]["val_images"]
    # the proxy holds out a seeded fifth of train/: chance is its largest class's share, at least a third
    assert 1 / 3 <= chance < 1 and (chance * held_out) == pytest.approx(round(chance * held_out))

    grid = run(
        "grid-scale",
        "--base",
        found["best_spec"],
        "--data",
        data,
        "--alpha-range",
        "1.2",
        "--beta-range",
        "1.1",
        "--gamma-range",
        "1.1:1.2",
        "--run-dir",
        tmp_path / "grid",
        *QUICK,
    )
    coefficients = yaml.safe_load((tmp_path / "grid" / "coefficients.yaml").read_text())
    assert grid["classes"] == 3 and "tied_with_runner_up" in coefficients

    family = run(
        "export-family",
        "--base",
        found["best_spec"],
        "--coefficients",
        tmp_path / "grid" / "coefficients.yaml",
        "--run-dir",
        tmp_path / "family",
        "--json",
    )
    members = sorted((tmp_path / "family").glob("b*.yaml"))
    assert [m.name for m in members] == [f"b{k}.yaml" for k in range(1, 8)]
    assert all(load_spec(m).num_classes == 3 for m in members)
    # the folder's images are 30-51 px: b7's resolution is far beyond them, and the family says so
    assert any("b7" in w for w in family["warnings"])

    run(
        "train",
        tmp_path / "family" / "b1.yaml",
        "--data",
        data,
        "--resolution",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--augment",
        "light",
        "--loader-workers",
        "0",
        "--device",
        "cpu",
        "--run-dir",
        tmp_path / "train",
        "--json",
    )
    onnx_file = tmp_path / "b1.onnx"
    run(
        "export-model",
        tmp_path / "family" / "b1.yaml",
        "--checkpoint",
        tmp_path / "train",
        "--format",
        "onnx",
        "--out",
        onnx_file,
        "--json",
    )
    metadata = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert json.loads(metadata["effnet.classes"]) == CLASSES
    transform = json.loads(metadata["effnet.transform"])
    assert transform["crop"] == 16 and transform["resize"] == round(16 / 0.875)
    assert transform["mean"] == pytest.approx([0.485, 0.456, 0.406])

    predicted = run("predict", onnx_file, data / "val", "--device", "cpu", "--json")
    model, info = effnet.load_model(tmp_path / "train")
    assert list(info.classes) == CLASSES
    prepare = effnet.eval_transform(info)
    files = sorted((data / "val").rglob("*.jpg"))
    assert [Path(p["image"]) for p in predicted["predictions"]] == files
    for path, prediction in zip(files, predicted["predictions"], strict=True):
        with torch.no_grad():
            logits = model(prepare(Image.open(path).convert("RGB"))[None])[0]
        assert prediction["top"][0]["class"] == CLASSES[int(logits.argmax())]
