"""Which images train and which are held out: folder layouts, image checks, the stratified split, split.json.

Two layouts are understood:

* class-per-folder (``DATA_DIR/normal/*.jpg``, ...): a seeded, stratified split
  holds out ``val_fraction`` of every class;
* Kaggle (``DATA_DIR/train/<class>/`` and ``DATA_DIR/test/<class>/``): ``test/``
  is the evaluation set and nothing is split.

Class names are the paper's canonical names in the paper's order
(``normal/ pneumonia/ covid/`` -> ``("Normal", "Pneumonia", "COVID-19")``).
Every image is decoded once up front; unreadable ones are skipped and listed
(or stop the run, as the caller chooses), and a class left without images is an error.
The split is written to ``RUN_DIR/split.json`` with paths relative to the data
folder, so evaluation and parity checks can reuse exactly the held-out files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_write_json
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.validate import check_fraction
from dacovid_export.data.fingerprint import Fingerprint, FingerprintSet, ImageRecord, fingerprint_decoded
from dacovid_export.data.image_folder import (
    SPLIT_FORMAT,
    canonical_class_name,
    load_split_json,
    order_classes,
    scan_class_folders,
    split_part_paths,
)
from dacovid_export.data.preprocessing import load_image

__all__ = [
    "SPLIT_FILENAME",
    "Layout",
    "ClassFiles",
    "DataSplit",
    "detect_layout",
    "kaggle_subfolders",
    "scan_dataset",
    "verify_images",
    "stratified_split",
    "make_split",
    "write_split",
    "read_split",
    "find_split_file",
    "heldout_files",
    "check_split_files",
]

SPLIT_FILENAME = "split.json"
_SPLIT_VERSION = 1
_log = get_logger("train")

Layout = Literal["folders", "kaggle"]
# canonical class name -> image paths, in class order
ClassFiles = dict[str, list[Path]]


@dataclasses.dataclass(frozen=True)
class DataSplit:
    """The training and evaluation files of a run; paths relative to ``data_dir``, POSIX separators."""

    data_dir: Path
    layout: Layout
    class_names: tuple[str, ...]
    train: Mapping[str, tuple[str, ...]]
    val: Mapping[str, tuple[str, ...]]
    seed: int
    val_fraction: float | None  # None for the Kaggle layout: test/ is given, not drawn
    skipped: tuple[str, ...] = ()
    # content fingerprints of the train and val images (None: a split written before they were recorded)
    record: ImageRecord | None = None

    def items(self, which: Literal["train", "val"]) -> list[tuple[Path, int]]:
        """``[(absolute path, label index)]`` in class order, then file order."""
        part = self.train if which == "train" else self.val
        return [(self.data_dir / rel, label) for label, name in enumerate(self.class_names) for rel in part[name]]

    def counts(self, which: Literal["train", "val"]) -> dict[str, int]:
        part = self.train if which == "train" else self.val
        return {name: len(part[name]) for name in self.class_names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPLIT_FORMAT,
            "format_version": _SPLIT_VERSION,
            "data_dir": str(self.data_dir),
            "layout": self.layout,
            "class_names": list(self.class_names),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "counts": {"train": self.counts("train"), "val": self.counts("val")},
            "skipped": list(self.skipped),
            "train": {name: list(self.train[name]) for name in self.class_names},
            "val": {name: list(self.val[name]) for name in self.class_names},
            **({"images": self.record.to_dict()} if self.record is not None else {}),
        }

    def sha256(self) -> str:
        """Digest of the file lists (not of the folder's location): identifies the split in checkpoints."""
        data = self.to_dict()
        core = {"class_names": list(self.class_names), "train": data["train"], "val": data["val"]}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "split") -> "DataSplit":
        if not isinstance(data, Mapping) or data.get("format") != SPLIT_FORMAT:
            raise UserInputError(f"{source} is not a dacovid-train split file (no '{SPLIT_FORMAT}' format tag)")
        try:
            names = tuple(str(n) for n in data["class_names"])
            return cls(
                data_dir=Path(data["data_dir"]),
                layout=data["layout"],
                class_names=names,
                train={n: tuple(str(p) for p in data["train"][n]) for n in names},
                val={n: tuple(str(p) for p in data["val"][n]) for n in names},
                seed=int(data["seed"]),
                val_fraction=None if data.get("val_fraction") is None else float(data["val_fraction"]),
                skipped=tuple(str(p) for p in data.get("skipped", ())),
                record=ImageRecord.from_dict(data["images"], source) if "images" in data else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{source} is incomplete or malformed ({type(exc).__name__}: {exc})") from exc


def kaggle_subfolders(root: Path) -> tuple[Path, Path] | None:
    """``(train dir, test dir)`` when ``root`` has both (any letter case), else ``None``."""
    if not root.is_dir():
        return None
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs and "test" in subdirs:
        return subdirs["train"], subdirs["test"]
    return None


def detect_layout(data_dir: str | os.PathLike[str]) -> Layout:
    """``"kaggle"`` when ``data_dir`` holds both ``train/`` and ``test/`` folders, else ``"folders"``."""
    return "kaggle" if kaggle_subfolders(Path(data_dir)) is not None else "folders"


def _canonical_classes(folders: Mapping[str, list[Path]], where: Path) -> ClassFiles:
    """Folder name -> files  ==>  canonical class name -> files, in the paper's class order."""
    out: ClassFiles = {}
    origin: dict[str, str] = {}
    for folder in order_classes(list(folders)):
        name = canonical_class_name(folder)
        if name in out:
            raise UserInputError(
                f"folders {origin[name]!r} and {folder!r} in {str(where)!r} both mean class {name!r}: merge them or remove one"
            )
        out[name], origin[name] = list(folders[folder]), folder
    return out


def scan_dataset(data_dir: str | os.PathLike[str]) -> tuple[Layout, ClassFiles, ClassFiles | None]:
    """``(layout, training files, evaluation files or None)``; the evaluation files exist for the Kaggle layout only."""
    root = Path(data_dir)
    kaggle = kaggle_subfolders(root)
    if kaggle is None:
        return "folders", _canonical_classes(scan_class_folders(root, min_classes=2), root), None
    train_dir, test_dir = kaggle
    train = _canonical_classes(scan_class_folders(train_dir, min_classes=2), train_dir)
    test = _canonical_classes(scan_class_folders(test_dir, min_classes=1), test_dir)
    if set(test) != set(train):
        raise UserInputError(
            f"{str(test_dir)!r} has classes {sorted(test)} but {str(train_dir)!r} has {sorted(train)}: "
            "both need the same class folders"
        )
    return "kaggle", train, {name: test[name] for name in train}


def verify_images(
    files: ClassFiles,
    *,
    unreadable: Literal["skip", "error"] = "skip",
    say: bool = False,
    show_progress: bool = False,
    strict_dicom: bool = False,
    fingerprints: dict[Path, Fingerprint] | None = None,
) -> tuple[ClassFiles, list[str]]:
    """Decode every image once. Returns the readable files and one ``"path: reason"`` line per skipped file.

    ``strict_dicom``: a DICOM that is not a chest CR/DX counts as unreadable (else it is read, with a warning).
    ``say``: name each skipped file, and their count, on the ``dacovid_export.train`` logger.
    ``fingerprints``: filled with each readable image's content fingerprint, from the same decode.

    With ``unreadable="error"`` the first bad file raises; either way a class
    without a single readable image is a :class:`UserInputError`.
    """
    total = sum(len(v) for v in files.values())
    readable: ClassFiles = {}
    skipped: list[str] = []
    with progress_bar(total=total, desc="checking images", unit="img", enabled=show_progress) as bar:
        for name, paths in files.items():
            good: list[Path] = []
            for path in paths:
                try:
                    image = load_image(path, strict_dicom=strict_dicom)
                    if fingerprints is not None:
                        fingerprints[path] = fingerprint_decoded(_file_bytes(path), image)
                except UserInputError as exc:
                    if unreadable == "error":
                        raise UserInputError(f"{exc} (set unreadable to 'skip' to leave such files out)") from exc
                    skipped.append(f"{path}: {exc}")
                    info_if(_log, f"skipping unreadable image {str(path)!r}", say)
                else:
                    good.append(path)
                bar.update(1)
            if not good:
                raise UserInputError(f"class {name!r} has no readable images ({len(paths)} file(s) failed to decode)")
            readable[name] = good
    if skipped:
        info_if(_log, f"skipped {len(skipped)} unreadable image(s) of {total}", say)
    return readable, skipped


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"image {str(path)!r} cannot be read: {exc}") from exc


def _record(train: ClassFiles, val: ClassFiles, fingerprints: Mapping[Path, Fingerprint], root: Path) -> ImageRecord:
    def table(files: ClassFiles) -> FingerprintSet:
        return FingerprintSet.of(fingerprints[p] for paths in files.values() for p in paths)

    return ImageRecord(table(train), table(val), f"the training run's record ({root})")


def stratified_split(files: ClassFiles, val_fraction: float, seed: int) -> tuple[ClassFiles, ClassFiles]:
    """Hold out ``round(n * val_fraction)`` (at least 1, at most n - 1) images of every class.

    Deterministic: files are sorted, and each class draws its permutation from
    its own generator seeded by ``(seed, crc32(class name))``, so adding or
    removing another class does not reshuffle this one.
    """
    check_fraction("val_fraction", val_fraction, strict=True)
    train: ClassFiles = {}
    val: ClassFiles = {}
    for name, paths in files.items():
        paths = sorted(paths)
        n = len(paths)
        if n < 2:
            raise UserInputError(f"class {name!r} has {n} readable image(s): a train/validation split needs at least 2")
        n_val = min(max(int(math.floor(n * val_fraction + 0.5)), 1), n - 1)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        order = rng.permutation(n)
        held = set(order[:n_val].tolist())
        val[name] = [p for i, p in enumerate(paths) if i in held]
        train[name] = [p for i, p in enumerate(paths) if i not in held]
    return train, val


def _relative(files: ClassFiles, root: Path) -> dict[str, tuple[str, ...]]:
    return {name: tuple(p.relative_to(root).as_posix() for p in paths) for name, paths in files.items()}


def make_split(
    data_dir: str | os.PathLike[str],
    *,
    val_fraction: float,
    seed: int,
    unreadable: Literal["skip", "error"] = "skip",
    say: bool = False,
    show_progress: bool = False,
    strict_dicom: bool = False,
) -> DataSplit:
    """Scan, check and split ``data_dir`` (see the module docstring for the layouts)."""
    # resolved once, before scanning, so every file path lies under it (symlinked files stay as named)
    root = Path(data_dir).resolve()
    layout, train_files, test_files = scan_dataset(root)
    fingerprints: dict[Path, Fingerprint] = {}  # filled while every image is decoded once
    if test_files is not None:
        info_if(_log, f"Kaggle layout: training on {root / 'train'}, evaluating on {root / 'test'} (val_fraction unused)", say)
        both = {n: train_files[n] + test_files[n] for n in train_files}
        readable, skipped = verify_images(
            both, unreadable=unreadable, say=say, show_progress=show_progress, strict_dicom=strict_dicom,
            fingerprints=fingerprints,
        )
        ok = {p for paths in readable.values() for p in paths}
        train = {n: [p for p in v if p in ok] for n, v in train_files.items()}
        val = {n: [p for p in v if p in ok] for n, v in test_files.items()}
        for part, label in ((train, "train"), (val, "test")):
            for name, paths in part.items():
                if not paths:
                    raise UserInputError(f"class {name!r} has no readable images in {label}/")
        fraction = None
    else:
        readable, skipped = verify_images(
            train_files, unreadable=unreadable, say=say, show_progress=show_progress, strict_dicom=strict_dicom,
            fingerprints=fingerprints,
        )
        train, val = stratified_split(readable, val_fraction, seed)
        fraction = val_fraction
    return DataSplit(
        data_dir=root,
        layout=layout,
        class_names=tuple(train),
        train=_relative(train, root),
        val=_relative(val, root),
        seed=seed,
        val_fraction=fraction,
        skipped=tuple(skipped),
        record=_record(train, val, fingerprints, root),
    )


def write_split(path: str | os.PathLike[str], split: DataSplit) -> Path:
    atomic_write_json(path, split.to_dict())
    return Path(path)


def read_split(path: str | os.PathLike[str]) -> DataSplit:
    return DataSplit.from_dict(load_split_json(path), source=f"split file {str(path)!r}")


def find_split_file(location: str | os.PathLike[str]) -> Path:
    """``split.json`` for a run folder, a checkpoint inside one, or the file itself."""
    location = Path(location)
    if location.is_dir():
        candidate = location / SPLIT_FILENAME
    elif location.suffix.lower() == ".json":
        candidate = location
    else:
        candidate = location.parent / SPLIT_FILENAME
    if not candidate.is_file():
        raise UserInputError(
            f"no {SPLIT_FILENAME} found for {str(location)!r} (looked for {str(candidate)!r}): "
            "give a run folder written by dacovid-train, a checkpoint inside one, or the split file"
        )
    return candidate


def heldout_files(run: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """The held-out (validation / Kaggle test) images of a run: ``{class name: [absolute paths]}``, class order.

    ``run`` is a run folder, a checkpoint inside it, or its ``split.json``.
    Missing files are an error: the split would no longer be the one trained on.
    """
    path = find_split_file(run)
    split = read_split(path)
    return split_part_paths(split.data_dir, split.val, "val", path)


def check_split_files(split: DataSplit) -> None:
    """Every file of a recorded split still exists (for ``--resume``)."""
    missing = [p for p, _ in (*split.items("train"), *split.items("val")) if not p.is_file()]
    if missing:
        raise UserInputError(
            f"{len(missing)} image(s) of the recorded split are missing (first: {str(missing[0])!r}); "
            "resume needs the same data folder the run started with"
        )
