"""Data for the proxies: embedded digits, synthetic patterns, image folders, and every data error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.nas.data.sources import load_data
from effnet.nas.errors import InputError


def test_digits_are_the_1797_real_images_split_80_20_stratified():
    data = load_data("digits", 16)
    # scikit-learn's digits: 1,797 images of 10 classes; a 0.2 test split holds ceil(0.2 * 1797) = 360
    assert data.num_classes == 10
    assert data.train_x.shape == (1437, 3, 16, 16) and data.val_x.shape == (360, 3, 16, 16)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.in_channels == 3
    assert torch.equal(data.train_x[:, 0], data.train_x[:, 2])  # grey repeated over 3 channels
    per_class = torch.bincount(torch.cat([data.train_y, data.val_y]))
    val_per_class = torch.bincount(data.val_y, minlength=10)
    # stratified: each class's validation share is 20 % of its images, within one image
    assert (val_per_class.double() - 0.2 * per_class.double()).abs().max() <= 1.0
    # normalized with the training split's statistics
    assert data.train_x.mean().abs() < 1e-4 and abs(data.train_x.std().item() - 1.0) < 1e-3


def test_digits_split_is_seeded():
    a, b, c = load_data("digits", 8, seed=1), load_data("digits", 8, seed=1), load_data("digits", 8, seed=2)
    assert torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.val_x, c.val_x)


def test_loaded_data_are_cached_per_source_resolution_and_seed():
    assert load_data("digits", 12) is load_data("digits", 12)
    assert load_data("digits", 12) is not load_data("digits", 13)


def test_synthetic_is_small_balanced_and_deterministic():
    data = load_data("synthetic", 8)
    assert data.num_classes == 4
    assert data.train_x.shape == (256, 3, 8, 8) and data.val_x.shape == (64, 3, 8, 8)
    assert torch.bincount(data.val_y).tolist() == [16, 16, 16, 16]
    again = load_data("synthetic", 8, seed=0)
    assert torch.equal(data.train_x, again.train_x)
    # class k brightens quadrant k: class 0's mean top-left quadrant is the brightest of its four
    zeros = data.train_x[data.train_y == 0].mean(dim=(0, 1))
    assert zeros[:4, :4].mean() > max(zeros[:4, 4:].mean(), zeros[4:, :4].mean(), zeros[4:, 4:].mean()) + 0.5


def _write_images(folder: Path, count: int, colour: tuple[int, int, int], size: int = 10) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (size, size + i), colour).save(folder / f"{i}.png")


def test_image_folder_with_train_and_val(tmp_path):
    for split, count in (("train", 4), ("val", 2)):
        _write_images(tmp_path / split / "cat", count, (255, 0, 0))
        _write_images(tmp_path / split / "dog", count, (0, 0, 255))
    data = load_data(str(tmp_path), 6)
    assert data.num_classes == 2 and data.train_x.shape == (8, 3, 6, 6) and data.val_x.shape == (4, 3, 6, 6)
    assert sorted(data.train_y.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    cats = data.train_x[data.train_y == 0]
    assert (cats[:, 0] > cats[:, 2]).all()  # red images (class "cat", sorted first) are red after normalizing


def test_image_folder_of_classes_is_split_by_val_fraction(tmp_path):
    for name in ("a", "b", "c"):
        _write_images(tmp_path / name, 5, (10, 20, 30))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    data = load_data(str(tmp_path), 4, val_fraction=0.2)
    assert data.num_classes == 3
    assert len(data.val_y) == 3 and len(data.train_y) == 12  # ceil(0.2 * 15) = 3, one per class
    assert sorted(data.val_y.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("layout, message", [
    ("missing", "no such data folder"),
    ("file", "not a directory"),
    ("empty", "no class folders"),
    ("one-class", "only one class"),
    ("empty-class", "holds no images"),
    ("mismatch", "different classes"),
    ("train-only", "only one of train/ and val/"),
])
def test_data_errors_are_one_clear_line(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout != "missing":
        root.mkdir()
    if layout == "one-class":
        _write_images(root / "only", 3, (0, 0, 0))
    if layout == "empty-class":
        _write_images(root / "a", 3, (0, 0, 0))
        (root / "b").mkdir()
    if layout == "mismatch":
        _write_images(root / "train" / "a", 2, (0, 0, 0))
        _write_images(root / "train" / "b", 2, (0, 0, 0))
        _write_images(root / "val" / "a", 2, (0, 0, 0))
        _write_images(root / "val" / "c", 2, (0, 0, 0))
    if layout == "train-only":
        _write_images(root / "train" / "a", 2, (0, 0, 0))
    with pytest.raises(InputError, match=message) as err:
        load_data(str(root), 8)
    assert "\n" not in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    _write_images(tmp_path / "a", 3, (0, 0, 0))
    _write_images(tmp_path / "b", 3, (0, 0, 0))
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError, match=r"broken\.jpg: cannot read the image"):
        load_data(str(tmp_path), 8)


def test_bad_data_path_exits_2_through_the_cli(tmp_path):
    from test_proxy_check import invoke

    result = invoke("--data", tmp_path / "nowhere", "--run-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert "no such data folder" in result.output
    assert "Traceback" not in result.output


def test_bad_resolution_and_fraction(tmp_path):
    with pytest.raises(InputError, match="resolution"):
        load_data("digits", 0)
    with pytest.raises(InputError, match="between 0 and 1"):
        load_data("digits", 8, val_fraction=1.0)


def test_split_sizes_follow_ceil_rule_for_other_fractions():
    data = load_data("digits", 8, val_fraction=0.1)
    assert len(data.val_y) == int(np.ceil(0.1 * 1797))
