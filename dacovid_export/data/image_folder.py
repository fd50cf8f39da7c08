"""Class-per-folder image trees, shared by training, calibration and parity.

Folder names map to a model's class names through known aliases, so a
``covid/ normal/ pneumonia/`` tree checks a model whose classes are
``("Normal", "Pneumonia", "COVID-19")``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.data.dicom import file_looks_like_dicom
from dacovid_export.data.preprocessing import IMAGE_EXTENSIONS

__all__ = [
    "SPLIT_FORMAT",
    "NO_IMAGES_HINT",
    "check_image_source",
    "find_images",
    "scan_class_folders",
    "canonical_class_name",
    "match_folders_to_classes",
    "order_classes",
    "is_split_file",
    "load_split_json",
    "read_split_file",
    "split_part_paths",
    "labelled_images",
]

# split.json written by dacovid-train: {"format": SPLIT_FORMAT, "data_dir": ..., "train": {class: [rel paths]}, "val": {...}}
SPLIT_FORMAT = "dacovid-split"
# what "holds no images" lists: the extensions, and DICOM of any name
NO_IMAGES_HINT = ", ".join(IMAGE_EXTENSIONS) + ", or DICOM files of any name"

_log = get_logger("data")

# lower-cased, punctuation-stripped folder name -> the paper's class name
_ALIASES: dict[str, str] = {
    "normal": "Normal",
    "nofinding": "Normal",
    "nofindings": "Normal",
    "healthy": "Normal",
    "pneumonia": "Pneumonia",
    "viralpneumonia": "Pneumonia",
    "bacterialpneumonia": "Pneumonia",
    "covid": "COVID-19",
    "covid19": "COVID-19",
    "covid2019": "COVID-19",
}
_PAPER_ORDER = ("Normal", "Pneumonia", "COVID-19")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_class_name(folder_name: str) -> str:
    """The paper's name for a known folder name (``no_findings`` -> ``Normal``), else the folder name."""
    return _ALIASES.get(_key(folder_name), folder_name)


def order_classes(folder_names: Sequence[str]) -> list[str]:
    """Folder names in the paper's class order (Normal, Pneumonia, COVID-19) when known, others after, sorted."""
    def rank(name: str) -> tuple[int, str]:
        canon = canonical_class_name(name)
        return (_PAPER_ORDER.index(canon) if canon in _PAPER_ORDER else len(_PAPER_ORDER), name)

    return sorted(folder_names, key=rank)


def _scan(folder: Path) -> tuple[list[Path], int]:
    """The images under ``folder`` (sorted) and how many of them are DICOM recognised by content, not by name.

    PACS exports name their files ``IM000001`` or by UID (``1.2.840....3``): a file without an
    image extension is read for its first 132 bytes (the preamble and ``DICM``, or a bare
    dataset's first tag: :func:`~dacovid_export.data.dicom.file_looks_like_dicom`), never more,
    so a folder of other large files stays cheap.
    """
    images: list[Path] = []
    by_content = 0
    for p in folder.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
            continue
        if file_looks_like_dicom(p):  # False for an unreadable file: not named as an image, not ours to report
            images.append(p)
            by_content += 1
    return sorted(images), by_content


def _say_by_content(folder: Path, count: int) -> None:
    if count:
        _log.info(f"images: {count} file(s) without an image extension under {str(folder)!r} taken as DICOM (by content)")


def find_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``folder`` (recursive, sorted, hidden files skipped): by extension, or DICOM by content.

    How many were taken as DICOM by content is said in one line (logger ``dacovid_export.data``).
    """
    folder = Path(folder)
    images, by_content = _scan(folder)
    _say_by_content(folder, by_content)
    return images


def scan_class_folders(root: str | os.PathLike[str], *, min_classes: int = 1) -> dict[str, list[Path]]:
    """``{folder_name: [image paths]}`` for each immediate subfolder of ``root`` that holds images.

    Images as :func:`find_images` finds them (DICOM by content included: one line for the whole tree).
    Raises :class:`UserInputError` for a missing root, a root without class folders,
    fewer than ``min_classes`` classes, or a class folder with no images.
    """
    root = Path(root)
    if not root.exists():
        raise UserInputError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise UserInputError(f"{str(root)!r} is not a folder: give a class-per-folder tree (one subfolder per class)")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        loose = find_images(root)
        hint = f" ({len(loose)} loose images found: put them in one subfolder per class)" if loose else ""
        raise UserInputError(f"image folder {str(root)!r} has no class subfolders{hint}")
    classes: dict[str, list[Path]] = {}
    total_by_content = 0
    for sub in subfolders:
        images, by_content = _scan(sub)
        if not images:
            raise UserInputError(f"class folder {str(sub)!r} holds no images ({NO_IMAGES_HINT})")
        classes[sub.name] = images
        total_by_content += by_content
    _say_by_content(root, total_by_content)
    if len(classes) < min_classes:
        raise UserInputError(f"image folder {str(root)!r} has {len(classes)} class folder(s); at least {min_classes} needed")
    return classes


def match_folders_to_classes(folder_names: Sequence[str], class_names: Sequence[str]) -> Mapping[str, int]:
    """``{folder_name: class index}``: exact names first, then the paper's aliases; unknown folders are an error."""
    by_key = {_key(c): i for i, c in enumerate(class_names)}
    by_canon = {_key(canonical_class_name(c)): i for i, c in enumerate(class_names)}
    mapping: dict[str, int] = {}
    for folder in folder_names:
        index = by_key.get(_key(folder), by_canon.get(_key(canonical_class_name(folder))))
        if index is None:
            raise UserInputError(
                f"image folder {folder!r} matches none of the model's classes {list(class_names)}; "
                "rename it or leave it out"
            )
        mapping[folder] = index
    return mapping


def is_split_file(path: str | os.PathLike[str]) -> bool:
    """True for a ``.json`` path: a training run's ``split.json`` stands in for an image folder."""
    return Path(path).suffix.lower() == ".json"


def check_image_source(path: str | os.PathLike[str], what: str, part: str = "") -> Path:
    """``path`` as a :class:`Path` when it is an image folder or a ``.json`` file (a dacovid-train split.json).

    The one "folder or split.json" rule of every option that takes images (``what``: how the
    message names it, e.g. ``"calibration data"``; ``part``: which part of a split.json is used).
    Only the kind is checked here; the folder's images and the split's format are read later.
    """
    path = Path(path)
    if not (path.is_dir() or (path.is_file() and is_split_file(path))):
        raise UserInputError(
            f"{what} {str(path)!r} is neither a directory nor a dacovid-train split.json{f' ({part})' if part else ''} "
            "(it does not exist or is not a folder of images)"
        )
    return path


def load_split_json(path: str | os.PathLike[str]) -> dict:
    """The raw contents of a dacovid-train ``split.json``; :class:`UserInputError` for anything else."""
    import json

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"split file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"split file {str(path)!r} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise UserInputError(
            f"{str(path)!r} is not a dacovid-train split file (no '{SPLIT_FORMAT}' format tag); "
            "give a class-per-folder image tree or a run's split.json"
        )
    return data


def read_split_file(path: str | os.PathLike[str], part: str) -> tuple[Path, dict[str, list[Path]]]:
    """``(data_dir, {class name: [image paths]})`` of one part (``"val"`` held-out, ``"train"``) of a split.json.

    Lets ``check`` run on exactly the images a model was validated on, and
    calibration draw only from the training images, without copying folders.
    """
    path = Path(path)
    data = load_split_json(path)
    classes = data.get(part)
    if not isinstance(classes, dict) or not classes:
        raise UserInputError(f"split file {str(path)!r} has no {part!r} images")
    data_dir = Path(str(data.get("data_dir", path.parent)))
    return data_dir, split_part_paths(data_dir, classes, part, path)


def split_part_paths(
    data_dir: Path, classes: Mapping[str, Sequence[str | os.PathLike[str]]], part: str, path: str | os.PathLike[str]
) -> dict[str, list[Path]]:
    """``{class name: [image paths]}`` of one part of the split file ``path``: its paths taken from ``data_dir``.

    The one place a split's listed images are resolved and checked: a missing one is an error
    (the split would no longer be the one trained on), and so is a part without images.
    """
    out: dict[str, list[Path]] = {}
    for name, files in classes.items():
        paths = [p if p.is_absolute() else data_dir / p for p in (Path(str(f)) for f in files)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserInputError(
                f"split file {str(path)!r}: {len(missing)} {part} image(s) of class {name!r} are missing "
                f"(first: {str(missing[0])!r}); was the data folder moved?"
            )
        if paths:
            out[str(name)] = paths
    if not out:
        raise UserInputError(f"split file {str(path)!r} has no {part!r} images")
    return out


def labelled_images(source: str | os.PathLike[str], *, part: str = "val") -> dict[str, list[Path]]:
    """``{class folder or class name: [paths]}`` from a class-per-folder tree or a run's split.json (its ``part``)."""
    if is_split_file(source):
        return read_split_file(source, part)[1]
    return scan_class_folders(source)
