"""Accuracy-guarded BF16: an FP32 ONNX model run by OpenVINO in BF16 must agree with FP32 before it is used.

BF16 is a precision the user asks for, never one ``auto`` picks (the OpenVINO backend
sets ``f32`` unless told ``bf16``). Like INT8 it changes answers: BF16 keeps FP32's
range (the CAM energies of ~2e6 fit) but only 8 bits of mantissa, and on a cxr3
checkpoint it agreed with FP32 on 97.5% of unseen images (docs/design.md section 5). So
:func:`guard_bf16` measures, on validation images no other step used (a training run's
held-out part, or a folder of their own), top-1 agreement and |Δlogit| of OpenVINO BF16
against the FP32 reference (ONNX Runtime, the INT8 guard's reference runtime), and
refuses below ``min_agreement`` (the INT8 guard's default, 99%).

Keeping the attention in FP32 under BF16 is not available: OpenVINO's CPU plugin
ignores the per-node keep-precision mark (``disable_fp16_compression``) under a BF16
inference precision (measured with OpenVINO 2026.4: marking the 7 attention MatMul /
Softmax nodes, or all 256 nodes, left the logits exactly as unmarked BF16; measured again
with 2026.4.1 on a trained 64 px and the 224 px model: the marked nodes still ran
``brgemm_avx512_amx_bf16`` / ``jit_avx512_bf16`` per PERF_COUNT, logits bit-identical).
So the guard has no fallback: it passes or refuses, with the figures and what to do.

``dacovid-export onnx --precision bf16`` (calibration/convert.py) runs this guard and, when
it passes, writes the FP32 graph with precision ``"bf16"`` and the guard's report in its
metadata; such a model runs only through OpenVINO at ``bf16`` (backends/openvino_backend.py).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from dacovid_export.calibration.data import CalibrationSet, check_separate
from dacovid_export.calibration.guard import DEFAULT_MIN_AGREEMENT
from dacovid_export.calibration.guard_engine import (
    Candidate,
    GuardPolicy,
    PrefixDoubling,
    run_guard,
)
from dacovid_export.calibration.guard_report import (
    evidence_line,
    resolution_text,
    resolution_warning,
)
from dacovid_export.calibration.sensitivity import onnx_logits
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.validate import check_fraction, check_int
from dacovid_export.data.agreement import Agreement, measure_agreement

__all__ = [
    "Bf16GuardConfig",
    "Bf16GuardReport",
    "guard_bf16",
    "guard_bf16_on",
    "openvino_bf16_logits",
    "openvino_bf16_runner",
    "require_bf16_cpu",
]

NO_BF16_CPU = (
    "this CPU has no BF16 support (OpenVINO reports none: it needs avx512_bf16 or AMX), so the BF16 guard could not "
    "measure anything and no BF16 model is made here; run the FP32 model, or make the BF16 one on a CPU with BF16"
)


def require_bf16_cpu() -> None:
    """Refuse, in one line, where OpenVINO is missing or the CPU has no BF16 (before any slow work)."""
    from dacovid_export.core.openvino_model import cpu_supports_bf16, openvino_core

    _, core = openvino_core("make and run BF16 models (pip install openvino)")
    if not cpu_supports_bf16(core):
        raise UserInputError(NO_BF16_CPU)


@dataclasses.dataclass(frozen=True)
class Bf16GuardConfig:
    """``min_agreement``: top-1 agreement with FP32 BF16 must reach; ``threads``: OpenVINO's threads (None: default)."""

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    threads: int | None = None

    def __post_init__(self) -> None:
        check_fraction("min_agreement", self.min_agreement, why=" (e.g. 0.99)")
        if self.threads is not None:
            check_int("threads", self.threads, 1, why=", or None for OpenVINO's default")


@dataclasses.dataclass(frozen=True)
class Bf16GuardReport:
    """What the guard measured: BF16 (OpenVINO) against FP32 (ONNX Runtime) on the validation images."""

    METADATA_KEY: ClassVar[str] = "bf16_guard"

    model: str
    agreement: Agreement
    min_agreement: float
    passed: bool
    validation: dict[str, Any]
    seconds: float

    def lines(self) -> list[str]:
        """The report's one rendering: ``bf16-guard``'s output, the ``onnx`` summary and the pipeline report."""
        a = self.agreement
        return [
            f"BF16 guard: top-1 agreement with FP32 {a.agreement:.1%} of OpenVINO BF16 on {a.images} validation images "
            f"(target >= {self.min_agreement:.1%}: {'met' if self.passed else 'NOT met'}; {resolution_text(a.images)}); "
            f"|Δlogit| median {a.median_abs_dlogit:.3g}, max {a.max_abs_dlogit:.3g}; {self.seconds:.1f}s",
            f"BF16 guard: model {self.model}; validation images: {self.validation.get('root')}; "
            f"{evidence_line(self.validation)}",
            *resolution_warning("BF16", a.images, self.min_agreement),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "agreement": self.agreement.to_dict(),
            "min_agreement": self.min_agreement,
            "passed": self.passed,
            "validation": self.validation,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Bf16GuardReport":
        """The report :meth:`to_dict` wrote (``bf16_guard`` metadata, report.json)."""
        return cls(
            model=str(data["model"]),
            agreement=Agreement.from_dict(data["agreement"]),
            min_agreement=float(data["min_agreement"]),
            passed=bool(data["passed"]),
            validation=dict(data["validation"]),
            seconds=float(data["seconds"]),
        )


def openvino_bf16_runner(
    path: str | os.PathLike[str], *, threads: int | None = None, batch: int = 16
) -> Callable[[np.ndarray], np.ndarray]:
    """Compile the FP32 ONNX file ``path`` once for OpenVINO's CPU plugin at BF16; images (N,3,H,W) -> logits (N,K).

    Refused on a CPU without BF16. The precision stage sits below backends/, so it runs
    core/openvino_model's :class:`OpenVINORunner`, the runner the OpenVINO backend wraps.
    """
    from dacovid_export.core import openvino_model

    ov, core = openvino_model.openvino_core("run the BF16 accuracy guard")
    if not openvino_model.cpu_supports_bf16(core):
        raise UserInputError(NO_BF16_CPU)
    runner = openvino_model.OpenVINORunner(path, inference_precision="bf16", threads=threads, core=(ov, core))
    return functools.partial(runner.logits, batch=batch)


def openvino_bf16_logits(path: str | os.PathLike[str], images: np.ndarray, *, threads: int | None = None, batch: int = 16) -> np.ndarray:
    """Logits of the FP32 ONNX file ``path`` under OpenVINO's CPU plugin at BF16 (refused on a CPU without BF16)."""
    return openvino_bf16_runner(path, threads=threads, batch=batch)(images)


def guard_bf16_on(
    model: str | os.PathLike[str],
    validation_data: str | os.PathLike[str],
    config: Bf16GuardConfig = Bf16GuardConfig(),
    *,
    size: int = 256,
    seed: int = 0,
    training_data: str | os.PathLike[str] | None = None,
) -> Bf16GuardReport:
    """``dacovid-export bf16-guard``: :func:`guard_bf16` on up to ``size`` images of ``validation_data`` that did not train the model.

    The training images are the record ``model`` carries (from its checkpoint) and/or ``training_data``.
    """
    from dacovid_export.artifacts.onnx_metadata import image_record_in, read_metadata
    from dacovid_export.artifacts.read import read_artifact_info
    from dacovid_export.calibration.data import load_validation_set
    from dacovid_export.data.evidence import resolve_record

    info = read_artifact_info(model)
    record = resolve_record(image_record_in(read_metadata(model), os.fspath(model)) if info.kind == "onnx" else None,
                            training_data)
    images = load_validation_set(validation_data, info.preprocessing, size=size, seed=seed, record=record)
    return guard_bf16(model, images, config)


class _Bf16Policy(GuardPolicy):
    """BF16's stage for the guard engine: one measurement, nothing to search. OpenVINO's CPU plugin runs every node
    in BF16 once the hint is bf16, so no node can be kept FP32: the only levers are the checkpoint and the target."""

    name = "BF16"
    floor = 1.0
    convs = 0

    def __init__(self, model: str | os.PathLike[str], images: np.ndarray, reference: np.ndarray,
                 config: Bf16GuardConfig) -> None:
        self.model, self.images, self.reference = model, images, reference
        self.target, self.threads = config.min_agreement, config.threads

    def first(self) -> Iterator[Candidate]:
        logits = self.run(self.model, self.images)
        yield Candidate("OpenVINO BF16", self.model, logits, measure_agreement(self.reference, logits), 0)

    def ready(self, best: Candidate) -> bool:
        return False

    def run(self, model: Any, images: np.ndarray) -> np.ndarray:
        return openvino_bf16_logits(model, images, threads=self.threads)


def guard_bf16(
    model: str | os.PathLike[str],
    validation: CalibrationSet,
    config: Bf16GuardConfig = Bf16GuardConfig(),
    *,
    exclude: CalibrationSet | None = None,
    name: str | None = None,
) -> Bf16GuardReport:
    """Judge BF16 execution of the FP32 ONNX ``model`` on ``validation``; :class:`CheckFailedError` below target.

    ``exclude``: an image set the validation images must not share a file with (e.g. the
    calibration images of an INT8 model made from the same checkpoint): refused naming the file.
    ``name``: how reports and the refusal name the model (default its path; the precision step
    names its output, not its scratch copy).
    """
    from dacovid_export.artifacts.read import read_artifact_info

    info = read_artifact_info(model)
    if info.kind != "onnx" or info.precision != "fp32":
        raise UserInputError(
            f"{os.fspath(model)!r} is a {info.precision} {info.kind}: BF16 runs an FP32 ONNX model; give model.onnx"
        )
    if validation.preprocessing.image_size != info.image_size:
        raise UserInputError(
            f"validation images are {validation.preprocessing.image_size}x{validation.preprocessing.image_size}, "
            f"the model takes {info.image_size}x{info.image_size}: load them with the model's preprocessing"
        )
    if exclude is not None:
        check_separate(exclude, validation)
    start = time.perf_counter()
    with open(model, "rb") as fh:
        reference = onnx_logits(fh.read(), validation.array)
    outcome = run_guard(_Bf16Policy(model, validation.array, reference, config), PrefixDoubling(), progress=False)
    agreement = outcome.chosen.agreement
    passed = bool(np.all(np.isfinite(outcome.chosen.logits))) and outcome.passed
    report = Bf16GuardReport(
        model=name or os.fspath(model), agreement=agreement, min_agreement=config.min_agreement, passed=passed,
        validation=validation.describe(), seconds=time.perf_counter() - start,
    )
    if not passed:
        raise CheckFailedError(
            f"BF16 refused for {name or os.fspath(model)!r}: top-1 agreement with FP32 {agreement.agreement * 100:.1f}% on "
            f"{agreement.images} validation images, below min_agreement {config.min_agreement * 100:.1f}% (median "
            f"|dlogit| {agreement.median_abs_dlogit:.3g}); run it in FP32 (OpenVINO f32 or ONNX Runtime), use the "
            "guarded INT8 model, or lower min_agreement knowingly. Keeping the attention FP32 is no lever here: "
            "OpenVINO's CPU plugin runs every node in BF16 once BF16 is set"
        )
    return report
