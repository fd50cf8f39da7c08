"""One command from a checkpoint to the evidence: ONNX (FP32/FP16/INT8) -> engines -> parity -> latency -> report.

``run_pipeline`` chains the library steps and writes, in ``config.out``:
``model.onnx``, ``model.fp16.onnx``, ``model.int8.onnx``, TensorRT engines when
TensorRT and a GPU are present, ``report.md``, ``report.json``, ``bench.csv``,
``latency.png`` and, for labelled images, ``confusion/*.png``.

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
Steps that cannot run here (TensorRT without TensorRT or a GPU, INT8 without
calibration images) are listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.info import PRECISIONS
from dacovid_export.core.errors import CheckFailedError, DacovidError, MissingDependencyError, UserInputError
from dacovid_export.core.limits import check_batch_size, check_image_size

if TYPE_CHECKING:
    from dacovid_export.bench.run import BenchResult
    from dacovid_export.parity.report import ParityReport

__all__ = [
    "EMBEDDED_IMAGE_SIZE",
    "EMBEDDED_ATTENTION_WEIGHT",
    "EMBEDDED_IMAGES_PER_CLASS",
    "EMBEDDED_NOTICE",
    "INT8_CPU_NOTE",
    "ORT_VS_TORCH_TARGET",
    "PipelineConfig",
    "PipelineResult",
    "make_embedded_checkpoint",
    "run_pipeline",
]

EMBEDDED_IMAGE_SIZE = 224
EMBEDDED_ATTENTION_WEIGHT = 0.5
EMBEDDED_IMAGES_PER_CLASS = 8  # 24 images: calibration and parity
ORT_VS_TORCH_TARGET = 0.70  # ONNX Runtime FP32 / PyTorch eager FP32, CPU, batch 1 (a prototype measured 0.68)
_MODEL_OPTION_KEYS = ("output_stride", "reduction_channels", "reduction_kernel_size")
_PARITY_BATCH = 8

EMBEDDED_NOTICE = (
    "This run used the embedded default: the paper's network with seeded random (untrained) weights and synthetic "
    "images drawn by the project. Its accuracy figures mean nothing. Its parity figures (agreement of every "
    "exported model with the PyTorch reference) and its latency figures are real measurements of this network "
    "on this machine."
)
INT8_CPU_NOTE = (
    "INT8 here is the TensorRT form: Q/DQ pairs with signed 8-bit activations and weights (S8S8), which is what "
    "TensorRT needs. ONNX Runtime on x86 runs such a model slower than FP32 (it is fastest with unsigned "
    "activations, U8S8); OpenVINO runs the same file as INT8, so on the CPU the INT8 headline uses the faster of "
    "the two runtimes and no second, CPU-specific INT8 model is made."
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Options of :func:`run_pipeline`, validated on construction.

    ``checkpoint=None`` selects the embedded default; ``image_size`` (default 224)
    and ``model_options`` (``output_stride``, ``reduction_channels``,
    ``reduction_kernel_size``; default the paper's) shape only that default.
    ``images``: a class-per-folder tree for parity (default: synthetic images).
    ``calib_data``: calibration images for INT8 (and FP16's range check); with a
    checkpoint and no ``calib_data`` the INT8 step is skipped rather than
    calibrated on the parity images. ``calib_size``: None = all calibration
    images for the embedded default, the precision step's default otherwise.
    """

    out: Path
    checkpoint: Path | None = None
    images: Path | None = None
    calib_data: Path | None = None
    image_size: int | None = None
    model_options: Mapping[str, int] = dataclasses.field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (1,)
    iterations: int = 10
    warmup: int = 2
    calib_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise UserInputError(f"--out {str(self.out)!r} exists and is not a folder")
        for name in ("checkpoint", "images", "calib_data"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.checkpoint is not None:
            from dacovid_export.artifacts.info import artifact_kind

            if not self.checkpoint.is_file():
                raise UserInputError(f"checkpoint {str(self.checkpoint)!r} does not exist or is not a file")
            if artifact_kind(self.checkpoint) != "checkpoint":
                raise UserInputError(
                    f"--checkpoint {str(self.checkpoint)!r} is not a PyTorch checkpoint (.pt/.pth): the pipeline starts "
                    "from the checkpoint and makes the ONNX models and engines itself"
                )
            if self.image_size is not None:
                raise UserInputError(
                    f"--image-size {self.image_size} shapes the embedded default only; the checkpoint fixes its own "
                    "image size: drop --image-size"
                )
            if self.model_options:
                raise UserInputError("model options shape the embedded default only; the checkpoint fixes its own: drop them")
        for name in ("images", "calib_data"):
            value = getattr(self, name)
            if value is not None and not (value.is_dir() or (value.is_file() and value.suffix.lower() == ".json")):
                raise UserInputError(
                    f"{name.replace('_', '-')} {str(value)!r} is neither a folder nor a dacovid-train split.json"
                )
        if self.image_size is not None:
            check_image_size(self.image_size)
        for b in self.batch_sizes:
            check_batch_size(b, "batch size")
        options = dict(self.model_options)
        unknown = sorted(set(options) - set(_MODEL_OPTION_KEYS))
        if unknown:
            raise UserInputError(f"unknown model option(s) {unknown}: the embedded default takes {', '.join(_MODEL_OPTION_KEYS)}")
        try:
            self.model_config()
        except ValueError as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"model options {options}: {exc}") from exc
        object.__setattr__(self, "model_options", options)
        if self.calib_size is not None:
            from dacovid_export.export.onnx_export import MIN_CALIB_SIZE

            if isinstance(self.calib_size, bool) or not isinstance(self.calib_size, int) or self.calib_size < MIN_CALIB_SIZE:
                raise UserInputError(f"calib_size={self.calib_size!r}: give an integer >= {MIN_CALIB_SIZE}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserInputError(f"seed={self.seed!r}: give an integer >= 0")
        # the bench options are validated by the bench's own config, now rather than after the exports
        self.bench_config()

    @property
    def embedded(self) -> bool:
        return self.checkpoint is None

    def model_config(self) -> Any:
        from dacovid_export.model import ModelConfig

        return ModelConfig(**self.model_options)

    def bench_config(self) -> "Any":
        from dacovid_export.bench.run import BenchConfig

        return BenchConfig(
            device=self.device,
            batch_sizes=tuple(self.batch_sizes),
            iterations=self.iterations,
            warmup=self.warmup,
            threads=self.threads,
            seed=self.seed,
            progress=self.progress,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("out", "checkpoint", "images", "calib_data"):
            out[name] = None if out[name] is None else str(out[name])
        out["batch_sizes"] = list(self.batch_sizes)
        out["model_options"] = dict(self.model_options)
        out["embedded_default"] = self.embedded
        return out


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What the pipeline made and measured; ``passed`` is False if a step failed its check or parity failed."""

    out: Path
    report_md: Path
    report_json: Path
    embedded: bool
    artifacts: tuple[Mapping[str, Any], ...]
    skipped: tuple[Mapping[str, str], ...]
    failed: tuple[Mapping[str, str], ...]
    parity: "ParityReport | None"
    bench: "BenchResult | None"
    headline: tuple[Mapping[str, Any], ...]
    plots: tuple[Path, ...]
    wall_time_s: float

    @property
    def passed(self) -> bool:
        return not self.failed and (self.parity is None or bool(self.parity))

    def summary_lines(self) -> list[str]:
        lines = []
        if self.embedded:
            lines += [EMBEDDED_NOTICE, ""]
        for a in self.artifacts:
            lines.append(f"{a['role']:<14} {a['path']}  ({a['size_bytes'] / 2**20:.1f} MiB)")
        for s in self.skipped:
            lines.append(f"skipped {s['step']}: {s['reason']}")
        for f in self.failed:
            lines.append(f"FAILED {f['step']}: {f['reason']}")
        if self.parity is not None:
            lines.append(
                f"parity: {sum(m.passed for m in self.parity.models)}/{len(self.parity.models)} model(s) passed "
                f"-> {'PASS' if self.parity else 'FAIL'}"
            )
        for h in self.headline:
            lines.append(_headline_text(h))
        lines.append(f"report: {self.report_md} and {self.report_json} ({self.wall_time_s:.0f} s)")
        return lines


# ---------------------------------------------------------------------------


def make_embedded_checkpoint(
    path: str | os.PathLike[str],
    *,
    image_size: int = EMBEDDED_IMAGE_SIZE,
    model_options: Mapping[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Save the embedded default model: seeded random weights, gamma = beta = 0.5, paper class names."""
    import torch

    from dacovid_export.model import DEFAULT_CLASS_NAMES, DACovidNet, ModelConfig, save_checkpoint
    from dacovid_export.data.preprocessing import Preprocessing

    torch.manual_seed(seed)
    model = DACovidNet(ModelConfig(**dict(model_options or {})))
    with torch.no_grad():
        # non-zero attention weights so the attention paths (and their FP16 ranges) matter
        model.pam.gamma.fill_(EMBEDDED_ATTENTION_WEIGHT)
        model.cam.beta.fill_(EMBEDDED_ATTENTION_WEIGHT)
    model.eval()
    return save_checkpoint(
        path,
        model,
        class_names=DEFAULT_CLASS_NAMES,
        preprocessing=Preprocessing(image_size=image_size),
        training={
            "embedded_default": True,
            "note": "seeded random weights, never trained: accuracy is meaningless",
            "seed": seed,
            "attention_weight": EMBEDDED_ATTENTION_WEIGHT,
        },
    )


class _Log:
    """Step lines on stderr with elapsed time; the library's own tqdm bars go there too."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.index = 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.index += 1
        if self.enabled:
            print(f"[{self.index}/{self.total}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 2)
            if self.enabled:
                print(f"[{self.index}/{self.total}] {name}: {self.timings[name]:.1f} s", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"      {text}", file=sys.stderr, flush=True)


def _artifact_entry(role: str, path: Path, precision: str) -> dict[str, Any]:
    from dacovid_export.core.fileio import sha256_file

    return {"role": role, "path": str(path), "precision": precision, "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _failure(step: str, exc: DacovidError) -> dict[str, str]:
    return {"step": step, "reason": str(exc), "error": type(exc).__name__}


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Checkpoint (or the embedded default) -> ONNX FP32/FP16/INT8 -> engines -> parity -> latency -> report."""
    from dacovid_export.export.onnx_export import OnnxExportConfig, convert_precision, export_onnx

    t_start = time.perf_counter()
    out = config.out
    from dacovid_export.core.fileio import check_outputs

    # writable, and no input in its place, before minutes of work; the folder itself appears with the first file
    check_outputs(inputs=[config.checkpoint, config.images, config.calib_data], folders={"--out": out})
    # empty or too small image sets are said now, not after minutes of export
    if config.images is not None:
        from dacovid_export.data.image_folder import labelled_images

        labelled_images(config.images, part="val")
    if config.calib_data is not None:
        from dacovid_export.calibration.data import find_calibration_images

        # the pipeline's INT8 step holds out part of it as the guard's validation images
        find_calibration_images(config.calib_data, split=True)
    log = _Log(config.progress, total=7)
    skipped: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    export: dict[str, Any] = {}
    artifacts: list[dict[str, Any]] = []

    # 1. inputs: the checkpoint and the images for calibration and parity
    with log.step("inputs"):
        checkpoint, images, calib_data, calib_size, inputs_note = _prepare_inputs(config, log)
    artifacts.append(_artifact_entry("checkpoint", checkpoint, "fp32"))
    from dacovid_export.bench.cost import artifact_cost

    model_cost = artifact_cost(checkpoint)  # shapes only (meta device): well under a second

    # 2-4. ONNX models; the FP32 export must succeed, the precision steps may fail their checks
    onnx_models: dict[str, Path] = {}
    with log.step("ONNX FP32 export"):
        result = export_onnx(checkpoint, out / "model.onnx", OnnxExportConfig(), progress=config.progress)
    onnx_models["fp32"] = result.path
    export["fp32"] = _export_entry(result, log.timings)
    for precision in ("fp16", "int8"):
        name = f"ONNX {precision.upper()} conversion"
        target = out / f"model.{precision}.onnx"
        with log.step(name):
            if precision == "int8" and calib_data is None:
                skipped.append(
                    {
                        "step": name,
                        "reason": "no calibration images: give --calib-data DIR (training images, not the parity set) "
                        "to make the INT8 model",
                    }
                )
                continue
            try:
                result = convert_precision(
                    onnx_models["fp32"],
                    target,
                    precision=precision,  # type: ignore[arg-type]
                    calib_data=calib_data,
                    calib_size=calib_size,
                    seed=config.seed,
                    progress=config.progress,
                )
            except CheckFailedError as exc:
                failed.append(_failure(name, exc))
                log.note(f"failed: {exc}")
                continue
        onnx_models[precision] = result.path
        export[precision] = _export_entry(result, log.timings)
    for precision, path in onnx_models.items():
        artifacts.append(_artifact_entry(f"onnx {precision}", path, precision))

    # 5. TensorRT engines, where TensorRT and a GPU exist
    engines: dict[str, Path] = {}
    with log.step("TensorRT engines"):
        engines = _build_engines(onnx_models, config, skipped, failed, export, log)
    for precision, path in engines.items():
        artifacts.append(_artifact_entry(f"engine {precision}", path, precision))

    models = [*onnx_models.values(), *_runnable_engines(engines, config, skipped)]

    # 6. parity against the checkpoint
    from dacovid_export.parity.run import run_parity

    with log.step(f"parity on {inputs_note}"):
        parity = run_parity(
            checkpoint,
            models,
            images=images,
            batch_size=_PARITY_BATCH,
            seed=config.seed,
            device=config.device,
            progress=config.progress,
        )
    plots: list[Path] = []
    if parity.reference.classification is not None:
        plots.extend(parity.write_confusion_pngs(out / "confusion"))

    # 7. latency
    from dacovid_export.bench.run import run_benchmark

    with log.step("latency"):
        bench = run_benchmark([str(checkpoint), *(str(m) for m in models)], config.bench_config())
        plots.append(bench.save(plot=out / "latency.png")[0])
        bench.save(csv=out / "bench.csv")
    headline = _headline(bench)

    wall = time.perf_counter() - t_start
    result_obj = PipelineResult(
        out=out,
        report_md=out / "report.md",
        report_json=out / "report.json",
        embedded=config.embedded,
        artifacts=tuple(artifacts),
        skipped=tuple(skipped),
        failed=tuple(failed),
        parity=parity,
        bench=bench,
        headline=tuple(headline),
        plots=tuple(plots),
        wall_time_s=wall,
    )
    _write_reports(result_obj, config, export, inputs_note, log.timings, model_cost.to_dict())
    return result_obj


def _prepare_inputs(config: PipelineConfig, log: _Log) -> tuple[Path, Path | None, Path | None, int | None, str]:
    """(checkpoint, parity images, calibration images, calibration size, how the parity inputs are described)."""
    from dacovid_export.data.preprocessing import Preprocessing
    from dacovid_export.data.synthetic import make_synthetic_dataset

    out = config.out
    if config.embedded:
        size = config.image_size or EMBEDDED_IMAGE_SIZE
        checkpoint = out / "embedded-default.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_embedded_checkpoint(checkpoint, image_size=size, model_options=config.model_options, seed=config.seed)
        log.note(f"embedded default: {checkpoint} (seeded random weights, {size}x{size})")
    else:
        from dacovid_export.artifacts.info import read_artifact_info

        checkpoint = config.checkpoint  # type: ignore[assignment]
        info = read_artifact_info(checkpoint)
        size = info.image_size
        if config.images is not None:
            from dacovid_export.data.image_folder import labelled_images, match_folders_to_classes

            # a folder that cannot be matched to the classes would stop parity after minutes of export: say it now
            match_folders_to_classes(list(labelled_images(config.images, part="val")), info.class_names)
    images = config.images
    calib_data = config.calib_data
    calib_size = config.calib_size
    if images is None:
        # draw at the resize size so preprocessing crops exactly as it does for real images
        folder = out / "synthetic-images"
        make_synthetic_dataset(
            folder,
            per_class=EMBEDDED_IMAGES_PER_CLASS,
            size=Preprocessing(image_size=size).effective_resize_size,
            seed=config.seed,
        )
        images = folder
        log.note(f"synthetic images: {folder} ({3 * EMBEDDED_IMAGES_PER_CLASS})")
        if config.embedded and calib_data is None:
            calib_data = folder
            if calib_size is None:
                calib_size = 3 * EMBEDDED_IMAGES_PER_CLASS
        note = f"{3 * EMBEDDED_IMAGES_PER_CLASS} synthetic images"
    else:
        note = f"the images in {images}"
    return checkpoint, images, calib_data, calib_size, note


def _export_entry(result: Any, timings: Mapping[str, float]) -> dict[str, Any]:
    return {
        "path": str(result.path),
        "precision": result.precision,
        "size_bytes": result.size_bytes,
        "sha256": result.sha256,
        "step_seconds": dict(result.timings),
        "fp32_nodes": list(result.fp32_nodes),
        "operators": dict(result.histogram),
        "checks": list(result.checks),
        "verification": {k: [c.to_dict() for c in v] for k, v in result.verification.items()},
        **({"int8_guard": result.precision_details["guard"]} if "guard" in result.precision_details else {}),
    }


def _build_engines(
    onnx_models: Mapping[str, Path],
    config: PipelineConfig,
    skipped: list[dict[str, str]],
    failed: list[dict[str, str]],
    export: dict[str, Any],
    log: _Log,
) -> dict[str, Path]:
    """Build an engine per ONNX model with the runtime ``auto`` picks; returns those built.

    TensorRT needs a GPU to build; TensorRT-RTX builds without one, so its
    engines are built and described (size, build time, precision table) even
    where they cannot run; parity and latency then skip them with the reason.
    """
    from dacovid_export.trt.library import gpu_info, resolve_runtime

    try:
        runtime, why = resolve_runtime("auto")
        if runtime == "tensorrt":
            gpu_info("cuda" if config.device in ("auto", "cpu") else config.device)
    except MissingDependencyError as exc:
        skipped.append({"step": "TensorRT engines", "reason": str(exc)})
        log.note(f"skipped: {exc}")
        return {}
    if config.device == "cpu" and runtime == "tensorrt":
        skipped.append({"step": "TensorRT engines", "reason": "--device cpu was asked for; TensorRT engines run on a GPU"})
        return {}
    log.note(f"runtime {runtime} ({why})")
    from dacovid_export.engine.build import EngineBuildConfig, build_engine
    from dacovid_export.core.errors import EngineBuildError

    largest = max(config.batch_sizes)
    engines: dict[str, Path] = {}
    for precision, onnx_path in onnx_models.items():
        target = config.out / f"model.{precision}.engine"
        build = EngineBuildConfig(
            precision=precision, max_batch=max(largest, _PARITY_BATCH), opt_batch=largest, runtime=runtime
        )
        try:
            t0 = time.perf_counter()
            result = build_engine(onnx_path, target, build, progress=config.progress)
            export[f"engine_{precision}"] = {
                "path": str(result.engine_path),
                "runtime": result.metadata.runtime_label,
                "compute_capabilities": list(result.metadata.compute_capabilities),
                "size_bytes": result.metadata.engine_bytes,
                "seconds": round(time.perf_counter() - t0, 2),
                "phase_seconds": dict(result.phase_seconds),
                "build": build.to_dict(),
                "trtexec_equivalent": list(result.trtexec),
                "precision_counts": result.layer_precisions.counts(),
                "precision_table": result.layer_precisions.table_lines(),
                "loaded_here": result.verified,
            }
            engines[precision] = result.engine_path
        except (EngineBuildError, CheckFailedError) as exc:
            # TensorRT rejected this model: keep going with the others, the report says why
            failed.append(_failure(f"TensorRT {precision} engine", exc))
    return engines


def _runnable_engines(engines: Mapping[str, Path], config: PipelineConfig, skipped: list[dict[str, str]]) -> list[Path]:
    """The engines this machine can run; the others are reported as skipped for parity and latency."""
    from dacovid_export.backends.registry import unavailable_reason

    runnable = []
    for precision, path in engines.items():
        reason = unavailable_reason(path)
        if reason is None and config.device == "cpu":
            reason = "--device cpu was asked for; engines run on a GPU"
        if reason is None:
            runnable.append(path)
        else:
            skipped.append({"step": f"parity and latency of the {precision} engine", "reason": reason})
    return runnable


# ---------------------------------------------------------------------------
# headline ratios and the report


def _find(records: Sequence[Any], **match: Any) -> Any | None:
    for r in records:
        if all(getattr(r, k) == v for k, v in match.items()):
            return r
    return None


def _headline(bench: "BenchResult") -> list[dict[str, Any]]:
    """Median-latency ratios: ORT FP32 vs PyTorch eager, FP16/INT8 vs FP32, per backend, batch and timing.

    On the CPU, INT8 is also reported on OpenVINO, and the INT8 headline uses the faster of the two runtimes.
    """
    from dacovid_export.bench.report import CPU_INT8_TARGET

    records = bench.records
    out: list[dict[str, Any]] = []
    keys = sorted({(r.device, r.timing, r.batch) for r in records})
    for device, timing, batch in keys:
        same = [r for r in records if (r.device, r.timing, r.batch) == (device, timing, batch)]
        torch_fp32 = _find(same, backend="torch", precision="fp32", variant="eager")
        ort = {p: _find(same, backend="onnxruntime", precision=p) for p in PRECISIONS}
        trt = {p: _find(same, backend="tensorrt", precision=p) for p in PRECISIONS}
        ov_int8 = _find(same, backend="openvino", precision="int8")
        # the CPU headline uses the faster INT8 runtime: OpenVINO runs the signed Q/DQ model as INT8, ORT does not
        int8_cpu = [r for r in (ort["int8"], ov_int8) if r is not None]
        best_int8 = min(int8_cpu, key=lambda r: r.p50_ms) if int8_cpu else None
        pairs: list[tuple[str, Any, Any, float | None]] = [
            ("ONNX Runtime FP32 vs PyTorch eager FP32", ort["fp32"], torch_fp32, ORT_VS_TORCH_TARGET if device == "cpu" else None),
            ("ONNX Runtime FP16 vs ONNX Runtime FP32", ort["fp16"], ort["fp32"], None),
            ("ONNX Runtime INT8 vs ONNX Runtime FP32", ort["int8"], ort["fp32"], None),
            ("OpenVINO INT8 vs ONNX Runtime FP32", ov_int8, ort["fp32"], None),
            (
                f"CPU INT8 (fastest: {best_int8.backend if best_int8 else '-'}) vs ONNX Runtime FP32",
                best_int8 if device == "cpu" else None,
                ort["fp32"],
                CPU_INT8_TARGET,
            ),
            ("TensorRT FP32 vs PyTorch eager FP32", trt["fp32"], torch_fp32, None),
            ("TensorRT FP16 vs TensorRT FP32", trt["fp16"], trt["fp32"], None),
            ("TensorRT INT8 vs TensorRT FP32", trt["int8"], trt["fp32"], None),
        ]
        for label, num, den, target in pairs:
            if num is None or den is None or den.p50_ms <= 0:
                continue
            ratio = num.p50_ms / den.p50_ms
            out.append(
                {
                    "comparison": label,
                    "device": device,
                    "timing": timing,
                    "batch": batch,
                    "p50_ms": round(num.p50_ms, 3),
                    "baseline_p50_ms": round(den.p50_ms, 3),
                    "ratio": round(ratio, 3),
                    "target": target,
                    "meets_target": None if target is None else ratio <= target,
                }
            )
    return out


def _headline_text(h: Mapping[str, Any]) -> str:
    target = "" if h["target"] is None else f" (target <= {h['target']:.2f}: {'met' if h['meets_target'] else 'NOT met'})"
    return (
        f"{h['comparison']}, {h['device']} batch {h['batch']} [{h['timing']}]: {h['p50_ms']:.1f} / "
        f"{h['baseline_p50_ms']:.1f} ms = {h['ratio']:.2f}{target}"
    )


def _write_reports(
    result: PipelineResult,
    config: PipelineConfig,
    export: Mapping[str, Any],
    inputs_note: str,
    steps: Mapping[str, float],
    cost: Mapping[str, Any],
) -> None:
    from dacovid_export.bench.report import format_markdown as bench_markdown
    from dacovid_export.core.fileio import atomic_write_json, atomic_write_text

    bench, parity = result.bench, result.parity
    payload = {
        "format": "dacovid-pipeline-report",
        "format_version": 1,
        "embedded_default": result.embedded,
        "notice": EMBEDDED_NOTICE if result.embedded else None,
        "passed": result.passed,
        "config": config.to_dict(),
        "artifacts": list(result.artifacts),
        "model_cost": dict(cost),
        "export": dict(export),
        "step_seconds": dict(steps),
        "skipped": list(result.skipped),
        "failed": list(result.failed),
        "parity": None if parity is None else parity.to_dict(),
        "bench": [] if bench is None else [r.to_dict() for r in bench.records],
        "bench_config": None if bench is None else bench.config.to_dict(),
        "headline": list(result.headline),
        "environment": {} if bench is None else dict(bench.environment),
        "plots": [str(p) for p in result.plots],
        "notes": [INT8_CPU_NOTE],
        "wall_time_s": round(result.wall_time_s, 1),
    }
    atomic_write_json(result.report_json, payload)

    md: list[str] = ["# dacovid-export pipeline report", ""]
    if result.embedded:
        md += [f"> **{EMBEDDED_NOTICE}**", ""]
        md += [
            f"> Sized to finish within 10 minutes on 2 CPU cores: parity on {inputs_note}, batch sizes "
            f"{', '.join(map(str, config.batch_sizes))}, {config.iterations} timed iterations after "
            f"{config.warmup} warm-up runs per series. Run it on a trained checkpoint and real images "
            "(`--checkpoint`, `--images`, `--calib-data`) for figures that mean something clinically.",
            "",
        ]
    md += [f"Verdict: **{'PASS' if result.passed else 'FAIL'}** (wall time {result.wall_time_s:.0f} s).", ""]
    if cost.get("gflops") is not None:
        md += [
            f"Model: {cost['label']} (output stride, reduction kernel, reduction channels): "
            f"{cost['parameters_m']:.1f} M parameters, {cost['gflops']:.1f} GFLOPs per image at "
            f"{cost['image_size']}x{cost['image_size']} (1 multiply-add = 2 FLOPs).",
            "",
        ]
    md += ["## Artifacts", "", "| role | file | precision | size (MiB) | sha256 |", "|---|---|---|---:|---|"]
    for a in result.artifacts:
        md.append(f"| {a['role']} | {Path(a['path']).name} | {a['precision']} | {a['size_bytes'] / 2**20:.1f} | `{a['sha256'][:16]}...` |")
    md += ["", "## Steps", "", "| step | seconds |", "|---|---:|"]
    md += [f"| {name} | {seconds:.1f} |" for name, seconds in steps.items()]
    for precision in ("fp16", "int8"):
        if precision in export:
            nodes = export[precision]["fp32_nodes"]
            shown = ", ".join(nodes[:12]) + (f", ... ({len(nodes)} in all)" if len(nodes) > 12 else "")
            md += ["", f"{precision.upper()} model: {len(nodes)} node(s) kept in FP32: {shown or 'none'}"]
            guard = export[precision].get("int8_guard")
            if guard:
                from dacovid_export.export.onnx_export import guard_summary_lines

                md += ["", *(f"- {line}" for line in guard_summary_lines(guard))]
    built = [(p, export[f"engine_{p}"]) for p in PRECISIONS if f"engine_{p}" in export]
    if built:
        md += ["", "## Engines", "", "| engine | runtime | targets | size (MiB) | build (s) | loaded here |", "|---|---|---|---:|---:|---|"]
        for precision, e in built:
            targets = ", ".join(e["compute_capabilities"]) or "build GPU"
            md.append(
                f"| {Path(e['path']).name} | {e['runtime']} | {targets} | {e['size_bytes'] / 2**20:.1f} | "
                f"{e['seconds']:.1f} | {e['loaded_here']} |"
            )
        for precision, e in built:
            md += ["", f"{precision.upper()} engine:", "", "```", *e["precision_table"], "```"]
    if result.skipped or result.failed:
        md += ["", "## Skipped and failed steps", ""]
        md += [f"- skipped **{s['step']}**: {s['reason']}" for s in result.skipped]
        md += [f"- FAILED **{f['step']}**: {f['reason']}" for f in result.failed]
    if parity is not None:
        md += ["", "## Parity with the PyTorch checkpoint", "", "```", parity.format_table(), "```"]
        confusion = [p for p in result.plots if p.parent.name == "confusion"]
        if confusion:
            md += ["", "Confusion matrices: " + ", ".join(f"[{p.name}](confusion/{p.name})" for p in confusion)]
    if result.headline:
        md += ["", "## Headline ratios (median latency)", ""]
        md += [f"- {_headline_text(h)}" for h in result.headline]
    if bench is not None:
        md += ["", bench_markdown(bench, heading_level=2).rstrip(), "", "![latency versus batch](latency.png)"]
    md += ["", "## Notes", "", f"- {INT8_CPU_NOTE}"]
    atomic_write_text(result.report_md, "\n".join(md) + "\n")
