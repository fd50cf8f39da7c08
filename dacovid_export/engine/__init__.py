"""ONNX -> strongly typed TensorRT / TensorRT-RTX engine with its sidecar.

:mod:`.config` (how to build, validated; what a build returns),
:mod:`.build` (:func:`~.build.build_engine` builds the ONNX it is given),
:mod:`.sidecar` (the JSON sidecar, written with the engine), :mod:`.make`
(``dacovid-export trt``: the precision step first when an FP32 ONNX is to
become an FP16/INT8 engine) and :mod:`.trtexec` (the equivalent trtexec
command, without TensorRT).
"""

from dacovid_export.engine.build import build_engine
from dacovid_export.engine.config import EngineBuildConfig, EngineBuildResult
from dacovid_export.engine.make import make_engine

__all__ = ["EngineBuildConfig", "EngineBuildResult", "build_engine", "make_engine"]
