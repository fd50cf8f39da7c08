"""OpenVINO backend: the project's ONNX models on Intel/AMD CPUs, with the precision set, never assumed.

Why it exists: ONNX Runtime runs the TensorRT-style Q/DQ model (signed INT8 activations)
slower than FP32 on x86 (docs/design.md section 5: 1.27x), while OpenVINO's low-precision
transformations run the same file as INT8 kernels (0.33x of ONNX Runtime FP32). So on a
CPU the INT8 model is served by OpenVINO, from the very file TensorRT builds from.

Precision is explicit: on CPUs with AVX512-BF16 or AMX, OpenVINO's default inference
precision is BF16, even for an "FP32" model (it then changed 2.5% of the answers of a
trained checkpoint on real X-rays). This backend always sets ``INFERENCE_PRECISION_HINT``:

- FP32 model: ``f32`` (default) or, when asked, ``bf16``, reported as its own precision
  ``"bf16"``; refused on a CPU without BF16 support (``OPTIMIZATION_CAPABILITIES``).
- BF16-marked model (an FP32 graph that passed the BF16 accuracy guard): ``bf16``, set
  explicitly; asking for ``f32`` is refused (its FP32 answers are the FP32 export's).
- INT8 (Q/DQ) model: the quantized convolutions run as INT8; what the graph keeps in
  float (the attention, nodes the accuracy guard took out) runs in ``f32``.
- FP16 (mixed) model: ``f32``, its FP16 weights upcast (an FP16 model is made for GPUs).
"""

from __future__ import annotations

import os

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.core.errors import IncompatibleArtifactError, UserInputError
from dacovid_export.core.openvino_model import (
    INFERENCE_PRECISIONS,
    OpenVINORunner,
    check_openvino_options,
    cpu_supports_bf16,
    openvino_core,
)

__all__ = ["OpenVINOBackend"]


class OpenVINOBackend(Backend):
    """Run an ONNX model with OpenVINO's CPU plugin.

    ``inference_precision``: ``"fp32"`` or ``"bf16"`` (FP32 and BF16-marked models, on
    CPUs with BF16 support); ``None`` (default): ``"bf16"`` for a BF16-marked model, else
    ``"fp32"``; see the module docstring. ``threads``: OpenVINO's
    ``INFERENCE_NUM_THREADS`` (``None``: its default, all cores). The model keeps its
    dynamic batch; ``run`` is serialised by a lock (one infer request).
    """

    name = "openvino"
    label = "OpenVINO"
    kind = "onnx"
    devices = "cpu"
    thread_option = "threads"
    precision_option = "inference_precision"
    precision_choices = tuple(INFERENCE_PRECISIONS)
    int8_on_cpu = True
    bench_note = (
        "OpenVINO rows set the inference precision explicitly: `f32` around the INT8 kernels of a Q/DQ model and for "
        "FP32 models (its CPU default on BF16-capable CPUs would be BF16); `bf16` rows are FP32 models run in BF16."
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        inference_precision: str | None = None,
        threads: int | None = None,
        info: ArtifactInfo | None = None,
    ) -> None:
        if device != "cpu":
            raise UserInputError(f"device={device!r}: the openvino backend runs on the CPU only (use device 'cpu')")
        check_openvino_options(inference_precision, threads)
        info = info if info is not None else read_artifact_info(path)
        if info.kind != "onnx":
            raise UserInputError(f"{str(path)!r} is a {info.kind}, not an ONNX model: the openvino backend runs .onnx files")
        if info.precision == "bf16":
            if inference_precision == "fp32":
                raise UserInputError(
                    f"{str(path)!r} is marked for BF16 execution: it runs with inference_precision 'bf16' (or unset); "
                    "for FP32 answers run the FP32 model it was made from"
                )
            inference_precision = "bf16"
        inference_precision = inference_precision or "fp32"
        ov, core = openvino_core()
        if inference_precision == "bf16":
            if info.precision not in ("fp32", "bf16"):
                raise UserInputError(
                    f"inference_precision='bf16' applies to FP32 models; {str(path)!r} is {info.precision}"
                )
            if not cpu_supports_bf16(core):
                raise UserInputError(
                    "this CPU has no BF16 support (OpenVINO reports none, no avx512_bf16 or AMX): "
                    + (f"{str(path)!r} is marked for BF16 and cannot run here; run the FP32 model it was made from"
                       if info.precision == "bf16" else "use inference_precision='fp32'")
                )
        super().__init__(info, device)
        self.inference_precision = inference_precision
        self.threads = threads
        with self._opening():
            # the runner core the precision step's guards run too (core/openvino_model): one compile, one locked request
            self._runner = OpenVINORunner(
                path, inference_precision=inference_precision, threads=threads, performance_hint="LATENCY", core=(ov, core)
            )
            if self._runner.outputs != 1:
                raise IncompatibleArtifactError(f"{str(path)!r} has {self._runner.outputs} outputs; expected one logits output")

    @property
    def precision(self) -> str:
        """What the numbers are computed in: the model's precision, or ``"bf16"`` for an FP32 model run in BF16."""
        return "bf16" if self.inference_precision == "bf16" else self.info.precision

    def describe(self) -> str:
        threads = self.threads or "default threads"
        hint = INFERENCE_PRECISIONS[self.inference_precision]
        return f"openvino/cpu (inference precision {hint}, {threads}) {self.info.precision} {self.info.path}"

    def threads_used(self, requested: int | None) -> int | None:
        return self.threads if self.threads is not None else requested

    def _run_host(self, batch: np.ndarray) -> np.ndarray:
        out = self._runner.run(batch)  # N x 3 x S x S -> N x K
        if out.shape != (len(batch), self.info.num_classes):
            raise IncompatibleArtifactError(
                f"{self.info.path}: output of shape {out.shape}, expected ({len(batch)}, {self.info.num_classes})"
            )
        return out

    def _release(self) -> None:
        self._runner.close()  # drops the request and the compiled model
