"""Serving: the Python :class:`~.predictor.Predictor` and Triton model repositories.

:mod:`.predictor` (any artifact in, class probabilities out) and
:mod:`.triton` (a Triton repository for an engine or ONNX model).
"""

from dacovid_export.serve.predictor import Prediction, Predictor
from dacovid_export.serve.triton import write_triton_repository

__all__ = ["Prediction", "Predictor", "write_triton_repository"]
