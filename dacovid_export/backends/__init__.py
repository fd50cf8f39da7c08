"""Inference backends behind one interface: PyTorch, ONNX Runtime, OpenVINO (CPU), TensorRT.

Open one with :func:`dacovid_export.backends.registry.open_backend`; this package
imports nothing heavy so that ``import dacovid_export.backends`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dacovid_export.core.errors import CheckFailedError

if TYPE_CHECKING:
    from dacovid_export.artifacts.info import ArtifactInfo

__all__ = ["BACKEND_NAMES", "check_finite_logits"]

BACKEND_NAMES = ("torch", "onnxruntime", "openvino", "tensorrt")


def check_finite_logits(logits: np.ndarray, info: "ArtifactInfo", backend: str) -> np.ndarray:
    """Return ``logits`` unchanged, or raise :class:`CheckFailedError` naming the artifact if any is NaN/inf.

    A NaN or an infinity in the logits means the network overflowed (typically an
    FP16 attention energy past 65,504) or the artifact is damaged; a softmax would
    silently turn it into a confident wrong answer, so it must stop here.
    """
    finite = np.isfinite(logits)
    if finite.all():
        return logits
    bad_rows = int((~finite).any(axis=tuple(range(1, logits.ndim))).sum()) if logits.ndim > 1 else int((~finite).sum())
    kinds = []
    if np.isnan(logits).any():
        kinds.append("NaN")
    if np.isinf(logits).any():
        kinds.append("inf")
    raise CheckFailedError(
        f"{info.path} ({info.precision}, {backend}) produced {'/'.join(kinds)} logits for {bad_rows} of "
        f"{len(logits)} images: the network overflowed or the artifact is damaged "
        "(an FP16 model needs its attention kept in FP32; re-export it, or check it with 'dacovid-export check')"
    )
