"""Calibration images: a seeded, class-stratified sample, preprocessed exactly as for evaluation.

Choices, so that calibration is reproducible and its cache key means something:

- Sampling is stratified by class folder (``dacovid_export.data.image_folder.scan_class_folders``)
  and proportional to each class's share of the folder (largest remainder; every class
  gets at least one image when ``size`` allows). A flat folder of images without class
  subfolders is one stratum. Within a class the images are drawn without replacement
  by ``numpy.random.default_rng(seed)``; the result is sorted by relative path.
- At least :data:`MIN_CALIBRATION_IMAGES` images must be available. When fewer than
  ``size`` are available (but enough), all of them are used and a line on stderr says so.
- An unreadable sampled image stops the run with a :class:`UserInputError` naming the
  file (no skip-and-continue): skipping would silently calibrate on a different set
  than the one the hash and the report describe. Images that were not sampled are not
  opened, so a corrupt file elsewhere in the folder does not matter.
- Validation images (the INT8 guard's) are never calibration images: not the same file
  under another name (spelling, symlink, hard link) and not a byte-for-byte copy
  (:func:`check_image_sets` before any work, :func:`check_separate` on the loaded sets).
- ``CalibrationSet.sha256`` is a content hash: SHA-256 over the preprocessing settings
  and, for every selected image in order, its relative path and the SHA-256 of its
  bytes. It does not depend on mtimes, so copying the folder keeps the hash (and the
  INT8 calibration cache) valid, while any change to a selected image changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import file_identity, sha256_file
from dacovid_export.core.log import get_logger
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.validate import check_fraction, check_int
from dacovid_export.data.evidence import SortedImages, sort_images
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.image_folder import (
    find_images,
    is_split_file,
    match_folders_to_classes,
    read_split_file,
    scan_class_folders,
)
from dacovid_export.data.preprocessing import (
    IMAGE_EXTENSIONS,
    Preprocessing,
    load_image,
    preprocess,
)

__all__ = [
    "MIN_CALIBRATION_IMAGES",
    "MIN_VALIDATION_IMAGES",
    "DEFAULT_VALIDATION_SHARE",
    "MAX_VALIDATION_IMAGES",
    "MAX_QAT_IMAGES",
    "CalibrationSet",
    "check_image_sets",
    "check_separate",
    "find_calibration_images",
    "image_labels",
    "load_calibration_set",
    "load_validation_set",
    "split_calibration_set",
]

_log = get_logger("calibration")

MIN_CALIBRATION_IMAGES = 8
"""Fewer images than this give activation ranges that say more about the sample than the data."""

MIN_VALIDATION_IMAGES = 4
"""The accuracy guard's agreement on fewer images says nothing."""
DEFAULT_VALIDATION_SHARE = 0.25
MAX_VALIDATION_IMAGES = 256
MAX_QAT_IMAGES = 4096  # at most this many training images for the quantization-aware fine-tune (all of cxr3's)
# the validation draw must not repeat the calibration draw's random stream
_VALIDATION_SEED_OFFSET = 7919

_HASH_FORMAT = "dacovid-calibration-set/1"
_FLAT_STRATUM = ""  # the one stratum of a folder without class subfolders


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationSet:
    """Preprocessed calibration images.

    ``array``: float32 ``N x 3 x S x S`` (read-only), row ``i`` is ``paths[i]``.
    ``sha256``: content hash of the selection (see the module docstring).
    ``class_counts``: images taken per class folder (key ``""`` for a flat folder).
    ``requested_size``: the ``size`` asked for; ``len(paths)`` may be smaller.
    ``image_sha256``: the SHA-256 of each image file's bytes, row by row (empty when
    the set was not read from files), so copies are seen under any name.
    """

    array: np.ndarray
    paths: tuple[Path, ...]
    sha256: str
    root: Path
    preprocessing: Preprocessing
    class_counts: Mapping[str, int]
    requested_size: int
    seed: int
    image_sha256: tuple[str, ...] = ()
    # validation sets: what they stand on (see _evidence): unseen, excluded_training, training_record, fingerprints
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self) -> dict[str, object]:
        """JSON-serialisable summary for artifact metadata."""
        return {
            **self.evidence,
            "root": str(self.root),
            "images": len(self.paths),
            "requested_size": self.requested_size,
            "seed": self.seed,
            "class_counts": dict(self.class_counts),
            "sha256": self.sha256,
            "image_size": self.preprocessing.image_size,
        }


def image_labels(images: CalibrationSet, class_names: Sequence[str]) -> np.ndarray | None:
    """Each image's class index, read off its class folder; ``None`` where the images have no labels.

    No labels: a flat folder, or image folders that do not match the model's classes (then
    accuracy cannot be said, but agreement still can, so this is not an error). A dacovid-train
    split.json's images (layout "folders") sit in class folders too.
    """
    if not images.class_counts or _FLAT_STRATUM in images.class_counts or not class_names:
        return None
    # each image's own folder (a split.json's strata are class names, its images sit in folders like covid/)
    names = [p.parent.name for p in images.paths]
    try:
        mapping = match_folders_to_classes(sorted(set(names)), class_names)
    except UserInputError:
        return None
    return np.array([mapping[name] for name in names], dtype=np.int64)


def _strata(folder: Path, what: str = "calibration") -> dict[str, list[Path]]:
    if not folder.exists():
        raise UserInputError(f"{what} folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise UserInputError(f"{what} folder {str(folder)!r} is not a folder")
    has_subfolders = any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())
    if not has_subfolders:
        images = find_images(folder)
        if not images:
            raise UserInputError(
                f"{what} folder {str(folder)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return {_FLAT_STRATUM: images}
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        _log.info(f"{what}: {len(loose)} image(s) directly in {str(folder)!r} beside class folders are not used")
    return scan_class_folders(folder)


def _allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """Images per stratum: proportional to its size, largest remainder, >= 1 each when possible."""
    total = sum(counts.values())
    names = sorted(counts)
    exact = {name: size * counts[name] / total for name in names}
    quota = {name: int(exact[name]) for name in names}
    # hand out what flooring left over, largest fractional part first (ties: name order)
    for name in sorted(names, key=lambda n: (-(exact[n] - quota[n]), n))[: size - sum(quota.values())]:
        quota[name] += 1
    if size >= len(names):
        for name in names:
            if quota[name] == 0:
                donor = max(names, key=lambda n: (quota[n], n))
                quota[donor] -= 1
                quota[name] = 1
    return quota


def _image_digests(paths: list[Path], what: str) -> list[str]:
    digests = []
    for path in paths:
        try:
            digests.append(sha256_file(path))
        except OSError as exc:
            raise UserInputError(f"{what} image {str(path)!r} cannot be read: {exc}") from exc
    return digests


def _content_hash(root: Path, paths: list[Path], digests: list[str], preprocessing: Preprocessing) -> str:
    digest = hashlib.sha256()
    header = {"format": _HASH_FORMAT, "preprocessing": preprocessing.to_dict()}
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
    for path, image_sha256 in zip(paths, digests):
        digest.update(path.relative_to(root).as_posix().encode("utf-8"))
        digest.update(b"\0" + image_sha256.encode("ascii") + b"\n")
    return digest.hexdigest()


def _source_strata(folder: str | os.PathLike[str], part: str, what: str = "calibration") -> tuple[Path, dict[str, list[Path]]]:
    """``(root, {class: images})`` of a folder tree, or of one part of a dacovid-train split.json."""
    root = Path(folder)
    if is_split_file(root):
        _, strata = read_split_file(root, part)
        # hash and sort relative to the images' common folder, as for a folder tree
        root = Path(os.path.commonpath([str(p) for paths in strata.values() for p in paths]))
        if root.is_file():
            root = root.parent
        return root, strata
    return root, _strata(root, what)


def find_calibration_images(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, list[Path]]]:
    """The calibration images of ``folder`` (a folder tree, or a split.json's training part) by class, and their root.

    Cheap (no decoding): callers run it before long work so an empty or too small
    calibration set is reported first. :class:`UserInputError` for a missing or empty
    folder, or fewer than :data:`MIN_CALIBRATION_IMAGES` images.
    """
    root, strata = _source_strata(folder, "train")
    _available(root, strata, 0, "calibration")  # size 0: only the minimum is checked
    return root, strata


def _validation_count(root: Path, available: int, share: float, limit: int) -> int:
    """How many of ``available`` images :func:`split_calibration_set` holds out, or why it cannot."""
    n_val = min(limit, int(round(available * share)))
    if available - n_val < MIN_CALIBRATION_IMAGES or n_val < MIN_VALIDATION_IMAGES:
        raise UserInputError(
            f"calibration folder {str(root)!r} has {available} image(s): too few to hold out "
            f"{MIN_VALIDATION_IMAGES}+ validation images and keep {MIN_CALIBRATION_IMAGES}+ for calibration; "
            "add images or pass separate validation images (--validation-data)"
        )
    return n_val


def _check_args(
    preprocessing: Preprocessing, size: int, seed: int, what: str = "calibration", minimum: int = MIN_CALIBRATION_IMAGES
) -> None:
    if not isinstance(preprocessing, Preprocessing):
        raise UserInputError(f"preprocessing={preprocessing!r}: give a dacovid_export.data.preprocessing.Preprocessing")
    check_int(f"{what} size", size, minimum, why=" (64-512 images is typical)")
    check_int(f"{what} seed", seed, 0)


def _sample(strata: Mapping[str, list[Path]], take: int, seed: int) -> tuple[list[Path], dict[str, int]]:
    """A seeded sample of ``take`` images, stratified by class (see the module docstring)."""
    rng = np.random.default_rng(seed)
    quota = _allocate({name: len(images) for name, images in strata.items()}, take)
    selected: list[Path] = []
    for name in sorted(strata):
        images = strata[name]
        picks = rng.choice(len(images), size=quota[name], replace=False) if quota[name] else []
        selected.extend(images[int(i)] for i in sorted(picks))
    return selected, quota


@dataclasses.dataclass(frozen=True)
class _Selection:
    """Which images a set will hold, chosen without decoding any: what the loaders build and the pre-check decodes."""

    what: str  # "calibration" or "validation"
    root: Path
    strata: Mapping[str, list[Path]]  # every candidate, by class
    paths: tuple[Path, ...]  # the sample, sorted by relative path
    class_counts: Mapping[str, int]
    requested: int
    seed: int
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def candidates(self) -> tuple[Path, ...]:
        return tuple(p for paths in self.strata.values() for p in paths)


def _select(
    what: str, root: Path, strata: Mapping[str, list[Path]], take: int, requested: int, seed: int
) -> _Selection:
    selected, quota = _sample(strata, take, seed)
    selected.sort(key=lambda p: p.relative_to(root).as_posix())
    return _Selection(what, root, strata, tuple(selected), {name: quota[name] for name in sorted(strata)}, requested, seed)


def _unreadable(what: str, path: Path, exc: UserInputError) -> UserInputError:
    return UserInputError(
        f"{what} image {str(path)!r} is unreadable ({exc.__cause__ or exc}); remove or replace it "
        f"({what} stops rather than quietly using a different image set)"
    )


def _build_set(selection: _Selection, preprocessing: Preprocessing, exclude: frozenset[str] = frozenset()) -> CalibrationSet:
    """Read and preprocess a selection; images whose bytes are in ``exclude`` (copies of validation images) are left out."""
    what, root = selection.what, selection.root
    selected = list(selection.paths)
    digests = _image_digests(selected, what)
    if exclude:
        kept = [i for i, d in enumerate(digests) if d not in exclude]
        if len(kept) < len(selected):
            _log.info(f"{what}: {len(selected) - len(kept)} image(s) are byte-for-byte copies of validation images and are "
                "left out, so the guard judges on images calibration never saw")
            selected, digests = [selected[i] for i in kept], [digests[i] for i in kept]
            if len(selected) < MIN_CALIBRATION_IMAGES:
                raise UserInputError(
                    f"{what} folder {str(root)!r}: only {len(selected)} image(s) are left once copies of validation "
                    f"images are taken out; at least {MIN_CALIBRATION_IMAGES} are needed: remove the duplicates or add images"
                )
    sha256 = _content_hash(root, selected, digests, preprocessing)
    array = np.empty((len(selected), 3, preprocessing.image_size, preprocessing.image_size), dtype=np.float32)
    progress = progress_bar(selected, desc=f"{what} images", unit="img", auto=True)
    for i, path in enumerate(progress):
        try:
            array[i] = preprocess(path, preprocessing)  # 3 x S x S
        except UserInputError as exc:
            raise _unreadable(what, path, exc) from exc
    array.flags.writeable = False
    counts = dict(selection.class_counts)
    if len(selected) < len(selection.paths):
        kept_paths = set(selected)
        counts = {name: sum(p in kept_paths for p in selection.strata[name]) for name in counts}
    return CalibrationSet(
        array=array,
        paths=tuple(selected),
        sha256=sha256,
        root=root,
        preprocessing=preprocessing,
        class_counts=counts,
        requested_size=selection.requested,
        seed=selection.seed,
        image_sha256=tuple(digests),
        evidence=selection.evidence,
    )


def _available(
    root: Path, strata: Mapping[str, list[Path]], size: int, what: str, minimum: int = MIN_CALIBRATION_IMAGES,
    say: bool = True,
) -> int:
    available = sum(len(v) for v in strata.values())
    if available < minimum:
        raise UserInputError(
            f"{what} folder {str(root)!r} has {available} image(s); at least {minimum} are "
            "needed for meaningful activation ranges"
        )
    if available < size and say:
        _log.info(f"{what}: {str(root)!r} has only {available} images, fewer than the requested {size}: "
            f"using all {available}")
    return min(size, available)


def _calibration_selection(folder: str | os.PathLike[str], size: int, seed: int, say: bool = True) -> _Selection:
    # a training run's split.json: calibrate on its training images only, never the held-out ones
    root, strata = find_calibration_images(folder)
    return _select("calibration", root, strata, _available(root, strata, size, "calibration", say=say), size, seed)


def _evidence(sorted_: SortedImages, chosen: Sequence[Path], left_for_check: int | None) -> dict[str, Any]:
    """What a validation set stands on: how many unseen images, how many excluded as training images, by whose record.

    ``fingerprints`` name the chosen images by content, so ``check`` can set them aside (they chose the model)
    and an auditor can confirm the set; ``left_for_check``: unseen images held back for ``check``.
    """
    return {
        "unseen": len(chosen) if sorted_.record is not None else None,
        "excluded_training": sorted_.trained,
        "training_record": sorted_.record,
        "left_for_check": left_for_check,
        "fingerprints": [sorted_.fingerprints[p].hex() for p in chosen],
    }


def _too_few_unseen(what: str, root: Path, found: SortedImages, needed: int) -> UserInputError:
    return UserInputError(
        f"{what} images {str(root)!r}: {found.unseen_count} image(s) did not train the checkpoint "
        f"({found.trained} did, by {found.record}); the guard needs at least {needed} unseen images: give "
        "--validation-data DIR with images it never trained on, or --calib-data the training run's split.json "
        "(its held-out part is used)"
    )


def _guard_share(unseen: int, limit: int) -> int:
    """How many of ``unseen`` held-out images the guard takes: half (the rest is left for ``check``), at least the minimum."""
    return min(unseen, limit, max(MIN_VALIDATION_IMAGES, (unseen + 1) // 2))


def _guard_part(what: str, root: Path, found: SortedImages, max_validation: int, seed: int) -> _Selection:
    """The guard's half of the unseen images ``found`` (seeded, stratified); the rest is left for ``check``."""
    if found.unseen_count < MIN_VALIDATION_IMAGES:
        raise _too_few_unseen(what, root, found, MIN_VALIDATION_IMAGES)
    n_val = _guard_share(found.unseen_count, max_validation)
    validation = _select("validation", root, found.unseen, n_val, n_val, seed)
    return dataclasses.replace(validation, evidence=_evidence(found, validation.paths, found.unseen_count - n_val))


def _validation_selection(
    folder: str | os.PathLike[str], size: int, seed: int, record: ImageRecord | None = None, say: bool = True
) -> _Selection:
    """The guard's images from ``folder`` (a split.json: its held-out part), training images left out."""
    root, strata = _source_strata(folder, "val", "validation")
    found = sort_images(strata, record, what="validation images", progress=say)
    if record is not None and found.unseen_count < MIN_VALIDATION_IMAGES:
        raise _too_few_unseen("validation", root, found, MIN_VALIDATION_IMAGES)
    take = _available(root, found.unseen, size, "validation", MIN_VALIDATION_IMAGES, say=say)
    selection = _select("validation", root, found.unseen, take, size, seed)
    return dataclasses.replace(selection, evidence=_evidence(found, selection.paths, None))


def _split_selections(
    folder: str | os.PathLike[str], size: int, seed: int, validation_share: float, max_validation: int,
    record: ImageRecord | None = None, say: bool = True,
) -> tuple[_Selection, _Selection]:
    """(calibration, validation) of one source; the validation part never holds an image that trained the checkpoint.

    - a split.json: calibration from its training part; the guard takes half of its held-out part
      (seeded, stratified), the rest is left for ``check``;
    - a folder, with a record of the training images: the guard takes half of the images that did not
      train the checkpoint, the rest is left for ``check``; calibration draws from the training images
      (from everything but the guard's images when fewer than :data:`MIN_CALIBRATION_IMAGES` remain);
    - a folder, without a record: a ``validation_share`` of it is held out, as it always was (the
      report says that it could not be checked).
    """
    check_fraction("validation_share", validation_share, strict=True)
    guard_seed = seed + _VALIDATION_SEED_OFFSET
    if is_split_file(folder):
        root, held_out = _source_strata(folder, "val", "validation")
        found = sort_images(held_out, record, what="held-out images", progress=say)
        return _calibration_selection(folder, size, seed, say=say), _guard_part("held-out", root, found, max_validation, guard_seed)
    root, strata = _source_strata(folder, "train")
    _available(root, strata, 0, "calibration")  # size 0: only the minimum is checked
    if record is None:
        available = sum(len(v) for v in strata.values())
        n_val = _validation_count(root, available, validation_share, max_validation)
        validation = _select("validation", root, strata, n_val, n_val, guard_seed)
        # no record to sort by: only the chosen images are fingerprinted, so check can set them aside
        found = sort_images({_FLAT_STRATUM: list(validation.paths)}, None, what="validation images", progress=False)
        validation = dataclasses.replace(validation, evidence=_evidence(found, validation.paths, None))
        calibration_pool = strata
    else:
        found = sort_images(strata, record, what="images", progress=say)
        validation = _guard_part("calibration", root, found, max_validation, guard_seed)
        unseen = {p for paths in found.unseen.values() for p in paths}
        trained = {name: [p for p in images if p not in unseen] for name, images in strata.items()}
        calibration_pool = {name: images for name, images in trained.items() if images}
        if sum(len(v) for v in calibration_pool.values()) < MIN_CALIBRATION_IMAGES:
            # a folder of mostly unseen images: calibrate on what the guard does not judge on (check may see it)
            calibration_pool = strata
            if say:
                _log.info(f"calibration: fewer than {MIN_CALIBRATION_IMAGES} training images in {str(root)!r}: "
                          "calibrating on its unseen images too, never on the guard's")
    held = set(validation.paths)
    rest = {name: [p for p in images if p not in held] for name, images in calibration_pool.items()}
    rest = {name: images for name, images in rest.items() if images}
    take = _available(root, rest, size, "calibration", say=say)
    return _select("calibration", root, rest, take, size, seed), validation


def load_calibration_set(
    folder: str | os.PathLike[str],
    preprocessing: Preprocessing,
    *,
    size: int,
    seed: int = 0,
) -> CalibrationSet:
    """A seeded, class-stratified sample of ``size`` images from ``folder``, preprocessed for the model.

    Raises :class:`UserInputError` for a missing or empty folder, fewer than
    :data:`MIN_CALIBRATION_IMAGES` images, a bad ``size`` or an unreadable sampled image.
    """
    _check_args(preprocessing, size, seed)
    return _build_set(_calibration_selection(folder, size, seed), preprocessing)


def load_validation_set(
    folder: str | os.PathLike[str],
    preprocessing: Preprocessing,
    *,
    size: int,
    seed: int = 0,
    record: ImageRecord | None = None,
) -> CalibrationSet:
    """Images to judge a reduced-precision model on: like :func:`load_calibration_set`, but a split.json gives its held-out part.

    Use images the calibration never saw (another folder, or the held-out part of a
    training run's split); :func:`split_calibration_set` carves both from one folder.
    ``record``: the checkpoint's training images (:func:`dacovid_export.data.evidence.resolve_record`);
    those are left out, and fewer than :data:`MIN_VALIDATION_IMAGES` others is a :class:`UserInputError`.
    """
    _check_args(preprocessing, size, seed, "validation", MIN_VALIDATION_IMAGES)
    return _build_set(_validation_selection(folder, size, seed, record), preprocessing)


def split_calibration_set(
    folder: str | os.PathLike[str],
    preprocessing: Preprocessing,
    *,
    size: int,
    validation_share: float = DEFAULT_VALIDATION_SHARE,
    max_validation: int = MAX_VALIDATION_IMAGES,
    seed: int = 0,
    record: ImageRecord | None = None,
) -> tuple[CalibrationSet, CalibrationSet]:
    """``(calibration, validation)``: two disjoint, seeded, class-stratified samples of ``folder``.

    The validation part is drawn first, with a seed derived from ``seed``, from images that did
    not train the checkpoint (``record``; see :func:`_split_selections` for a split.json, a folder
    with a record and one without, where ``validation_share`` of it, at most ``max_validation``, is
    held out); the calibration sample of ``size`` images is then drawn from the rest, so the
    accuracy guard judges on images neither training nor calibration saw. Sampled
    calibration images whose bytes equal a validation image (duplicates in the
    folder) are left out of calibration, and a line on stderr says so.
    """
    _check_args(preprocessing, size, seed)
    calibration, validation = _split_selections(folder, size, seed, validation_share, max_validation, record)
    held = _build_set(validation, preprocessing)
    return _build_set(calibration, preprocessing, exclude=frozenset(held.image_sha256)), held


def _shared(
    calibration: tuple[Path, ...], validation: tuple[Path, ...],
    calibration_sha256: tuple[str, ...] = (), validation_sha256: tuple[str, ...] = (),
) -> tuple[Path, Path, str] | None:
    """The first validation image that is a calibration image: ``(validation, calibration, how)``, or None.

    The same file is recognised under any name (another spelling, a symlink, a hard
    link); with digests given, a byte-for-byte copy too.
    """
    def key(path: Path) -> object:
        return file_identity(path) or os.path.abspath(path)

    files = {key(p): p for p in calibration}
    for path in validation:
        if key(path) in files:
            return path, files[key(path)], "the same file"
    if calibration_sha256 and validation_sha256:
        copies = dict(zip(calibration_sha256, calibration))
        for path, digest in zip(validation, validation_sha256):
            if digest in copies:
                return path, copies[digest], "a byte-for-byte copy"
    return None


def _refuse_shared(found: tuple[Path, Path, str] | None) -> None:
    if found is not None:
        validation, calibration, how = found
        raise UserInputError(
            f"validation image {str(validation)!r} is also a calibration image ({how}: {str(calibration)!r}): the "
            "INT8 guard must judge on images calibration never saw; give --validation-data images that are not in "
            "--calib-data (or leave it out: a part of --calib-data is then held out)"
        )


def check_separate(calibration: CalibrationSet, validation: CalibrationSet) -> None:
    """:class:`UserInputError` naming one validation image that is also a calibration image (same file under any name, or a copy)."""
    _refuse_shared(_shared(calibration.paths, validation.paths, calibration.image_sha256, validation.image_sha256))


def check_image_sets(
    calib_data: str | os.PathLike[str],
    *,
    size: int,
    seed: int = 0,
    validation_data: str | os.PathLike[str] | None = None,
    split: bool = False,
    record: ImageRecord | None = None,
) -> None:
    """Before long work: the images the precision step will take are there, separate and readable.

    Selects exactly as :func:`load_calibration_set`, :func:`load_validation_set`
    (``validation_data``) and :func:`split_calibration_set` (``split``) will, without
    preprocessing: too few images, a validation image that is also a calibration image
    (any file the two sources share, under any name; a copy among the sampled images)
    and an unreadable sampled image are each one :class:`UserInputError`, now.
    """
    if validation_data is not None:
        calibration = _calibration_selection(calib_data, size, seed, say=False)
        validation = _validation_selection(validation_data, MAX_VALIDATION_IMAGES, seed, record, say=False)
        # any file the two sources share, sampled or not: "separate validation images" means separate
        _refuse_shared(_shared(calibration.candidates(), validation.candidates()))
        selections: tuple[_Selection, ...] = (calibration, validation)
    elif split:
        selections = _split_selections(
            calib_data, size, seed, DEFAULT_VALIDATION_SHARE, MAX_VALIDATION_IMAGES, record, say=False
        )
    else:
        selections = (_calibration_selection(calib_data, size, seed, say=False),)
    for selection in selections:
        for path in selection.paths:
            try:
                load_image(path)
            except UserInputError as exc:
                raise _unreadable(selection.what, path, exc) from exc
    if validation_data is not None:
        calibration, validation = selections
        _refuse_shared(_shared(
            calibration.paths, validation.paths,
            tuple(_image_digests(list(calibration.paths), "calibration")),
            tuple(_image_digests(list(validation.paths), "validation")),
        ))
