"""One command from a checkpoint to the evidence: ONNX (FP32/FP16/INT8) -> engines -> parity -> latency -> report.

``run_pipeline`` chains the library steps and writes, in ``config.out``:
``model.onnx``, ``model.fp16.onnx``, ``model.int8.onnx``, their TensorRT engines
``model.<precision>.engine`` with ``.engine.json`` sidecars (TensorRT-RTX, a base
dependency, builds them without a GPU; TensorRT where one is visible),
``report.md``, ``report.json``, ``bench.csv``, ``latency.png`` and, for labelled
images, ``confusion/*.png``.

Without a checkpoint it runs on the *embedded default*: the paper's
architecture with seeded random weights (attention weights gamma = beta = 0.5,
so both attention branches change the output) saved as a checkpoint in
``out``, and synthetic chest-X-ray-like images the project draws itself
(``out/synthetic-images``), used for calibration and parity. Its accuracy
figures mean nothing; its parity and latency figures are real measurements of
this network on this machine. The embedded run is sized to finish within
10 minutes on 2 CPU cores: 24 parity images, batch 1, 10 timed iterations.

A step that fails its own check (an FP16/INT8 model that does not match FP32,
an engine TensorRT rejects) is recorded and the pipeline goes on, so the report
shows everything that was learnt; :attr:`PipelineResult.passed` is then False.
Steps that cannot run here (engines where TensorRT-RTX has no wheel and there is
no TensorRT with a GPU, an engine's parity and latency without a GPU, INT8 without
calibration images) are listed under ``skipped`` with the reason.

Modules, one job each: :mod:`.config` (options, validated), :mod:`.embedded`
(the embedded default), :mod:`.inputs` (checkpoint and images),
:mod:`.exports` and :mod:`.engines` (the models made), :mod:`.latency`
(headline ratios), :mod:`.outcomes` and :mod:`.result` (what a run returns),
:mod:`.report` (report.json and report.md) and :mod:`.run` (``run_pipeline``).
"""

from dacovid_export.pipeline.config import PIPELINE_BENCH, PipelineConfig, PipelinePrecision
from dacovid_export.pipeline.embedded import (
    EMBEDDED_ATTENTION_WEIGHT,
    EMBEDDED_IMAGE_SIZE,
    EMBEDDED_IMAGES_PER_CLASS,
    EMBEDDED_NOTICE,
    make_embedded_checkpoint,
)
from dacovid_export.pipeline.latency import ORT_VS_TORCH_TARGET, Headline
from dacovid_export.pipeline.outcomes import ArtifactEntry, FailedStep, SkippedStep
from dacovid_export.pipeline.report import INT8_CPU_NOTE
from dacovid_export.pipeline.result import PipelineResult
from dacovid_export.pipeline.run import run_pipeline

__all__ = [
    "EMBEDDED_ATTENTION_WEIGHT",
    "EMBEDDED_IMAGE_SIZE",
    "EMBEDDED_IMAGES_PER_CLASS",
    "EMBEDDED_NOTICE",
    "INT8_CPU_NOTE",
    "ORT_VS_TORCH_TARGET",
    "ArtifactEntry",
    "FailedStep",
    "Headline",
    "PIPELINE_BENCH",
    "PipelineConfig",
    "PipelinePrecision",
    "PipelineResult",
    "SkippedStep",
    "make_embedded_checkpoint",
    "run_pipeline",
]
