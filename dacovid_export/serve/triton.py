"""A Triton Inference Server model repository that takes encoded images and answers with the class.

Layout written for ``name="dacovid"`` (configs through Triton's own ``ModelConfig``,
:mod:`.triton_config`)::

    REPO/dacovid/config.pbtxt                 ensemble: image (bytes) -> probabilities, class_name, logits
    REPO/dacovid/1/                           (empty: Triton wants a version folder)
    REPO/dacovid_preprocess/{config.pbtxt,1/model.py}    python: decode + the artifact's Preprocessing
    REPO/dacovid_classifier/config.pbtxt      input [3, S, S] -> logits [K]
    REPO/dacovid_classifier/1/...             python: model.py + the artifact (and its sidecar / external data)
                                              native: model.plan (tensorrt_plan) or model.onnx (onnxruntime_onnx)
    REPO/dacovid_classifier/labels.txt        class names (native classifiers' label_filename)
    REPO/dacovid_classifier/dacovid_metadata.json   the artifact's self-description, for audits
    REPO/dacovid_postprocess/{config.pbtxt,1/model.py}   python: softmax, class name
    REPO/dacovid_requirements.txt             what the python-backend models import (docs/serving.md)

The classifier backend: ``python`` runs the package's own backends inside Triton's
python stub (ONNX Runtime, OpenVINO for INT8 on a CPU, TensorRT / TensorRT-RTX on a
GPU), which makes TensorRT-RTX engines servable at all; ``native`` gives the
``tensorrt_plan`` / ``onnxruntime_onnx`` model of NGC containers; ``auto`` is
``native`` for TensorRT 10/11 engines and ``python`` otherwise.

Every file goes through a temporary file and a rename, model files first and each
``config.pbtxt`` last, so a server polling the repository never loads half a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dacovid_export.artifacts.engine_metadata import (
    engine_artifact_info,
    sidecar_path,
)
from dacovid_export.artifacts.info import ArtifactInfo, artifact_kind
from dacovid_export.artifacts.onnx_graph import external_data_locations
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.artifacts.outputs import check_outputs, companion_files
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    same_file,
    sha256_file,
    verify_sha256,
)
from dacovid_export.core.limits import check_batch_size
from dacovid_export.core.validate import is_int
from dacovid_export.core.versions import __version__
from dacovid_export.serve.triton_config import (
    TRITON_KINDS,
    BatchingConfig,
    classifier_config,
    config_text,
    ensemble_config,
    python_config,
)
from dacovid_export.serve.triton_models import model_file_source

__all__ = [
    "TRITON_KINDS",
    "TRITON_BACKENDS",
    "DEFAULT_ONNX_MAX_BATCH",
    "REQUIREMENTS_FILE",
    "TritonRepository",
    "write_triton_repository",
]

TRITON_BACKENDS = ("auto", "native", "python")
# An ONNX model with a dynamic batch has no upper bound of its own; 8 keeps a
# dynamic batch of 224x224 DA-COVID Net inputs within a few GiB of activations.
DEFAULT_ONNX_MAX_BATCH = 8
REQUIREMENTS_FILE = "dacovid_requirements.txt"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclasses.dataclass(frozen=True)
class TritonRepository:
    """What :func:`write_triton_repository` wrote: the repository, its models and how the classifier runs."""

    repo: Path
    ensemble: str  # the model clients call
    models: tuple[str, ...]  # every model folder written, the ensemble first
    classifier_backend: str  # "python", "onnxruntime_onnx" or "tensorrt_plan"
    kind: str
    max_batch: int



@dataclasses.dataclass(frozen=True)
class _Classifier:
    """The artifact as the classifier model will hold it."""

    info: ArtifactInfo
    backend: str  # python | onnxruntime_onnx | tensorrt_plan
    max_batch: int
    preferred: tuple[int, ...]
    input_type: str
    output_type: str
    files: Mapping[str, Path]  # name in the version folder -> source file
    main_file: str
    sha256: str
    parameters: Mapping[str, str]
    metadata: Mapping[str, Any]


def _common_parameters(info: ArtifactInfo, model_sha256: str) -> dict[str, str]:
    return {
        "dacovid_precision": info.precision,
        "dacovid_class_names": json.dumps(list(info.class_names), ensure_ascii=False),
        "dacovid_preprocessing": json.dumps(info.preprocessing.to_dict(), ensure_ascii=False),
        "dacovid_source_sha256": info.source_sha256,
        "dacovid_model_sha256": model_sha256,
        "dacovid_export_version": __version__,
    }


def _onnx_external_files(path: Path) -> list[str]:
    """Locations (relative to the model's folder) of the external data files an ONNX model references, all present."""
    locations = external_data_locations(path)
    for location in locations:
        if Path(location).is_absolute() or ".." in Path(location).parts:
            raise UserInputError(
                f"{str(path)!r} stores weights at {location!r}, outside its own folder; re-save it with external data beside it"
            )
        if not (path.parent / location).is_file():
            raise UserInputError(f"{str(path)!r} references the external data file {location!r}, which is missing")
    return locations


def _validate(name: str, max_batch: int | None, backend: str, kind: str | None) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserInputError(f"model name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' or '-'")
    if max_batch is not None:
        check_batch_size(max_batch, "max_batch")
    if backend not in TRITON_BACKENDS:
        raise UserInputError(f"backend={backend!r}: use one of {', '.join(TRITON_BACKENDS)}")
    if kind is not None and kind not in TRITON_KINDS:
        raise UserInputError(f"kind={kind!r}: use 'gpu' or 'cpu'")


def _engine_classifier(model_path: Path, backend: str, kind: str, max_batch: int | None) -> _Classifier:
    from dacovid_export.engine.sidecar import read_engine_sidecar  # engine/ pulls torch: served stubs lack it

    meta = read_engine_sidecar(model_path)
    info = engine_artifact_info(meta, model_path)
    if kind == "cpu":
        raise UserInputError("a TensorRT engine runs on a GPU only: use --kind gpu (--kind cpu is for ONNX models)")
    if backend == "auto":
        backend = "python" if meta.runtime == "tensorrt-rtx" else "native"
    if backend == "native" and meta.runtime == "tensorrt-rtx":
        # Triton's tensorrt_plan backend links TensorRT, which cannot deserialize a TensorRT-RTX engine
        raise UserInputError(
            f"{str(model_path)!r} is a TensorRT-RTX engine, and Triton's TensorRT backend runs TensorRT engines only: "
            "serve it with --backend python (or auto), or build a TensorRT engine with 'dacovid-export trt ... --runtime tensorrt'"
        )
    if meta.min_batch != 1:
        raise UserInputError(
            f"{str(model_path)!r} accepts batches from {meta.min_batch}, but Triton sends any batch from 1: rebuild it with --min-batch 1"
        )
    if max_batch is not None and max_batch > meta.max_batch:
        raise UserInputError(
            f"max_batch={max_batch} exceeds the engine's profile maximum {meta.max_batch}: use --max-batch {meta.max_batch} "
            "or rebuild the engine with a larger --max-batch"
        )
    batch = max_batch if max_batch is not None else meta.max_batch
    # the sidecar's hash is recorded as the plan's, so the plan must be the bytes that hash describes
    digest = verify_sha256(model_path, meta.engine_sha256, recorded_in=f"its sidecar {sidecar_path(model_path).name!r}")
    parameters = _common_parameters(info, digest)
    parameters.update(
        {
            "dacovid_tensorrt_runtime": meta.runtime,
            "dacovid_tensorrt_version": meta.tensorrt_version,
            "dacovid_gpu": meta.gpu_name,
            "dacovid_compute_capability": meta.compute_capability_str,
            "dacovid_hardware_compatible": "true" if meta.hardware_compatible else "false",
            "dacovid_onnx_sha256": meta.onnx_sha256,
        }
    )
    if backend == "native":
        files, main = {"model.plan": model_path}, "model.plan"
        input_type, output_type = _TRITON_DTYPES[meta.input_dtype], _TRITON_DTYPES[meta.output_dtype]
    else:
        # the package's TensorRT backend reads the engine beside its sidecar, under the names they were built with
        files = {model_path.name: model_path, sidecar_path(model_path).name: sidecar_path(model_path)}
        main = model_path.name
        input_type = output_type = "TYPE_FP32"  # the package's backends take and give float32
    return _Classifier(
        info=info, backend="tensorrt_plan" if backend == "native" else "python", max_batch=batch,
        preferred=tuple(sorted({b for b in (meta.opt_batch, batch) if 1 < b <= batch})), input_type=input_type,
        output_type=output_type, files=files, main_file=main, sha256=digest, parameters=parameters, metadata=meta.to_dict(),
    )  # fmt: skip


def _onnx_classifier(model_path: Path, backend: str, max_batch: int | None) -> _Classifier:
    info = read_onnx_info(model_path)
    if info.max_batch is not None:
        raise UserInputError(
            f"{str(model_path)!r} has a fixed batch of {info.max_batch}; Triton's dynamic batching needs a dynamic "
            "batch dimension: export the ONNX with a dynamic batch"
        )
    hint = info.extra.get("suggested_max_batch")  # the export's --max-batch, if it was given
    default = hint if is_int(hint) and hint >= 1 else DEFAULT_ONNX_MAX_BATCH
    batch = max_batch if max_batch is not None else default
    digest = sha256_file(model_path)
    locations = _onnx_external_files(model_path)
    native = backend == "native"
    main = "model.onnx" if native else model_path.name
    files = {main: model_path}
    # the ONNX names its weight files by location; they must sit beside it under that name
    files.update({location: model_path.parent / location for location in locations})
    return _Classifier(
        info=info, backend="onnxruntime_onnx" if native else "python", max_batch=batch,
        preferred=(batch,) if batch > 1 else (), input_type="TYPE_FP32", output_type="TYPE_FP32", files=files,
        main_file=main, sha256=digest, parameters=_common_parameters(info, digest), metadata=info.to_dict(),
    )  # fmt: skip


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _clear_stale(version_dir: Path, keep: set[str], inputs: list[Path]) -> None:
    """Files left from the model this one replaces, never the model the repository is made from, should it sit there."""
    if not version_dir.is_dir():
        return
    for stale in version_dir.iterdir():
        if stale.is_file() and stale.name not in keep and not stale.name.startswith("."):
            if not any(same_file(stale, source) for source in inputs):
                stale.unlink()


def requirements_text() -> str:
    """What the python-backend models import: this package at this version, and the runtimes it drives."""
    return (
        "# The python-backend models of this repository import dacovid-export; install it into the Python that\n"
        "# Triton's python stub runs (docs/serving.md): NumPy 1.x only (the stub of Triton <= 2.51 is built on it).\n"
        f"dacovid-export=={__version__}\n"
        "numpy<2\n"
        "pillow\n"
        "onnx\n"
        "onnxruntime-gpu  # or onnxruntime\n"
        "openvino         # INT8 models on a CPU\n"
    )


def write_triton_repository(
    model_path: str | os.PathLike[str],
    repo_dir: str | os.PathLike[str],
    *,
    name: str = "dacovid",
    backend: str = "auto",
    max_batch: int | None = None,
    instances: int = 1,
    kind: str | None = None,
    max_queue_delay_us: int = 100,
    overwrite: bool = False,
) -> TritonRepository:
    """Write the served repository for ``model_path`` (an engine or an ONNX model); see the module docstring.

    ``backend``: ``"auto"``, ``"native"`` or ``"python"`` (the classifier). ``max_batch``:
    Triton's ``max_batch_size`` of every model; defaults to the engine's profile maximum
    (and may not exceed it), for ONNX to the export's ``suggested_max_batch`` or else
    :data:`DEFAULT_ONNX_MAX_BATCH`. ``instances``: instances of the classifier and of the
    preprocessing model (per GPU, or on the CPU). ``kind``: ``"gpu"`` or ``"cpu"``; default
    ``"gpu"`` for native models and engines, ``"cpu"`` for ONNX through the python backend.
    ``overwrite``: replace models of the same names; otherwise an existing one is an error.
    """
    model_path, repo_dir = Path(model_path), Path(repo_dir)
    _validate(name, max_batch, backend, kind)
    file_kind = artifact_kind(model_path)
    if file_kind == "checkpoint":
        raise UserInputError(
            f"{str(model_path)!r} is a checkpoint; Triton serves an ONNX model or a TensorRT engine: "
            "export one with 'dacovid-export onnx' (and 'dacovid-export trt')"
        )
    if not model_path.is_file():
        raise UserInputError(f"{file_kind} {str(model_path)!r} does not exist or is not a file")
    names = _ModelNames.of(name)
    _check_repository(model_path, repo_dir, names, overwrite)
    classifier, kind = _choose_classifier(model_path, file_kind, backend, kind, max_batch)
    batching = BatchingConfig(max_batch=classifier.max_batch, max_queue_delay_us=max_queue_delay_us,
                              instances=instances, kind=kind)  # fmt: skip
    configs = _model_configs(names, classifier, batching)
    _write_repository(repo_dir, names, classifier, model_path, overwrite, configs)
    return TritonRepository(
        repo=repo_dir, ensemble=name, models=names.all(), classifier_backend=classifier.backend, kind=kind,
        max_batch=classifier.max_batch,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _ModelNames:
    """The four models of one served repository: the ensemble and its three steps."""

    ensemble: str
    preprocess: str
    classifier: str
    postprocess: str

    @classmethod
    def of(cls, name: str) -> "_ModelNames":
        return cls(name, f"{name}_preprocess", f"{name}_classifier", f"{name}_postprocess")

    def all(self) -> tuple[str, str, str, str]:
        return (self.ensemble, self.preprocess, self.classifier, self.postprocess)


def _check_repository(model_path: Path, repo_dir: Path, names: _ModelNames, overwrite: bool) -> None:
    """Before any reading: the repository must be writable, no file of it the model itself, no model replaced unasked."""
    version_dir = repo_dir / names.classifier / "1"
    outputs = {"repository file": repo_dir / names.ensemble / "config.pbtxt", "repository model": version_dir / "model.plan",
               "repository ONNX": version_dir / "model.onnx"}  # fmt: skip
    if model_path.name not in ("model.plan", "model.onnx"):
        outputs["repository artifact"] = version_dir / model_path.name  # the python backend keeps the file's name
    check_outputs(inputs=[model_path], files=outputs, folders={"--repo": repo_dir})
    existing = [n for n in names.all() if (repo_dir / n / "config.pbtxt").exists()]
    if existing and not overwrite:
        raise UserInputError(
            f"{str(repo_dir / existing[0])!r} already holds a Triton model: choose another --name or pass --overwrite to replace it"
        )


def _choose_classifier(
    model_path: Path, file_kind: str, backend: str, kind: str | None, max_batch: int | None
) -> tuple[_Classifier, str]:
    """The classifier model for ``model_path`` and the instance kind it runs on; refuses what Triton would serve falsely."""
    if file_kind == "engine":
        classifier = _engine_classifier(model_path, backend, kind or "gpu", max_batch)
    else:
        classifier = _onnx_classifier(model_path, backend, max_batch)
    kind = kind or ("cpu" if classifier.backend == "python" and file_kind == "onnx" else "gpu")
    info = classifier.info
    if info.precision == "bf16" and (classifier.backend != "python" or kind != "cpu"):
        # Triton's onnxruntime_onnx would compute it in FP32, and a GPU instance has no OpenVINO: both are false claims
        raise UserInputError(
            f"{str(model_path)!r} is marked for BF16, which only OpenVINO on a CPU runs: serve it with --backend python "
            "(or auto) and --kind cpu"
        )
    if any("\n" in c or "\r" in c for c in info.class_names):
        raise UserInputError(f"class names {list(info.class_names)!r} contain line breaks; labels.txt holds one name per line")
    return classifier, kind


def _model_configs(names: _ModelNames, classifier: _Classifier, batching: BatchingConfig) -> dict[str, Any]:
    """Each model's ``ModelConfig``, in the order they are written (the ensemble's last)."""
    info = classifier.info
    # decoding is CPU work wherever the classifier runs
    cpu_batching = dataclasses.replace(batching, kind="cpu")
    parameters = dict(classifier.parameters)
    size, classes = info.image_size, info.num_classes
    preprocess_cfg = python_config(
        name=names.preprocess, batching=cpu_batching,
        inputs=[("image", "TYPE_STRING", (1,))], outputs=[(info.input_name, "TYPE_FP32", (3, size, size))],
        parameters={"dacovid_preprocessing": parameters["dacovid_preprocessing"], "dacovid_output_name": info.input_name},
    )  # fmt: skip
    classifier_cfg = classifier_config(
        name=names.classifier, backend=classifier.backend, batching=batching, input_name=info.input_name,
        output_name=info.output_name, image_size=size, num_classes=classes, input_type=classifier.input_type,
        output_type=classifier.output_type, preferred_batch_sizes=classifier.preferred,
        default_model_filename=None if classifier.backend == "python" else classifier.main_file,
        label_filename="labels.txt",
        parameters={**parameters, "dacovid_model_file": classifier.main_file, "dacovid_input_name": info.input_name,
                    "dacovid_output_name": info.output_name},
    )  # fmt: skip
    postprocess_cfg = python_config(
        name=names.postprocess, batching=dataclasses.replace(cpu_batching, instances=1),
        inputs=[("raw_logits", classifier.output_type, (classes,))],
        outputs=[("probabilities", "TYPE_FP32", (classes,)), ("class_name", "TYPE_STRING", (1,)),
                 ("logits", classifier.output_type, (classes,))],
        parameters={"dacovid_class_names": parameters["dacovid_class_names"]},
    )  # fmt: skip
    ensemble_cfg = ensemble_config(
        name=names.ensemble, max_batch=classifier.max_batch,
        inputs=[("image", "TYPE_STRING", (1,))],
        outputs=[("probabilities", "TYPE_FP32", (classes,)), ("class_name", "TYPE_STRING", (1,)),
                 ("logits", classifier.output_type, (classes,))],
        steps=[
            (names.preprocess, {"image": "image"}, {info.input_name: "preprocessed"}),
            # the classifier's logits are an internal tensor that only postprocess reads; postprocess hands them on as
            # the ensemble's "logits". Were they an ensemble output AND a step's input, Triton would not run the
            # classifier for a client that asks for probabilities or class_name without logits ("unexpected deadlock")
            (names.classifier, {info.input_name: "preprocessed"}, {info.output_name: "raw_logits"}),
            (names.postprocess, {"raw_logits": "raw_logits"},
             {"probabilities": "probabilities", "class_name": "class_name", "logits": "logits"}),
        ],
        parameters={**parameters, "dacovid_classifier_backend": classifier.backend, "dacovid_kind": batching.kind},
    )  # fmt: skip
    return {names.preprocess: preprocess_cfg, names.classifier: classifier_cfg, names.postprocess: postprocess_cfg,
            names.ensemble: ensemble_cfg}  # fmt: skip


def _write_repository(
    repo_dir: Path, names: _ModelNames, classifier: _Classifier, model_path: Path, overwrite: bool,
    configs: Mapping[str, Any],
) -> None:
    """The classifier's files, the python models, labels and metadata, then the configs."""
    classifier_dir = repo_dir / names.classifier
    for target_name, source in classifier.files.items():
        _copy_atomic(source, classifier_dir / "1" / target_name)
    keep = {Path(n).parts[0] for n in classifier.files}
    if classifier.backend == "python":
        atomic_write_text(classifier_dir / "1" / "model.py", model_file_source("ClassifierModel"))
        keep.add("model.py")
    if overwrite:
        _clear_stale(classifier_dir / "1", keep, [p for p in companion_files(model_path) if p.exists()])
    atomic_write_text(classifier_dir / "labels.txt", "".join(f"{c}\n" for c in classifier.info.class_names))
    atomic_write_json(classifier_dir / "dacovid_metadata.json", dict(classifier.metadata))
    for model, class_name in ((names.preprocess, "PreprocessModel"), (names.postprocess, "PostprocessModel")):
        atomic_write_text(repo_dir / model / "1" / "model.py", model_file_source(class_name))
    (repo_dir / names.ensemble / "1").mkdir(parents=True, exist_ok=True)
    atomic_write_text(repo_dir / REQUIREMENTS_FILE, requirements_text())
    # configs last, the ensemble's after its steps': a polling server sees complete models only
    for model, config in configs.items():
        atomic_write_text(repo_dir / model / "config.pbtxt", config_text(config))
