"""The small runtime API for services: load any artifact, give it images, get class probabilities.

>>> from dacovid_export.serve.predictor import Predictor
>>> with Predictor.from_path("model.int8.engine") as predictor:     # or .onnx / checkpoint .pt
...     for p in predictor.predict(["a.png", "b.jpg"]):
...         print(p.class_name, p.confidence)

Preprocessing comes from the artifact's own metadata, so a model and its
preprocessing cannot drift apart. See ``docs/runtime.md`` for use from several
threads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import numpy as np
from PIL import Image

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.backends.base import Backend, run_any_batch
from dacovid_export.backends.registry import open_backend
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size
from dacovid_export.data.agreement import softmax
from dacovid_export.data.dicom import DicomIdentifiers
from dacovid_export.data.preprocessing import (
    ImageInput,
    Preprocessing,
    dicom_identifiers,
    load_image,
    preprocess,
)

__all__ = ["Prediction", "ImageFailure", "Predictor", "PREDICT_BATCH_SIZE"]

# images per backend call when neither the caller nor the artifact says otherwise:
# large enough to fill a GPU for this model, small enough for CPU memory at 224x224
PREDICT_BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's result: the winning class, its index, and every class's probability."""

    class_name: str
    index: int
    probabilities: Mapping[str, float]
    logits: tuple[float, ...]
    source: str | None = None  # the file, when the image was given as a path
    # a DICOM's SOPInstanceUID and StudyInstanceUID, to join the result back in PACS (never patient data)
    dicom: DicomIdentifiers | None = None

    ok = True  # an ImageFailure says False: results of predict(errors="return") tell apart with .ok

    @property
    def confidence(self) -> float:
        return self.probabilities[self.class_name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "index": self.index,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "logits": list(self.logits),
            "source": self.source,
            "dicom": None if self.dicom is None else self.dicom.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class ImageFailure:
    """An image that could not be classified (``predict(..., errors="return")``): which one, and why."""

    index: int  # position in the list given to predict
    reason: str  # the UserInputError's message: missing file, corrupt or oversized image, empty array, ...
    source: str | None = None  # the file, when the image was given as a path

    ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.reason, "source": self.source}


class Predictor:
    """Classify chest X-rays with one artifact (checkpoint, ONNX model or TensorRT engine).

    A context manager: leaving the ``with`` block (or :meth:`close`) frees the
    backend's device memory. Calls are serialised by an internal lock, so one
    Predictor may be shared by threads (decoding and preprocessing still run in
    parallel); for parallel inference give each thread its own Predictor.
    """

    def __init__(self, backend: Backend, *, batch_size: int | None = None, strict_dicom: bool = False) -> None:
        info = backend.info
        if batch_size is not None:
            check_batch_size(batch_size, "batch_size")
            if info.max_batch is not None and batch_size > info.max_batch:
                raise UserInputError(
                    f"batch_size={batch_size} exceeds the largest batch {info.path} accepts ({info.max_batch}); "
                    f"use batch_size <= {info.max_batch} or rebuild the artifact with a larger --max-batch"
                )
        self._backend: Backend | None = backend
        self._info = info
        self.batch_size = batch_size or min(info.max_batch or PREDICT_BATCH_SIZE, PREDICT_BATCH_SIZE)
        self._lock = threading.Lock()
        # a DICOM whose modality is not CR/DX or whose body part is not the chest: refused, not a warning
        self.strict_dicom = bool(strict_dicom)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: str = "auto",
        device: str = "auto",
        batch_size: int | None = None,
        strict_dicom: bool = False,
        provider: str | None = None,
        intra_op_threads: int | None = None,
        graph_optimization: str | None = None,
        precision: str | None = None,
        channels_last: bool | None = None,
        cuda_graphs: bool | None = None,
        compile: bool | None = None,
        tf32: bool | None = None,
        inference_precision: str | None = None,
        threads: int | None = None,
        runtime_cache: "str | os.PathLike[str] | bool | None" = None,
    ) -> "Predictor":
        """Open ``path`` with the backend its file kind needs (see :func:`~dacovid_export.backends.registry.open_backend`).

        The backend options (``None``: not given, the backend's default) are those of the backend
        that runs the file: ``provider``/``intra_op_threads``/``graph_optimization`` for onnxruntime,
        ``precision``/``channels_last``/``cuda_graphs``/``compile``/``tf32`` for torch,
        ``inference_precision``/``threads`` for openvino, ``runtime_cache`` for tensorrt; one the
        backend does not take is an error that lists the ones it does.
        """
        given = {
            name: value
            for name, value in (
                ("provider", provider),
                ("intra_op_threads", intra_op_threads),
                ("graph_optimization", graph_optimization),
                ("precision", precision),
                ("channels_last", channels_last),
                ("cuda_graphs", cuda_graphs),
                ("compile", compile),
                ("tf32", tf32),
                ("inference_precision", inference_precision),
                ("threads", threads),
                ("runtime_cache", runtime_cache),
            )
            if value is not None
        }
        # only the options given reach open_backend: each backend refuses the ones it does not take
        opened = open_backend(path, backend=backend, device=device, **given)
        try:
            return cls(opened, batch_size=batch_size, strict_dicom=strict_dicom)
        except BaseException:
            opened.close()
            raise

    # ------------------------------------------------------------ description

    @property
    def info(self) -> ArtifactInfo:
        return self._info

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._info.class_names

    @property
    def preprocessing(self) -> Preprocessing:
        return self._info.preprocessing

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise UserInputError(f"Predictor for {self._info.path} is closed")
        return self._backend

    @property
    def closed(self) -> bool:
        return self._backend is None

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.backend.describe()
        return f"Predictor({state}, batch_size={self.batch_size})"

    # ---------------------------------------------------------------- predict

    @overload
    def predict(
        self, images: ImageInput | Sequence[ImageInput], *, errors: Literal["raise"] = "raise"
    ) -> list[Prediction]: ...

    @overload
    def predict(
        self, images: ImageInput | Sequence[ImageInput], *, errors: Literal["return"]
    ) -> list[Prediction | ImageFailure]: ...

    def predict(
        self, images: ImageInput | Sequence[ImageInput], *, errors: Literal["raise", "return"] = "raise"
    ) -> list[Prediction] | list[Prediction | ImageFailure]:
        """One :class:`Prediction` per image, in order.

        ``images``: one image or a list of them; each a file path, the encoded bytes of a file (PNG, JPEG, ...,
        DICOM: its UIDs come back in :attr:`Prediction.dicom`), a PIL image
        (any mode: 8/16-bit grey, RGB, RGBA, LAB, CMYK, ...) or a numpy array (``H x W``,
        ``H x W x 1/3/4``; uint8, uint16 or float in [0, 1]). A numpy array is
        always one image; pass a list for several.

        ``errors``: ``"raise"`` (default): the first image that cannot be used
        (missing, corrupt, over Pillow's pixel limit, empty, unsupported type)
        raises :class:`~dacovid_export.core.errors.UserInputError` naming it, and
        nothing is returned. ``"return"``: that image's place in the list holds
        an :class:`ImageFailure` with the reason and the other images are still
        classified; check ``result.ok``.
        """
        if errors not in ("raise", "return"):
            raise UserInputError(f"errors={errors!r}: use 'raise' or 'return'")
        items = _as_list(images)
        results: list[Prediction | ImageFailure] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            slots: list[Prediction | ImageFailure | None] = []
            good: list[tuple[ImageInput, np.ndarray, DicomIdentifiers | None]] = []
            spec = self.preprocessing
            for offset, img in enumerate(chunk):
                try:
                    loaded: ImageInput = img
                    if isinstance(img, (str, os.PathLike, bytes)):  # decoded once; a DICOM's UIDs ride along
                        loaded = load_image(img, dicom_voi=spec.dicom_voi, strict_dicom=self.strict_dicom)
                    ids = dicom_identifiers(loaded) if isinstance(loaded, Image.Image) else None
                    good.append((img, preprocess(loaded, spec), ids))  # 3 x S x S
                    slots.append(None)
                except UserInputError as exc:
                    if errors == "raise":
                        raise
                    slots.append(ImageFailure(index=start + offset, reason=str(exc), source=_source(img)))
            if good:
                logits = self.predict_logits(np.stack([x for _, x, _ in good]))  # n x 3 x S x S
                done = iter(self._predictions(logits, [img for img, _, _ in good], [ids for _, _, ids in good]))
                slots = [next(done) if slot is None else slot for slot in slots]
            results.extend(slot for slot in slots if slot is not None)
        return results

    def predict_one(self, image: ImageInput) -> Prediction:
        return self.predict([image])[0]

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``N x K`` logits for an already preprocessed float32 ``N x 3 x S x S`` batch of any N."""
        backend = self.backend
        with self._lock:
            return run_any_batch(backend, batch, self.batch_size)

    def _predictions(
        self, logits: np.ndarray, chunk: Sequence[ImageInput], ids: Sequence[DicomIdentifiers | None]
    ) -> list[Prediction]:
        probs = softmax(logits)
        names = self.class_names
        out = []
        for row_logits, row_probs, image, dicom in zip(logits, probs, chunk, ids):
            index = int(np.argmax(row_probs))
            out.append(
                Prediction(
                    class_name=names[index],
                    index=index,
                    probabilities={name: float(p) for name, p in zip(names, row_probs)},
                    logits=tuple(float(v) for v in row_logits),
                    source=_source(image),
                    dicom=dicom,
                )
            )
        return out

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Free the backend (device memory, sessions, contexts); idempotent."""
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _source(image: object) -> str | None:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, (str, os.PathLike, bytes, Image.Image, np.ndarray)):
        return [images]
    if isinstance(images, (list, tuple)):
        return list(images)
    raise UserInputError(
        f"images of type {type(images).__name__}: give a path, a PIL image, a numpy array, or a list of them"
    )
