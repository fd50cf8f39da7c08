"""Hand-encoded PNG files for the kinds Pillow does not write (16-bit RGB(A), 2/4-bit grey) and for crafted headers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["png_chunk", "write_png", "png_header_only"]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _ihdr(width: int, height: int, depth: int, color: int) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))


def write_png(path: Path, pixels: np.ndarray, depth: int, color: int) -> Path:
    """``pixels`` (H x W or H x W x C) as a PNG of bit ``depth`` and ``color`` type (0 grey, 2 RGB, 6 RGBA)."""
    h, w = pixels.shape[:2]
    rows = []
    for row in pixels:
        if depth == 16:
            raw = row.astype(">u2").tobytes()
        elif depth == 8:
            raw = row.astype(np.uint8).tobytes()
        else:  # 1, 2, 4-bit grey: packed, most significant bits first
            per_byte = 8 // depth
            padded = np.zeros(((w + per_byte - 1) // per_byte) * per_byte, dtype=np.uint8)
            padded[:w] = row
            groups = padded.reshape(-1, per_byte)
            raw = bytes(int(sum(int(v) << (8 - depth * (k + 1)) for k, v in enumerate(g))) for g in groups)
        rows.append(b"\x00" + raw)
    data = b"\x89PNG\r\n\x1a\n" + _ihdr(w, h, depth, color) + png_chunk(b"IDAT", zlib.compress(b"".join(rows))) + png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """An 8-bit grey PNG whose header claims ``width`` x ``height`` and whose pixel data is a few bytes: a size bomb."""
    data = b"\x89PNG\r\n\x1a\n" + _ihdr(width, height, 8, 0) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path
