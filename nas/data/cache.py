"""Decoded caches of the proxy's images: decoded once, memory-mapped by every process that trains on them.

A proxy trains hundreds of candidates on the same images at the same small size. Decoding them for
each candidate would cost far more than the training; holding them decoded in each process's memory
would cost W copies. So each (image files, size) is decoded once into one uint8 .npy file of
prepared images (short side resized to `size`, centre square), written with plain file writes (after a
check that the disk has room for it: a write into a memory map would end the process with SIGBUS on a
full disk) under a temporary name that is removed on any error or stop signal, renamed when complete
(a crash leaves no half cache), and memory-mapped read-only by every worker of
every study and grid point on the machine: the pages are shared through the page cache, so a worker's
private memory does not grow with the data or with the number of workers.

The file's name is a digest of what it holds (the files' paths, sizes and modification times, their
labels, the size and this layout's version), so a changed dataset builds a new cache and an unchanged
one is found again. A lock file makes concurrent builders of one cache wait for the first. Images that
do not decode are left out, with their paths in the cache's record.

A cache found is checked before it is used (`cache_problem`): its record must be the one written for these
images and size, and the array's header, shape, type and byte count must match it. A damaged one (a file cut
short, another file under its name, an edited record) is rebuilt once, and the rebuild said in `rebuilt`;
one still damaged after that is an `InputError`, never read as it is.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effnet.nas.data.images import ArrayImages, ImageSet
from effnet.nas.errors import InputError
from effnet.nas.files import MIN_FREE_BYTES, atomic_write_text, exclusive_lock, write_failure

LAYOUT = 1
"""Bump when what a cache file holds changes."""
CACHE_ENV = "EFFNET_CACHE"


def default_cache_dir() -> Path:
    """EFFNET_CACHE, else $XDG_CACHE_HOME/effnet, else ~/.cache/effnet."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "effnet"


@dataclass(frozen=True)
class CachedImages:
    """A cache: the prepared images and, in order, what was left out and why."""

    images: ImageSet
    skipped: tuple[str, ...]
    built: bool
    """True when this call decoded it, False when an earlier one had."""
    rebuilt: str | None = None
    """Why a damaged cache found under this name was rebuilt, if one was."""


def cache_key(images: ImageSet, size: int) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"layout": LAYOUT, "size": size, "root": str(images.root), "classes": images.classes}).encode()
    )
    paths = images.paths
    assert paths is not None, "a cache key is a set of files' key"
    for index in range(len(images)):
        path = images.file(index)
        try:
            stat = path.stat()
            digest.update(b"%s\0%d\0%d\0%d\n" % (paths[index], stat.st_size, stat.st_mtime_ns, images.labels[index]))
        except OSError:
            digest.update(b"%s\0missing\n" % paths[index])
    return digest.hexdigest()[:24]


Decode = Callable[[ImageSet, int], Iterator[tuple[np.ndarray, np.ndarray, list[str]]]]
"""(images, size) -> batches of (prepared uint8 images, their labels, problems of the left-out ones)."""


def cached_images(images: ImageSet, size: int, cache_dir: Path, decode: Decode) -> CachedImages:
    """The cache of `images` at `size` in `cache_dir`, built with `decode` if it is not there yet, rebuilt once
    if it is damaged (see the module notes)."""
    key = cache_key(images, size)
    array_path, record_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    built, rebuilt = False, None
    for path in (cache_dir, array_path, record_path):
        if path.exists() and path.is_dir() != (path == cache_dir):
            kind = "a directory" if path.is_dir() else "a file"
            raise InputError(
                f"{path} is {kind} where effnet keeps its proxy cache; move it away or choose another --cache-dir"
            )
    with exclusive_lock(cache_dir / f"{key}.lock", "proxy cache"):
        if not (array_path.exists() and record_path.exists()):
            _build(images, size, decode, array_path, record_path)
            built = True
        problem = cache_problem(images, size, array_path, record_path)
        if problem is not None and not built:
            rebuilt = f"the proxy cache {array_path} was damaged ({problem}); it was decoded again"
            _build(images, size, decode, array_path, record_path)
            built, problem = True, cache_problem(images, size, array_path, record_path)
        if problem is not None:
            raise InputError(
                f"the proxy cache {array_path} is damaged right after it was built ({problem}); "
                "check the disk, or choose another --cache-dir"
            )
    record = json.loads(record_path.read_text())
    labels = np.asarray(record["labels"], dtype=np.int64)
    cached = ImageSet(images.name, images.classes, labels, images=ArrayImages(path=array_path))
    return CachedImages(cached, tuple(record["skipped"]), built, rebuilt)


def cache_problem(images: ImageSet, size: int, array_path: Path, record_path: Path) -> str | None:
    """What is wrong with the cache files of `images` at `size`, or None: a record that is not the one written
    for them, an array whose header, shape, type or length does not match the record."""
    try:
        record = json.loads(record_path.read_bytes())
    except (ValueError, OSError) as err:
        return f"its record does not read: {' '.join(str(err).split())[:100]}"
    if not (
        isinstance(record, dict)
        and isinstance(record.get("labels"), list)
        and isinstance(record.get("skipped"), list)
        and record.get("size") == size
        and record.get("classes") == list(images.classes)
        and all(type(x) is int and 0 <= x < len(images.classes) for x in record["labels"])
        and all(isinstance(x, str) for x in record["skipped"])
        and len(record["labels"]) + len(record["skipped"]) == len(images)
    ):
        return "its record is not the one written for these images"
    expected = (len(record["labels"]), 3, size, size)
    try:
        with open(array_path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        length = os.path.getsize(array_path)
    except (ValueError, OSError) as err:
        return f"its array header does not read: {' '.join(str(err).split())[:100]}"
    if tuple(shape) != expected or dtype != np.uint8 or fortran:
        return f"its array is {dtype} {list(shape)}, the record says uint8 {list(expected)}"
    if length != offset + int(np.prod(expected)):
        return f"its array file is {length:,} bytes, {offset + int(np.prod(expected)):,} expected"
    return None


def _build(images: ImageSet, size: int, decode: Decode, array_path: Path, record_path: Path) -> None:
    """Check the disk has room, write the decoded batches one after another into a temporary .npy (nothing of
    the size of the data in memory), cut it to the images kept if some were left out, then rename record and
    array into place."""
    tmp = array_path.with_name(f".{array_path.name}.{os.getpid()}.tmp")
    header = _npy_header((len(images), 3, size, size))
    needed = len(header) + len(images) * 3 * size * size
    free = shutil.disk_usage(array_path.parent).free
    if free < needed + MIN_FREE_BYTES:
        raise InputError(
            f"the proxy cache of {len(images)} images at {size} px needs {needed / 2**20:,.0f} MiB, "
            f"{free / 2**20:,.0f} MiB is free under {array_path.parent}; free some space or give "
            "another --cache-dir"
        )
    labels: list[int] = []
    skipped: list[str] = []
    try:
        with open(tmp, "xb") as handle:
            _write(handle, header, tmp)
            for batch, batch_labels, problems in decode(images, size):
                batch = np.ascontiguousarray(batch, dtype=np.uint8)
                if batch.shape[1:] != (3, size, size) or len(batch) != len(batch_labels):
                    raise ValueError(
                        f"decoded batch of shape {batch.shape} for {len(batch_labels)} labels at {size} px"
                    )
                _write(handle, batch.data.cast("B"), tmp)
                labels.extend(int(label) for label in batch_labels)
                skipped.extend(problems)
            if len(labels) < len(images):  # the kept images were written first to last: a header for them, no copy
                handle.seek(0)
                _write(handle, _npy_header((len(labels), 3, size, size), len(header)), tmp)
                handle.truncate(len(header) + len(labels) * 3 * size * size)
            handle.flush()
            os.fsync(handle.fileno())
        atomic_write_text(
            record_path,
            json.dumps({"labels": labels, "skipped": skipped, "size": size, "classes": list(images.classes)}),
        )
        os.replace(tmp, array_path)
    finally:
        tmp.unlink(missing_ok=True)


def _write(handle: io.BufferedWriter, data: bytes | memoryview, path: Path) -> None:
    try:
        handle.write(data)
    except OSError as err:
        raise write_failure(path, err) from None


def _npy_header(shape: tuple[int, ...], length: int | None = None) -> bytes:
    """The .npy (version 1.0) header of a uint8 array of `shape`; with `length`, padded with spaces to that many
    bytes (a header for fewer images than first written, so the data stays where it is)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    header = buffer.getvalue()
    if length is None or len(header) == length:
        return header
    text = header[10:].rstrip(b" \n")
    text += b" " * (length - 10 - len(text) - 1) + b"\n"
    return header[:8] + struct.pack("<H", len(text)) + text
