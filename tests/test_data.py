"""The data layer: built-in sets, image folders, splits, transforms, the loader, caches, and bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.nas.data import builtin
from effnet.nas.data.cache import cached_images
from effnet.nas.data.folder import held_out_split, index_folder, split_per_class
from effnet.nas.data.images import BadImage, decode_image
from effnet.nas.data.loader import EpochSampler, Normalize, TransformedImages, collate, make_loader, sample_seed
from effnet.nas.data.sources import proxy_data, training_data
from effnet.nas.data.transforms import eval_size, eval_transform, train_transform
from effnet.nas.errors import InputError, SettingError

from images import jpeg_folder, png_16bit_rgb, png_bomb

# -- built-in data and splits --------------------------------------------------------------------


def test_digits_are_the_1797_real_images_held_out_20_percent_per_class():
    data = training_data("digits", 16, seed=0)
    # scikit-learn's digits: 1,797 images of 10 classes; a fifth held out, rounded up: ceil(359.4) = 360
    assert (len(data.train), len(data.val), data.num_classes) == (1437, 360, 10)
    images = data.train.images.get()
    assert images.shape == (1437, 3, 8, 8) and images.dtype == np.uint8 and data.stored == "square"
    assert (images[:, 0] == images[:, 2]).all()  # grey repeated over the three channels
    assert set(np.unique(images)) <= {round(level * 255 / 16) for level in range(17)}  # the 17 grey levels
    view = eval_transform(16, "square")(torch.from_numpy(images[0]))
    assert view.shape == (3, 16, 16)  # resized as it is read: memory stays the set's own size
    per_class = np.bincount(np.concatenate([data.train.labels, data.val.labels]))
    held = np.bincount(data.val.labels, minlength=10)
    assert np.abs(held - 0.2 * per_class).max() < 1.0  # each class holds out its fifth, within one image


def test_a_split_is_per_class_disjoint_and_fixed_by_its_seed():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    first, second = split_per_class(labels, (10, 50), seed=3)
    assert len(first) == 10 and len(second) == 50 and not set(first) & set(second)
    assert np.bincount(labels[first]).tolist() == [1, 2, 3, 4]  # in proportion to the classes
    assert np.bincount(labels[second]).tolist() == [5, 10, 15, 20]
    again = split_per_class(labels, (10, 50), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((first, second), again, strict=True))
    assert not np.array_equal(first, split_per_class(labels, (10, 50), seed=4)[0])


def test_held_out_counts_are_checked():
    images = builtin.synthetic(seed=0)  # 320 images, 4 classes
    with pytest.raises(SettingError, match="proxy_val_images must lie in \\[4, 319\\]"):
        held_out_split(images, 0, val_images=320)
    with pytest.raises(SettingError, match="proxy_train_images must lie in \\[2, 256\\]"):
        held_out_split(images, 0, train_images=300)
    train, val = held_out_split(images, 0, val_images=40, train_images=100)
    assert (len(train), len(val)) == (100, 40)


# -- image folders -------------------------------------------------------------------------------


def test_an_image_folder_with_train_and_val_streams_from_its_files(tmp_path):
    jpeg_folder(tmp_path, classes=2, per_class=4, val_per_class=2)
    data = training_data(str(tmp_path), 16, seed=0)
    assert data.stored == "files" and data.train.images is None  # no process holds the decoded images
    assert (len(data.train), len(data.val), data.train.classes) == (8, 4, ("class0", "class1"))
    assert data.train.file(0) == tmp_path / "train" / "class0" / "0.jpg"


def test_a_folder_of_classes_holds_out_a_fifth(tmp_path):
    jpeg_folder(tmp_path, classes=3, per_class=5)
    data = training_data(str(tmp_path), 16, seed=0)
    assert (len(data.train), len(data.val)) == (12, 3) and sorted(data.val.labels.tolist()) == [0, 1, 2]


def test_a_val_class_none_of_whose_images_decode_is_refused_naming_the_split(tmp_path):
    """Validation would leave the class out of its accuracy without a word, as training would skip it."""
    jpeg_folder(tmp_path, classes=2, per_class=4, val_per_class=2)
    for image in (tmp_path / "val" / "class1").iterdir():
        image.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"val/ class 'class1' has no image that decodes"):
        training_data(str(tmp_path), 16, seed=0)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "no such data folder"),
        ("file", "not a directory"),
        ("empty", "no class folders"),
        ("one-class", "only one class"),
        ("empty-class", "holds no images"),
        ("class-only-in-train", "only in train: c; only in val: -"),
        ("train-only", "only one of train/ and val/"),
        ("a-class-named-train", r"if train is one of your classes \(beside bus, car\), rename its folder"),
        ("a-class-of-subfolders", "holds no images .* its subfolders are not read: put the images directly in it"),
    ],
)
def test_folder_errors_are_one_clear_line(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout != "missing":
        root.mkdir()
    if layout == "one-class":
        jpeg_folder(root, classes=1, per_class=2)
    if layout == "empty-class":
        jpeg_folder(root, classes=1, per_class=2)
        (root / "empty").mkdir()
    if layout == "class-only-in-train":
        jpeg_folder(root, classes=3, per_class=2, val_per_class=1)
        (root / "train" / "class2").rename(root / "train" / "c")
        jpeg_folder(root / "x", classes=1, per_class=1)
        (root / "val" / "class2").rename(root / "x" / "gone")
    if layout == "train-only":
        jpeg_folder(root / "train", classes=2, per_class=2)
    if layout == "a-class-of-subfolders":
        jpeg_folder(root, classes=2, per_class=2)
        (root / "class1").rename(root / "nested")
        (root / "class1").mkdir()
        (root / "nested").rename(root / "class1" / "deeper")
    if layout == "a-class-named-train":  # PASCAL VOC's and COCO's classes include "train"
        jpeg_folder(root, classes=3, per_class=2)
        for old, new in (("class0", "bus"), ("class1", "car"), ("class2", "train")):
            (root / old).rename(root / new)
    with pytest.raises(InputError, match=message) as err:
        index_folder(root)
    assert "\n" not in str(err.value)


# -- decoding: every kind of file converted correctly or named ----------------------------------


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)  # the high byte: 0, 1, 128, 255
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert np.asarray(decode_image(tmp_path / "grey16.png"))[0, :, 0].tolist() == [0, 1, 128, 255]
    rgb = np.zeros((1, 2, 3), dtype=np.uint16)
    rgb[0, 0] = (65535, 32768, 255)
    rgb[0, 1] = (512, 1024, 2048)
    png_16bit_rgb(tmp_path / "rgb48.png", rgb)
    assert np.asarray(decode_image(tmp_path / "rgb48.png")).tolist() == [[[255, 128, 0], [2, 4, 8]]]


def test_cmyk_palette_grey_and_transparent_images_come_out_rgb(tmp_path):
    # cyan 0, magenta and yellow full
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.jpg", quality=100)
    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 255] + [0] * 765)
    palette.save(tmp_path / "palette.png")
    Image.new("L", (4, 4), 77).save(tmp_path / "grey.png")
    Image.new("RGBA", (4, 4), (10, 200, 30, 0)).save(tmp_path / "clear.png")
    red = np.asarray(decode_image(tmp_path / "red.jpg"))
    assert red.shape == (8, 8, 3) and red[..., 0].min() > 245 and red[..., 1:].max() < 10
    assert np.asarray(decode_image(tmp_path / "palette.png"))[0, 0].tolist() == [0, 0, 255]
    assert np.asarray(decode_image(tmp_path / "grey.png"))[0, 0].tolist() == [77, 77, 77]
    assert np.asarray(decode_image(tmp_path / "clear.png"))[0, 0].tolist() == [10, 200, 30]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 2), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_image(tmp_path / "rotated.jpg").size == (2, 6)


@pytest.mark.parametrize(
    "name, write, words",
    [
        ("corrupt.jpg", lambda p: p.write_bytes(b"not a jpeg at all"), "cannot read the image"),
        ("truncated.jpg", None, "cannot read the image"),
        ("bomb.png", png_bomb, "over the 64,000,000-pixel limit"),
    ],
)
def test_a_file_that_does_not_decode_is_named(tmp_path, name, write, words):
    path = tmp_path / name
    if write is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:400])
    else:
        write(path)
    with pytest.raises(BadImage, match=f"{name}: .*{words}"):
        decode_image(path)


def test_bad_files_are_left_out_of_a_cache_and_named(tmp_path):
    jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    (tmp_path / "data" / "class0" / "broken.jpg").write_bytes(b"\xff\xd8 nothing more")
    png_bomb(tmp_path / "data" / "class1" / "bomb.png")
    data = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    assert len(data.train) + len(data.val) == 12  # the 14 files less the two bad ones
    assert sorted(Path(s.split(":")[0]).name for s in data.skipped) == ["bomb.png", "broken.jpg"]


def test_a_cache_that_leaves_files_out_holds_the_others_in_order(tmp_path):
    """14 images decoded in batches of 6, 6 and 2, three of them failing: the cache holds the other 11, image k
    filled with the value k, in a file of exactly 11 images, nothing else."""
    images, _ = index_folder(jpeg_folder(tmp_path / "data", classes=2, per_class=7))
    failing = {2, 7, 13}

    def decode(images, size):
        for start in (0, 6, 12):
            indices = [k for k in range(start, min(start + 6, 14)) if k not in failing]
            pixels = np.stack([np.full((3, size, size), k, np.uint8) for k in indices])
            yield pixels, images.labels[indices], [f"file{k}: broken" for k in failing if start <= k < start + 6]

    built = cached_images(images, 4, tmp_path / "cache", decode)
    kept = [k for k in range(14) if k not in failing]
    stored = built.images.images.get()
    assert stored.shape == (11, 3, 4, 4)
    assert [int(image[0, 0, 0]) for image in stored] == kept
    assert all((image == image[0, 0, 0]).all() for image in stored)
    assert built.images.labels.tolist() == images.labels[kept].tolist()
    assert built.skipped == ("file2: broken", "file7: broken", "file13: broken")
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock") == [".json", ".npy"]


# -- transforms ----------------------------------------------------------------------------------


def test_the_eval_view_is_the_short_side_at_r_over_0875_then_the_centre(tmp_path):
    """By hand for a 60 x 30 image at r = 16: short side 30 -> round(16 / 0.875) = 18, so 36 x 18; the centre
    16 x 16 starts at column (36 - 16) // 2 = 10 and row (18 - 16) // 2 = 1."""
    x = np.tile(np.arange(60, dtype=np.uint8) * 4, (30, 1))  # intensity = 4 * column
    image = Image.fromarray(np.stack([x, x, x], axis=-1))
    assert eval_size(16) == 18
    view = eval_transform(16, "files")(image)
    assert view.shape == (3, 16, 16) and view.dtype == torch.uint8
    resized = np.asarray(image.resize((36, 18), Image.BICUBIC))
    assert torch.equal(view, torch.from_numpy(resized[1:17, 10:26].copy()).permute(2, 0, 1))


def test_random_crops_are_inside_the_image_and_in_the_scale_and_ratio_ranges():
    """Each pixel holds its own row (red) and column (green), so a training view tells which box it was cut
    from: its corners give the box (within 2 pixels of bicubic blur), flipped or not."""
    height, width = 150, 200
    rows, cols = np.mgrid[0:height, 0:width]
    image = torch.from_numpy(np.stack([rows, cols, np.zeros_like(rows)]).astype(np.uint8))
    transform = train_transform(48, "light", "prepared")
    areas, flips = [], 0
    for seed in range(60):
        torch.manual_seed(seed)
        view = transform(image).int()
        top, bottom = view[0, 0, :].float().mean().item(), view[0, -1, :].float().mean().item()
        first, last = view[1, :, 0].float().mean().item(), view[1, :, -1].float().mean().item()
        flips += first > last
        left, right = min(first, last), max(first, last)
        h, w = bottom - top + 1, right - left + 1
        assert -2 <= top and bottom <= height + 1 and -2 <= left and right <= width + 1
        assert 0.08 * height * width * 0.85 <= h * w <= height * width * 1.05
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
        areas.append(h * w / (height * width))
    assert min(areas) < 0.3 and max(areas) > 0.7  # the scale range is used, not one crop size
    assert 15 <= flips <= 45  # a fair coin over 60 views


def test_the_same_seed_gives_the_same_crops_whatever_the_loader_workers(tmp_path):
    jpeg_folder(tmp_path, classes=2, per_class=6)
    data = training_data(str(tmp_path), 16, seed=0)
    dataset = TransformedImages(data.train, train_transform(16, "paper", "files"))

    def epoch(workers: int, epoch: int) -> torch.Tensor:
        sampler = EpochSampler(len(dataset), seed=7, shuffle=True)
        sampler.set_epoch(epoch)
        loader = make_loader(dataset, sampler, 4, workers, pin=False, drop_last=False)
        return torch.cat([b.images for b in loader])

    inline = epoch(0, 1)
    assert torch.equal(inline, epoch(2, 1))
    assert not torch.equal(inline, epoch(0, 2))  # another epoch, other crops
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    dataset[7, 1, 0]
    assert torch.equal(before, torch.random.get_rng_state())  # reading an image leaves the caller's RNG alone
    assert sample_seed(7, 1, 0) != sample_seed(7, 1, 1)


# -- the loader ----------------------------------------------------------------------------------


def test_ranks_see_disjoint_shards_that_cover_the_split():
    size, world = 103, 4
    shards = []
    for rank in range(world):
        sampler = EpochSampler(size, seed=1, shuffle=True, rank=rank, world=world, even=True)
        sampler.set_epoch(3)
        shards.append([index for _, _, index in sampler])
    assert len({len(s) for s in shards}) == 1  # every process takes as many steps
    taken = [i for s in shards for i in s]
    assert len(taken) == len(set(taken)) == size - size % world
    evaluation = [[i for _, _, i in EpochSampler(size, rank=r, world=world)] for r in range(world)]
    assert sorted(i for s in evaluation for i in s) == list(range(size))  # every image scored exactly once


def test_batches_travel_as_bytes_and_are_normalised_on_the_device():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x = Normalize(torch.device("cpu"))(images)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, :, 0, 0].tolist() == pytest.approx(
        [(255 - 0.485 * 255) / (0.229 * 255), (255 - 0.456 * 255) / (0.224 * 255), (255 - 0.406 * 255) / (0.225 * 255)]
    )
    batch = collate([(torch.zeros(3, 2, 2, dtype=torch.uint8), 1, None), (torch.empty(0), -1, "x.jpg: broken")])
    assert batch.images.shape == (1, 3, 2, 2) and batch.labels.tolist() == [1] and batch.skipped == ["x.jpg: broken"]


# -- caches --------------------------------------------------------------------------------------


def test_a_cache_is_built_once_and_reused(tmp_path):
    jpeg_folder(tmp_path / "data", classes=2, per_class=10)
    first = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    files = sorted((tmp_path / "cache" / "proxy").glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = proxy_data(str(tmp_path / "data"), 16, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    assert sorted((tmp_path / "cache" / "proxy").glob("*.npy")) == files and len(files) == 2  # train and val
    assert [f.stat().st_mtime_ns for f in files] == stamps  # not rebuilt
    assert np.array_equal(first.train.images.get(), again.train.images.get())
    assert first.train.images.get().shape == (16, 3, eval_size(16), eval_size(16))
    other = proxy_data(str(tmp_path / "data"), 24, seed=0, cache_dir=tmp_path / "cache", loader_workers=0)
    assert other.train.images.get().shape[-1] == eval_size(24)  # another size: its own cache
    assert len(list((tmp_path / "cache" / "proxy").glob("*.npy"))) == 4


def test_a_cache_build_cut_short_leaves_no_cache(tmp_path):
    images, _ = index_folder(jpeg_folder(tmp_path / "data", classes=2, per_class=4))
    tmp_path = tmp_path / "cache"

    def failing(images, size):
        yield np.zeros((4, 3, size, size), np.uint8), np.zeros(4, np.int64), []
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        cached_images(images, 8, tmp_path, failing)
    assert list(tmp_path.glob("*.npy")) == [] and list(tmp_path.glob("*.json")) == []
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


MAPPED = """
import sys
import numpy as np
from effnet.nas.data.images import ArrayImages
def anon():
    return int(next(l for l in open('/proc/self/status') if l.startswith('RssAnon')).split()[1])
images = ArrayImages(path=sys.argv[1])
before = anon()
total = sum(int(images.get()[i].sum()) for i in range(len(images.get())))
print(anon() - before)
"""


def test_a_memory_mapped_cache_stays_out_of_private_memory(tmp_path):
    """Reading every image of a 48 MB cache adds almost nothing to the process's anonymous (private) memory:
    the pages belong to the page cache, shared by every process that maps the file."""
    path = tmp_path / "cache.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (1000, 3, 128, 128), dtype=np.uint8))
    grown_kb = int(
        subprocess.run([sys.executable, "-c", MAPPED, str(path)], capture_output=True, text=True, check=True).stdout
    )
    assert grown_kb < 4 * 1024, f"private memory grew {grown_kb} KB reading a 48 MB cache"


def test_a_validation_batch_of_undecodable_files_is_passed_over_and_named(tmp_path):
    """At batch size 1 a bad validation file is a batch with no image: training goes on, the accuracy is over the
    files that decoded, and the file is named once although two passes (raw and EMA weights) met it."""
    from effnet.nas.net.spec_file import spec_from_dict
    from effnet.nas.training.job import TrainConfig
    from effnet.nas.training.trainer import train_network

    jpeg_folder(tmp_path / "data", classes=2, per_class=3, val_per_class=2)
    (tmp_path / "data" / "val" / "class0" / "0.jpg").write_text("not a picture")
    spec = spec_from_dict(
        {
            "stem": {"out_channels": 8},
            "head": {"out_channels": 16},
            "stages": [{"block": "mbconv", "repeats": 1, "kernel": 3, "stride": 2, "expand": 1, "out_channels": 8}],
        }
    )
    result = train_network(
        TrainConfig(
            spec=spec,
            data=str(tmp_path / "data"),
            resolution=16,
            epochs=1,
            batch_size=1,
            run_dir=tmp_path / "run",
            loader_workers=0,
            device="cpu",
        )
    )
    assert [Path(s.split(":")[0]).name for s in result.skipped] == ["0.jpg"]
    assert result.top1 in (0.0, 1 / 3, 2 / 3, 1.0)  # over the 3 validation images that decoded


TRAIN_RSS = """
import sys
from effnet.nas.net.spec_file import load_spec
from effnet.nas.training.job import TrainConfig
from effnet.nas.training.trainer import train_network
train_network(TrainConfig(spec=load_spec(sys.argv[1]), data=sys.argv[2], resolution=96, epochs=1, batch_size=16,
                          run_dir=sys.argv[3], loader_workers=0, precise_bn=1))
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])  # peak RSS, KB
"""


@pytest.mark.slow
def test_training_memory_does_not_grow_with_the_dataset(tmp_path):
    """One epoch at 96 px over 60 and over 900 images (about 120 x 90 px JPEGs), decoded in the training process
    itself: the peak memory grows by less than a fifth (measured 1.09: the C heap keeps what images of
    varied sizes leave behind). Holding the decoded dataset, as the loader once did (float32, several
    copies), measured 1.32 on these same two folders."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "stem: {out_channels: 8}\nstages:\n- {block: mbconv, repeats: 1, kernel: 3, stride: 2, "
        "expand: 1, out_channels: 8}\nhead: {out_channels: 16}\n"
    )
    peaks = []
    for count in (20, 300):
        data = jpeg_folder(tmp_path / f"data{count}", classes=3, per_class=count, sizes=(90, 120))
        result = subprocess.run(
            [sys.executable, "-c", TRAIN_RSS, str(spec), str(data), str(tmp_path / f"run{count}")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        peaks.append(int(result.stdout.split()[-1]))
    assert peaks[1] / peaks[0] < 1.2, peaks


def test_a_search_over_a_folder_with_a_bad_file_says_so_and_records_it(tmp_path):
    from typer.testing import CliRunner

    from effnet.cli.app import app

    from postgres import TINY_SEARCH

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    (data / "class1" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    args = [
        *TINY_SEARCH,
        "--data",
        str(data),
        "--trials",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--run-dir",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(app, ["search", *args])
    assert result.exit_code == 0, result.output
    assert "warning: 1 image file(s) did not decode and were left out (first: " in result.stderr
    import yaml

    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["settings"]["data"]
    assert record["skipped"] == 1 and "broken.jpg: cannot read the image" in record["skipped_files"][0]
    assert record["train_images"] + record["val_images"] == 12


def test_a_training_counts_only_the_images_that_decoded_in_each_split(tmp_path):
    """4 + 2 images a class, and one file of each split that does not decode: run.yaml says 8 trained and 4
    validated on, as a search over the same folder does (it said 9 and 5, the files as listed)."""
    from typer.testing import CliRunner

    from effnet.cli.app import app

    from postgres import TINY_BASE

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=4, val_per_class=2)
    (data / "train" / "class0" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (data / "val" / "class1" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    args = [TINY_BASE, "--data", str(data), "--resolution", "16", "--epochs", "1", "--batch-size", "4"]
    result = CliRunner().invoke(app, ["train", *args, "--loader-workers", "0", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    import yaml

    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["settings"]["data"]
    assert (record["train_images"], record["val_images"], record["skipped"]) == (8, 4, 2)


def test_a_grid_over_a_folder_with_a_bad_file_says_so_once_not_once_per_resolution(tmp_path):
    """The grid's proxy reads the folder at each of its resolutions (16, 18 and 19 px here); the file that does
    not decode is the same file each time and is named once."""
    from typer.testing import CliRunner

    from effnet.cli.app import app

    from postgres import TINY_BASE

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    (data / "class1" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    grid = ["--alpha-range", "1.1:1.3", "--beta-range", "1.0:1.2", "--gamma-range", "1.0:1.2", "--step", "0.1"]
    proxy = ["--proxy", "zero-cost", "--proxy-resolution", "16", "--batch-size", "8", "--threads", "1"]
    args = ["--base", TINY_BASE, *grid, "--tolerance", "0.15", *proxy, "--data", str(data)]
    result = CliRunner().invoke(app, ["grid-scale", *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("did not decode and were left out") == 1, result.stderr
    import yaml

    records = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["result"]["data"]
    assert len(records) == 3 and all(r["skipped"] == 1 for r in records.values())  # each resolution's own record


def test_decoding_on_the_device_gives_the_views_the_workers_give(tmp_path):
    """The nvjpeg path (here on the CPU: torchvision's batched decode_jpeg) draws the same random boxes from the
    same seeds; only the resizing differs (tensor against PIL bicubic), by a few grey levels. A PNG among the
    JPEGs is decoded in the worker; a broken file and a truncated one are named by both paths."""
    from effnet.nas.training.batches import TrainingBatches
    from effnet.nas.training.distributed import Distributed
    from effnet.nas.training.recipe import Recipe

    data = jpeg_folder(tmp_path / "data", classes=2, per_class=8, val_per_class=2, sizes=(60, 100))
    Image.new("RGB", (80, 70), (10, 220, 30)).save(data / "train" / "class0" / "flat.png")
    (data / "train" / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    whole = (data / "train" / "class1" / "0.jpg").read_bytes()
    (data / "train" / "class1" / "cut.jpg").write_bytes(whole[: len(whole) // 3])  # a sound header, then nothing
    splits = training_data(str(data), 32, seed=0)
    recipe = Recipe(
        data=str(data),
        resolution=32,
        epochs=1,
        batch_size=len(splits.train) - 1,
        lr=0.01,
        warmup_epochs=0,
        augment="light",
    )
    views = {}
    for decode in ("workers", "device"):
        loaders = TrainingBatches(splits, recipe, Distributed(), torch.device("cpu"), workers=0, decode=decode)
        ((images, labels),) = list(loaders.epoch(1, 1, keep=0))
        views[decode] = (images, labels, loaders.skipped)
    (a, labels_a, skipped_a), (b, labels_b, skipped_b) = views["workers"], views["device"]
    assert torch.equal(labels_a, labels_b) and a.shape == b.shape
    assert (a - b).abs().mean().item() < 0.05  # normalised units: about 3 grey levels of 255
    names = [sorted(Path(s.split(":")[0]).name for s in skipped) for skipped in (skipped_a, skipped_b)]
    assert names[0] == names[1] == ["broken.jpg", "cut.jpg"]
