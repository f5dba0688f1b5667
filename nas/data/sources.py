"""Where a run's images come from: the one entry to the data layer for every consumer.

- `training_data(source, resolution, seed)` for `effnet train`: an image folder streams from its files
  (its val/, or a held-out fifth when it has none); the built-in data sets sit in memory at their own
  small size, resized as they are read.
- `proxy_data(config, seed)` for the accuracy proxies (search, grid, proxy-check): MnasNet-style, the
  proxy's validation images are held out of the folder's *training* images (per class, from the seed;
  a folder's own val/ is left for the final evaluation), and both splits are decoded once into caches
  at the proxy size (`effnet.nas.data.cache`) that every worker memory-maps.
- `check_source(source)` refuses a bad source before anything starts (`effnet.nas.data.facts.data_facts`
  tells its class count and median image size without loading torch).

A source is ``digits``, ``synthetic`` or an image-folder path (a folder literally named ``digits``
is reached as ``./digits``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effnet.nas.data import builtin
from effnet.nas.data.builtin import BUILTIN_SOURCES
from effnet.nas.data.cache import cached_images, default_cache_dir
from effnet.nas.data.folder import check_decodable, held_out_split, index_folder, resolve_data_path
from effnet.nas.data.images import ImageSet
from effnet.nas.data.loader import EpochSampler, TransformedImages, default_loader_workers, make_loader
from effnet.nas.data.transforms import eval_size, prepare_transform
from effnet.nas.errors import InputError
from effnet.nas.progress import Progress, ProgressCallback


@dataclass(frozen=True)
class DataSplits:
    """A run's training and validation images, to be shown to a network at `resolution`, `stored` as files
    (decoded as they stream), prepared (a cache at a size of at least `resolution`) or square (the small
    built-in images); see `effnet.nas.data.transforms`. `skipped` names the files left out because they
    do not decode."""

    name: str
    train: ImageSet
    val: ImageSet
    resolution: int
    stored: str
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """What the user should know of the data: a damaged cache rebuilt."""

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def in_channels(self) -> int:
        return 3


def data_record(data: DataSplits, shown: int = 20) -> dict:
    """What a run record says of its data: sizes, and the files left out (the first `shown` of them)."""
    return {
        "source": data.name,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "classes": data.num_classes,
        "resolution": data.resolution,
        "skipped": len(data.skipped),
        "skipped_files": list(data.skipped[:shown]),
        "notes": list(data.notes),
    }


def is_builtin(source: str) -> bool:
    return source in BUILTIN_SOURCES


@functools.lru_cache(maxsize=4)
def _index(path: str) -> tuple[ImageSet, ImageSet | None]:
    return index_folder(path)


def _folder(source: str) -> tuple[ImageSet, ImageSet | None]:
    return _index(str(resolve_data_path(source)))


def check_source(source: str) -> None:
    """Refuse a missing or malformed data folder (built-in sources are always there)."""
    if not is_builtin(source):
        _folder(source)


def _builtin(source: str, seed: int) -> ImageSet:
    return builtin.digits() if source == "digits" else builtin.synthetic(seed)


def training_data(source: str, resolution: int, seed: int) -> DataSplits:
    """`effnet train`'s data: a folder's train/ and val/ (or a held-out fifth of it), streamed; built-in
    sets in memory, a fifth held out."""
    if is_builtin(source):
        train, val = held_out_split(_builtin(source, seed), seed)
        return DataSplits(source, train, val, resolution, stored="square")
    train, given_val = _folder(source)
    check_decodable(train, "train" if given_val is not None else "")
    if given_val is not None:
        check_decodable(given_val, "val")
    train, val = held_out_split(train, seed) if given_val is None else (train, given_val)
    return DataSplits(train.name, train, val, resolution, stored="files")


def proxy_data(
    source: str,
    resolution: int,
    seed: int,
    *,
    train_images: int | None = None,
    val_images: int | None = None,
    cache_dir: Path | None = None,
    loader_workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> DataSplits:
    """The proxy's data at `resolution`: `val_images` held out of the training images per class (default
    a fifth, at most 50,000) and `train_images` of the rest (default all), from `seed`; a folder's are
    decoded once into caches in `cache_dir` (default `default_cache_dir()`)."""
    if is_builtin(source):
        train, val = held_out_split(_builtin(source, seed), seed, val_images, train_images)
        return DataSplits(source, train, val, resolution, stored="square")
    pool, _ = _folder(source)
    train, val = held_out_split(pool, seed, val_images, train_images)
    size, folder = eval_size(resolution), Path(cache_dir) if cache_dir else default_cache_dir()
    decode = _decoder(loader_workers, on_progress)
    cached_train = cached_images(train, size, folder / "proxy", decode)
    cached_val = cached_images(val, size, folder / "proxy", decode)
    skipped = cached_train.skipped + cached_val.skipped
    present = set(cached_train.images.labels.tolist()) | set(cached_val.images.labels.tolist())
    for label, name in enumerate(pool.classes):
        if label not in present:
            reason = next((s for s in skipped if f"/{name}/" in s), "no image decodes")
            raise InputError(
                f"{pool.root}: class {name!r} has no image that decodes ({reason}); fix or remove its files"
            )
    notes = tuple(cache.rebuilt for cache in (cached_train, cached_val) if cache.rebuilt)
    return DataSplits(
        pool.name, cached_train.images, cached_val.images, resolution, stored="prepared", skipped=skipped, notes=notes
    )


def _decoder(workers: int | None, on_progress: ProgressCallback | None) -> Callable[[ImageSet, int], Iterator]:
    """Decode files into prepared squares in loader worker processes, in order, reporting progress."""

    def decode(images: ImageSet, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        count = default_loader_workers(images) if workers is None else workers
        dataset = TransformedImages(images, prepare_transform(size), draft=size)
        loader = make_loader(dataset, EpochSampler(len(images)), 64, count, pin=False, drop_last=False)
        done = 0
        for batch in loader:
            done += len(batch.labels) + len(batch.skipped)
            if on_progress is not None:
                on_progress(
                    Progress(
                        done, len(images), f"decoding {len(images):,} images at {size} px into a cache", preparing=True
                    )
                )
            yield batch.images.numpy(), batch.labels.numpy(), batch.skipped

    return decode
