"""dacovid-export: DA-COVID Net from PyTorch to ONNX and TensorRT, with parity and latency proof.

Importing this package is cheap: torch, onnx and tensorrt are imported only by
the modules that need them, so ``import dacovid_export`` and every ``--help``
work on a machine without them.
"""

from dacovid_export.core.errors import (
    DacovidError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.versions import __version__

__all__ = ["__version__", "DacovidError", "MissingDependencyError", "UserInputError"]
