"""Little image files for tests: a flat grey PNG, and a file that looks like a PNG but is not one."""

from __future__ import annotations

from pathlib import Path


def write_gray_png(path: Path, size: int = 64, value: int = 0) -> Path:
    """An 8-bit ``size`` x ``size`` greyscale PNG of one ``value`` at ``path`` (folders created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), color=value).save(path)
    return path


def write_broken_png(path: Path) -> Path:
    """A file with the PNG signature and nothing decodable after it (an unreadable image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return path
