"""Image folders the tests write: JPEGs of varied sizes and aspect ratios, and files that are hard to read."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_folder(
    root: Path,
    classes: int = 3,
    per_class: int = 8,
    val_per_class: int = 0,
    seed: int = 0,
    sizes: tuple[int, int] = (24, 96),
) -> Path:
    """`root/<class>/i.jpg` (or train/ and val/ when `val_per_class`): class c has channel c bright, each
    image of a random width and height in `sizes`."""
    rng = np.random.default_rng(seed)
    splits = [("train", per_class), ("val", val_per_class)] if val_per_class else [("", per_class)]
    for split, count in splits:
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                width, height = (int(v) for v in rng.integers(*sizes, size=2))
                pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
                pixels[..., c % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def png_16bit_rgb(path: Path, pixels: np.ndarray) -> Path:
    """A 48-bit RGB PNG written by hand (Pillow writes no such files): `pixels` is (H, W, 3) uint16."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def png_bomb(path: Path, side: int = 9_000) -> Path:
    """A grey PNG of side x side pixels (81 megapixels for the default) that compresses to about 80 KB."""
    row = b"\x00" + bytes(side)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        checksum = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path
