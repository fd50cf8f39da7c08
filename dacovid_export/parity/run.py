"""Parity: does every exported model give the checkpoint's answers? The verdict ``dacovid-export check`` files.

The PyTorch checkpoint (strict FP32, no TF32) is the reference. Every model runs
on exactly the same preprocessed inputs, batch by batch: a labelled
class-per-folder tree (``images``) or, without one, a seeded set of synthetic
inputs. Per model: max/mean |logit difference|, the max relative to the
reference logits' scale (max |reference logit|), max/mean |probability
difference|, top-1 agreement, and on labelled inputs accuracy, per-class
precision/recall/F1 (the paper's Table 3) and the confusion matrix, also for
the reference. Each model is judged against the tolerance of its precision
(:class:`ParityConfig`).

Metadata rules, decided here:

- class names or preprocessing (image size, resize, mean/std, interpolation)
  that differ from the checkpoint's are an input error raised before anything
  runs: such a model cannot be compared, and deployed with its own metadata it
  would see different pixels.
- ``source_sha256`` that is not the checkpoint's sha256 fails that model's
  verdict (a "source" check): the evidence must tie the artifact to this
  checkpoint. ``ParityConfig(require_same_source=False)`` (CLI
  ``--allow-source-mismatch``) turns it into a warning, e.g. for a checkpoint
  that was re-saved with the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo, artifact_kind
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend, check_finite_logits, run_any_batch
from dacovid_export.backends.cpp_runtime import CppRuntime
from dacovid_export.backends.registry import (
    open_backend,
    resolve_device,
    unavailable_reason,
)
from dacovid_export.backends.torch_backend import TorchBackend
from dacovid_export.backends.triton_endpoint import TritonEndpoint
from dacovid_export.core.errors import (
    CheckFailedError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.fileio import same_file, sha256_file
from dacovid_export.core.limits import check_batch_size
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.versions import package_versions
from dacovid_export.data.agreement import softmax
from dacovid_export.data.evidence import NO_RECORD, resolve_record
from dacovid_export.data.fingerprint import Fingerprint, ImageRecord, fingerprint_files
from dacovid_export.data.image_folder import labelled_images, match_folders_to_classes
from dacovid_export.data.metrics import classification_report
from dacovid_export.data.preprocessing import preprocess_batch
from dacovid_export.data.synthetic import synthetic_batch
from dacovid_export.parity.compare import check_metadata, judge_logits
from dacovid_export.parity.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SYNTHETIC_COUNT,
    ParityConfig,
    Tolerance,
)
from dacovid_export.parity.report import (
    CheckResult,
    ModelParity,
    ParityReport,
    ReferenceResult,
    SubsetRow,
)

__all__ = ["check_parity", "run_parity"]

# synthetic inputs are generated in fixed blocks so the set depends on the seed only, not on batch size
_SYNTHETIC_BLOCK = 64


# --------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class _Inputs:
    description: Mapping[str, Any]
    count: int
    labels: np.ndarray | None  # int64 [count], None for synthetic inputs
    batches: Any  # () -> iterator of float32 n x 3 x S x S
    files: tuple[Path, ...] = ()  # the image files, in batch order (none for synthetic inputs)


def _image_inputs(
    images: str | os.PathLike[str], reference: ArtifactInfo, batch_size: int, strict_dicom: bool = False
) -> _Inputs:

    # a training run's split.json means its held-out ("val") images
    folders = labelled_images(images, part="val")
    mapping = match_folders_to_classes(list(folders), reference.class_names)
    files: list[Path] = []
    labels: list[int] = []
    for folder, paths in folders.items():
        files.extend(paths)
        labels.extend([mapping[folder]] * len(paths))
    spec = reference.preprocessing

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(files), batch_size):
            yield preprocess_batch(files[start : start + batch_size], spec, strict_dicom=strict_dicom)

    description = {
        "mode": "images",
        "root": str(images),
        "count": len(files),
        "per_class": {reference.class_names[mapping[f]]: len(p) for f, p in folders.items()},
        "folders": {f: reference.class_names[i] for f, i in mapping.items()},
    }
    return _Inputs(description, len(files), np.asarray(labels, dtype=np.int64), batches, tuple(files))


def _synthetic_inputs(count: int, seed: int, reference: ArtifactInfo, batch_size: int) -> _Inputs:
    size = reference.image_size

    def blocks() -> Iterator[np.ndarray]:
        for block, start in enumerate(range(0, count, _SYNTHETIC_BLOCK)):
            block_seed = int(np.random.SeedSequence([seed, block]).generate_state(1)[0])
            yield synthetic_batch(min(_SYNTHETIC_BLOCK, count - start), size, seed=block_seed)

    def batches() -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        held = 0
        for block in blocks():
            pending.append(block)
            held += len(block)
            while held >= batch_size:
                merged = np.concatenate(pending)
                yield merged[:batch_size]
                pending, held = [merged[batch_size:]], held - batch_size
        if held:
            yield np.concatenate(pending)

    description = {"mode": "synthetic", "count": count, "seed": seed, "image_size": size}
    return _Inputs(description, count, None, batches)


# ----------------------------------------------------------------------- evidence


@dataclasses.dataclass(frozen=True)
class _Evidence:
    """Which of the input images trained the checkpoint, by content; None fields for synthetic inputs."""

    fingerprints: tuple[Fingerprint, ...]
    trained: np.ndarray  # bool [count]
    record: str | None  # whose record said so; None: nobody (nothing could be checked)

    @classmethod
    def of(cls, inputs: _Inputs, record: ImageRecord | None, progress: bool) -> "_Evidence":
        prints = tuple(fingerprint_files(inputs.files, what="--images", progress=progress))
        trained = np.array([record is not None and record.trained(f) for f in prints], dtype=bool)
        if record is not None and len(prints) and trained.all():
            raise UserInputError(
                f"all {len(prints)} --images trained the checkpoint (by {record.source}): a verdict on them says nothing "
                "about new patients; give images it never saw (e.g. its run's split.json: the held-out part)"
            )
        return cls(prints, trained, None if record is None else record.source)

    def describe(self) -> str:
        if self.record is None:
            return NO_RECORD
        return (f"{int(self.trained.sum())} of {len(self.trained)} image(s) trained the checkpoint (by {self.record}): "
                "reported in rows of their own, not judged")

    def chosen(self, guard_fingerprints: Sequence[str]) -> np.ndarray:
        """bool [count]: the images a model's guard validated on (they chose the model)."""
        chosen = set(guard_fingerprints)
        return np.array([f.hex() in chosen for f in self.fingerprints], dtype=bool)


def _guard_fingerprints(path: str | os.PathLike[str], kind: str) -> tuple[str, ...]:
    """The fingerprints of the images a model's accuracy guard chose it on (ONNX metadata, an engine's sidecar)."""
    if kind == "onnx":
        from dacovid_export.calibration.step_metadata import guard_fingerprints

        return guard_fingerprints(path)
    if kind == "engine":
        from dacovid_export.artifacts.engine_metadata import read_engine_metadata

        return tuple(read_engine_metadata(path).guard_fingerprints)
    return ()


def _verdict_mask(evidence: _Evidence | None, chosen: np.ndarray | None, count: int, name: str) -> np.ndarray:
    """bool [count]: the images a model's verdict stands on (neither trained the checkpoint nor chose the model)."""
    if evidence is None:
        return np.ones(count, dtype=bool)
    mask = ~evidence.trained & ~(chosen if chosen is not None else np.zeros(count, dtype=bool))
    if not mask.any():
        raise UserInputError(
            f"no --images image is left for {name}'s verdict: {int(evidence.trained.sum())} trained the checkpoint and "
            f"{int(chosen.sum()) if chosen is not None else 0} chose the model (its guard validated on them); give "
            "images neither saw (the part of the run's held-out images the guard left for check)"
        )
    return mask


# ----------------------------------------------------------------------- metadata


# ------------------------------------------------------------------------ compare


# ---------------------------------------------------------------------------- run


def run_parity(
    checkpoint: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    *,
    images: str | os.PathLike[str] | None = None,
    config: ParityConfig = ParityConfig(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    synthetic_count: int = DEFAULT_SYNTHETIC_COUNT,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    endpoints: Sequence[str] = (),
    endpoint_model: str = "dacovid",
    strict_dicom: bool = False,
    training_data: str | os.PathLike[str] | None = None,
    cpp: str | os.PathLike[str] | None = None,
) -> ParityReport:
    """Compare each model with the checkpoint on the same inputs; see the module docstring.

    ``endpoints``: Triton servers (``http://HOST:PORT`` / ``grpc://HOST:PORT``) whose
    ``endpoint_model`` ensemble is judged like one more artifact: it is sent the
    encoded image files (so ``images`` is required) and its logits are compared with
    the checkpoint's on the same images, by the tolerance of its precision.
    ``strict_dicom``: a DICOM image that is not a chest CR/DX is refused, not a warning.
    ``cpp``: a built ``dacovid_infer`` (``cpp/``): every model also runs through the C++ runtime, one more
    row each, judged the same way; it decodes and preprocesses the image files itself (``images`` required).

    Evidence: with ``images``, every image is fingerprinted; those that trained the checkpoint (its
    record, and/or ``training_data``: DIR or split.json) and, per model, those its accuracy guard
    chose it on (recorded in the model) are reported in rows of their own and not judged; the
    verdict stands on the rest. A set with no such image is a :class:`UserInputError`.

    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` for the reference and every
    model (TensorRT engines always run on CUDA). Raises :class:`UserInputError`
    for bad inputs or mismatched metadata; a model that fails its tolerance does
    not raise: the report says so and is falsy.
    """
    _check_arguments(
        checkpoint, models, images=images, batch_size=batch_size, synthetic_count=synthetic_count, device=device,
        endpoints=endpoints, strict_dicom=strict_dicom, training_data=training_data, cpp=cpp,
    )
    models, skipped = _runnable(models, endpoints)
    with contextlib.ExitStack() as stack:
        # the reference's own metadata (read once, with the weights) is what models must match
        reference = stack.enter_context(TorchBackend(checkpoint, device=resolve_device(device, "torch")))
        rows = _Rows(reference.info, config)
        infos = [read_artifact_info(m) for m in models]  # every model's metadata is judged before any image is read
        for info in infos:
            rows.judge(info)
        inputs = (
            _image_inputs(images, reference.info, batch_size, strict_dicom)
            if images is not None
            else _synthetic_inputs(synthetic_count, seed, reference.info, batch_size)
        )
        evidence = None
        if images is not None:
            evidence = _Evidence.of(inputs, resolve_record(reference.image_record, training_data, progress=progress), progress)
        chosen: list[np.ndarray | None] = [None] * len(models)
        if evidence is not None:
            chosen = [evidence.chosen(_guard_fingerprints(m, info.kind)) for m, info in zip(models, infos)]
        for model, c in zip(models, chosen):
            rows.add(None, c, _verdict_mask(evidence, c, inputs.count, _label_of(model)))
        for i, model in enumerate(models):
            rows.backends[i] = stack.enter_context(open_backend(model, device=device))
        _add_cpp_and_endpoint_rows(stack, rows, models, cpp, endpoints, endpoint_model, evidence, inputs.count)
        opened = [b for b in rows.backends if b is not None]
        ref_logits, logits, errors = _run_all(reference, opened, inputs, batch_size, progress)
        descriptions = [b.describe() for b in opened]
        reference_description = reference.describe()

    results = [
        _row_result(rows, i, descriptions[i], inputs.labels, ref_logits, logits[i], errors[i], evidence)
        for i in range(len(rows.infos))
    ]
    return _report(
        checkpoint, rows.reference_info, reference_description, ref_logits, results, inputs, evidence, config, skipped
    )


def _check_arguments(
    checkpoint: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    *,
    images: str | os.PathLike[str] | None,
    batch_size: int,
    synthetic_count: int,
    device: str,
    endpoints: Sequence[str],
    strict_dicom: bool,
    training_data: str | os.PathLike[str] | None,
    cpp: str | os.PathLike[str] | None,
) -> None:
    """Every argument error of :func:`run_parity`, before anything is loaded."""
    if not models and not endpoints:
        raise UserInputError("no models to check: give one or more .onnx/.engine files or a Triton endpoint")
    if strict_dicom and images is None:
        raise UserInputError("--strict-dicom applies to --images: synthetic inputs are no DICOM; give --images or leave it out")
    if endpoints and images is None:
        raise UserInputError("a Triton endpoint is sent encoded image files: give --images (synthetic tensors have no files)")
    if training_data is not None and images is None:
        raise UserInputError("--training-data tells --images that trained the checkpoint apart: give --images too")
    if cpp is not None and images is None:
        raise UserInputError("the C++ runtime (--cpp) reads image files: give --images (synthetic tensors have no files)")
    if cpp is not None and not models:
        raise UserInputError("--cpp runs the given models through the C++ runtime: give one or more .onnx files")
    check_batch_size(batch_size, "batch_size")
    if images is None and (not isinstance(synthetic_count, int) or synthetic_count < 1):
        raise UserInputError(f"synthetic_count={synthetic_count!r}: give an integer >= 1")
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise UserInputError(f"device={device!r}: use 'auto', 'cpu' or 'cuda'")

    if artifact_kind(checkpoint) != "checkpoint":
        raise UserInputError(
            f"--checkpoint {str(checkpoint)!r} is a {artifact_kind(checkpoint)}; the reference must be a PyTorch checkpoint (.pt)"
        )
    for model in models:
        if Path(model).exists() and same_file(model, checkpoint):
            raise UserInputError(
                f"model {str(model)!r} is the checkpoint itself: comparing it with itself proves nothing; "
                "give the exported .onnx/.engine files"
            )


def _runnable(
    models: Sequence[str | os.PathLike[str]], endpoints: Sequence[str]
) -> tuple[list[str | os.PathLike[str]], list[tuple[str, str]]]:
    """The models this machine can run, and ``(path, reason)`` for each it skips (no GPU, runtime not installed)."""
    # an engine this machine cannot run is skipped with the reason, not failed
    skipped = [(str(m), reason) for m in models if (reason := unavailable_reason(m)) is not None]
    if models and len(skipped) == len(models) and not endpoints:
        raise MissingDependencyError("no model can run here: " + "; ".join(f"{p}: {r}" for p, r in skipped))
    return [m for m in models if str(m) not in {p for p, _ in skipped}], skipped


def _add_cpp_and_endpoint_rows(
    stack: contextlib.ExitStack,
    rows: "_Rows",
    models: Sequence[str | os.PathLike[str]],
    cpp: str | os.PathLike[str] | None,
    endpoints: Sequence[str],
    endpoint_model: str,
    evidence: "_Evidence | None",
    count: int,
) -> None:
    """After the models' rows: one C++ runtime row per model (with ``cpp``), then one row per Triton endpoint."""
    for i, model in enumerate(models if cpp is not None else ()):
        runtime = CppRuntime(cpp, model)
        # what the C++ side read from the artifact, compared like any artifact's metadata; the same model
        # file, so its guard chose it on the same images
        rows.judge(runtime.info())
        rows.add(runtime, rows.chosen[i], rows.masks[i])
    for url in endpoints:
        endpoint = stack.enter_context(TritonEndpoint(url, model=endpoint_model))
        rows.judge(endpoint.info())
        rows.add(endpoint, None, _verdict_mask(evidence, None, count, url))


@dataclasses.dataclass
class _Rows:
    """The report's rows as they are opened: the models, then their C++ runs, then the endpoints.

    :meth:`judge` adds a row's metadata (its warnings and tolerance); :meth:`add` its runner,
    the images its guard chose it on and its verdict mask, in the same order.
    """

    reference_info: ArtifactInfo
    config: ParityConfig
    infos: list[ArtifactInfo] = dataclasses.field(default_factory=list)
    source_warnings: list[list[str]] = dataclasses.field(default_factory=list)
    tolerances: list[Tolerance] = dataclasses.field(default_factory=list)
    backends: list[Backend | TritonEndpoint | CppRuntime | None] = dataclasses.field(default_factory=list)
    chosen: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    masks: list[np.ndarray] = dataclasses.field(default_factory=list)

    def judge(self, info: ArtifactInfo) -> None:
        self.infos.append(info)
        self.source_warnings.append(check_metadata(info, self.reference_info))
        self.tolerances.append(self.config.tolerance_for(info.precision))

    def add(self, backend: Backend | TritonEndpoint | CppRuntime | None, chosen: np.ndarray | None, mask: np.ndarray) -> None:
        self.backends.append(backend)  # None: a model's backend, opened once every row is judged
        self.chosen.append(chosen)
        self.masks.append(mask)


def _row_result(
    rows: _Rows,
    i: int,
    description: str,
    labels: np.ndarray | None,
    ref_logits: np.ndarray,
    logits: np.ndarray,
    error: str | None,
    evidence: "_Evidence | None",
) -> ModelParity:
    """Row ``i`` judged on its verdict images (and, with evidence, its rows of trained and guard-chosen images)."""
    mask = rows.masks[i]
    result = _model_result(
        rows.infos[i], description, rows.tolerances[i], ref_logits[mask], logits[mask] if error is None else logits,
        error, None if labels is None else labels[mask], rows.reference_info, rows.source_warnings[i],
        rows.config.require_same_source,
    )
    if evidence is not None:
        result = _with_evidence(result, evidence, mask, rows.chosen[i], ref_logits, logits, error is None)
    return result


def _report(
    checkpoint: str | os.PathLike[str],
    reference_info: ArtifactInfo,
    reference_description: str,
    ref_logits: np.ndarray,
    results: list[ModelParity],
    inputs: _Inputs,
    evidence: "_Evidence | None",
    config: ParityConfig,
    skipped: list[tuple[str, str]],
) -> ParityReport:
    """The :class:`ParityReport`: the reference's own accuracy on the images that did not train it, and every row."""
    labels = inputs.labels
    unseen = np.ones(inputs.count, dtype=bool) if evidence is None else ~evidence.trained
    ref_report = None if labels is None else classification_report(
        labels[unseen], ref_logits[unseen].argmax(axis=1), reference_info.class_names
    )
    description = dict(inputs.description)
    if evidence is not None:
        description.update(
            evidence=evidence.describe(), trained_checkpoint=int(evidence.trained.sum()), training_record=evidence.record,
            image_fingerprints=[f.hex() for f in evidence.fingerprints],
        )
    return ParityReport(
        reference=ReferenceResult(
            path=str(checkpoint),
            sha256=reference_info.source_sha256,
            backend=reference_description,
            logit_scale=float(np.abs(ref_logits).max()) if ref_logits.size else 0.0,
            classification=ref_report,
        ),
        models=tuple(results),
        inputs=description,
        config=config.to_dict(),
        class_names=reference_info.class_names,
        versions=package_versions(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        skipped=tuple(skipped),
    )


def check_parity(
    checkpoint: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    *,
    images: str | os.PathLike[str] | None = None,
    json: str | os.PathLike[str] | None = None,
    confusion_png: str | os.PathLike[str] | None = None,
    config: ParityConfig = ParityConfig(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    synthetic_count: int = DEFAULT_SYNTHETIC_COUNT,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    endpoints: Sequence[str] = (),
    endpoint_model: str = "dacovid",
    strict_dicom: bool = False,
    training_data: str | os.PathLike[str] | None = None,
    cpp: str | os.PathLike[str] | None = None,
) -> tuple[ParityReport, list[Path]]:
    """``dacovid-export check``: :func:`run_parity` (the keywords after ``confusion_png`` are its own), then the files asked for.

    The outputs are checked before any model runs (one that would overwrite the
    checkpoint, a model or the image folder is refused, as is ``confusion_png``
    without labelled ``images``). Returns the report and the paths written; a model
    that fails its tolerance does not raise (``bool(report)`` is False).
    """
    if confusion_png is not None and images is None:
        raise UserInputError("--confusion-png needs --images: synthetic inputs have no labels")
    check_outputs(
        inputs=[checkpoint, *models, images, training_data], files={"--json": json},
        folders={"--confusion-png": confusion_png},
    )
    report = run_parity(
        checkpoint, models, images=images, config=config, batch_size=batch_size, synthetic_count=synthetic_count,
        seed=seed, device=device, progress=progress, endpoints=endpoints, endpoint_model=endpoint_model,
        strict_dicom=strict_dicom, training_data=training_data, cpp=cpp,
    )
    written = [] if json is None else [report.write_json(json)]
    if confusion_png is not None:
        written += report.write_confusion_pngs(confusion_png)
    return report, written


def _run_all(
    reference: Backend,
    backends: Sequence[Backend | TritonEndpoint | CppRuntime],
    inputs: _Inputs,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, list[np.ndarray], list[str | None]]:
    """Run the reference and every model batch by batch; a model that yields NaN/inf stops, the others go on.

    A Triton endpoint gets the batch's image files, encoded, instead of the tensors. The C++ runtime gets every
    file in one run of its program (a process and a compile per batch would cost more than the check), sliced here.
    """
    ref_parts: list[np.ndarray] = []
    parts: list[list[np.ndarray]] = [[] for _ in backends]
    errors: list[str | None] = [None for _ in backends]
    whole: dict[int, np.ndarray] = {}
    for i, backend in enumerate(backends):
        if isinstance(backend, CppRuntime):
            try:
                whole[i] = check_finite_logits(backend.logits_for_files(inputs.files, batch_size), backend.info(), backend.describe())
            except CheckFailedError as exc:
                errors[i] = str(exc)
    total = math.ceil(inputs.count / batch_size)
    with progress_bar(total=total, desc="parity", unit="batch", enabled=progress) as bar:
        done = 0
        for batch in inputs.batches():  # n x 3 x S x S, shared by every model
            ref_parts.append(run_any_batch(reference, batch, batch_size))
            files = inputs.files[done : done + len(batch)]
            done += len(batch)
            for i, backend in enumerate(backends):
                if errors[i] is not None:
                    continue
                try:
                    if isinstance(backend, CppRuntime):
                        parts[i].append(whole[i][done - len(batch) : done])
                    elif isinstance(backend, TritonEndpoint):
                        parts[i].append(check_finite_logits(backend.logits_for_files(files), backend.info(), f"triton/{backend.protocol}"))
                    else:
                        parts[i].append(run_any_batch(backend, batch, batch_size))
                except CheckFailedError as exc:  # non-finite logits: this model fails, the check goes on
                    errors[i] = str(exc)
            bar.update(1)
    ref_logits = np.concatenate(ref_parts)
    logits = [np.concatenate(p) if errors[i] is None else np.zeros((0, 0), np.float32) for i, p in enumerate(parts)]
    return ref_logits, logits, errors


def _label_of(path: str | os.PathLike[str]) -> str:
    return str(path) if "://" in str(path) else Path(path).name


def _subset_row(name: str, reference: np.ndarray, logits: np.ndarray) -> SubsetRow:
    diff = np.abs(np.asarray(logits, np.float64) - reference)
    same = reference.argmax(axis=1) == logits.argmax(axis=1)
    return SubsetRow(
        name, len(reference), float(same.mean()), int((~same).sum()), float(diff.max()),
        float(np.abs(softmax(logits) - softmax(reference)).max()),
    )


def _with_evidence(
    result: ModelParity, evidence: _Evidence, mask: np.ndarray, chosen: np.ndarray | None,
    ref_logits: np.ndarray, logits: np.ndarray, ran: bool,
) -> ModelParity:
    """The verdict's evidence (counts, record, the verdict images' sha256) and the set-aside images' own rows."""
    chosen = chosen if chosen is not None else np.zeros(len(mask), dtype=bool)
    rows = []
    if ran:
        for name, subset in (
            ("trained the checkpoint", evidence.trained),
            ("chose the model (its guard's validation images)", chosen & ~evidence.trained),
        ):
            if subset.any():
                rows.append(_subset_row(name, ref_logits[subset], logits[subset]))
    record = {
        "verdict_images": int(mask.sum()),
        "trained_checkpoint": int(evidence.trained.sum()),
        "chose_model": int((chosen & ~evidence.trained).sum()),
        "training_record": evidence.record,
        "verdict_image_sha256": [f.sha256 for f, m in zip(evidence.fingerprints, mask) if m],
    }
    return dataclasses.replace(result, evidence=record, other_rows=tuple(rows))


def _model_result(
    info: ArtifactInfo,
    description: str,
    tolerance: Tolerance,
    ref_logits: np.ndarray,
    logits: np.ndarray,
    error: str | None,
    labels: np.ndarray | None,
    reference_info: ArtifactInfo,
    source_problems: list[str],
    require_same_source: bool,
) -> ModelParity:
    warnings: list[str] = []
    checks: list[CheckResult] = []
    if source_problems and require_same_source:
        checks.append(
            CheckResult("source", False, (info.source_sha256 or "none")[:12], reference_info.source_sha256[:12], "==",
                        "exported from another checkpoint; --allow-source-mismatch to accept")
        )
    else:
        warnings.extend(source_problems)
    common = dict(
        path=info.path, kind=info.kind, precision=info.precision, backend=description,
        sha256=str(info.extra.get("model_sha256", "")) if info.kind == "endpoint" else sha256_file(info.path),
        source_sha256=info.source_sha256, count=len(ref_logits),
    )
    if error is not None:
        return ModelParity(
            **common, max_abs_logit_diff=None, mean_abs_logit_diff=None, max_rel_logit_diff=None, max_abs_prob_diff=None,
            mean_abs_prob_diff=None, top1_agreement=None, disagreements=None, classification=None, accuracy_drop=None,
            checks=tuple(checks), warnings=tuple(warnings), error=error,
        )  # fmt: skip
    numbers, value_checks = judge_logits(ref_logits, logits, tolerance, labels=labels, class_names=reference_info.class_names)
    return ModelParity(
        **common,
        max_abs_logit_diff=numbers["max_abs_logit_diff"],
        mean_abs_logit_diff=numbers["mean_abs_logit_diff"],
        max_rel_logit_diff=numbers["max_rel_logit_diff"],
        max_abs_prob_diff=numbers["max_abs_prob_diff"],
        mean_abs_prob_diff=numbers["mean_abs_prob_diff"],
        top1_agreement=numbers["top1_agreement"],
        disagreements=numbers["disagreements"],
        classification=numbers["classification"],
        accuracy_drop=numbers["accuracy_drop"],
        checks=tuple(checks) + value_checks,
        warnings=tuple(warnings),
    )
