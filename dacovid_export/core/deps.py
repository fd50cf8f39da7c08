"""Lazy imports of optional packages with a one-line error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from dacovid_export.core.errors import MissingDependencyError

__all__ = ["require"]

# module name -> what the user should install to get it
_INSTALL_HINTS: dict[str, str] = {
    "tensorrt": "pip install 'dacovid-export[trt]' (TensorRT >= 10.8, needs an NVIDIA GPU and driver)",
    # a base dependency where it has wheels: dacovid_export.trt.versions.RTX_INSTALL_HINT says what to do elsewhere
    "tensorrt_rtx": "pip install -e . (TensorRT-RTX >= 1.1 is a dependency of dacovid-export; builds without a GPU)",
    "modelopt": "pip install 'nvidia-modelopt[onnx]==0.47.0'",
    "onnxruntime": "pip install onnxruntime-gpu (or onnxruntime)",
    "onnx": "pip install onnx",
    "openvino": "pip install openvino",
    "matplotlib": "pip install matplotlib",
    "pydicom": "pip install 'dacovid-export[dicom]' (pydicom, python-gdcm, pylibjpeg-openjpeg)",
    "tritonclient": "pip install 'dacovid-export[serve]' (tritonclient[http,grpc])",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming what to install.

    ``purpose`` finishes the sentence "needed to ..." so the message says why.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        hint = _INSTALL_HINTS.get(root, f"pip install {root}")
        raise MissingDependencyError(
            f"{module} is not installed (needed to {purpose}): {hint}. Import error: {exc}"
        ) from exc
