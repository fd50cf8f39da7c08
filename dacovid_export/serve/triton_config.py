"""Triton ``config.pbtxt`` files, built as Triton's own ``ModelConfig`` protobuf, never as hand-written text.

The schema is tritonclient's generated ``model_config_pb2`` (``[serve]`` extra), so
every file written here is one that Triton's parser reads: a misspelled field or a
wrong enum fails when the message is built, not when a server loads it.

The served repository (``docs/serving.md``) holds four models; the functions here
make one config each::

    NAME               ensemble        image (bytes [1]) -> probabilities [K], class_name (bytes [1]), logits [K]
    NAME_preprocess    python          image -> input [3, S, S]  (the artifact's own Preprocessing)
    NAME_classifier    python, or native onnxruntime_onnx / tensorrt_plan: input -> logits [K]
    NAME_postprocess   python          logits -> probabilities, class_name
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from dacovid_export.core.deps import require
from dacovid_export.core.errors import UserInputError, one_line
from dacovid_export.core.limits import MAX_QUEUE_DELAY_US, MAX_TRITON_INSTANCES, check_batch_size
from dacovid_export.core.validate import check_int

__all__ = [
    "TRITON_KINDS",
    "BatchingConfig",
    "model_config_pb2",
    "classifier_config",
    "python_config",
    "ensemble_config",
    "config_text",
    "read_config",
]

TRITON_KINDS = ("gpu", "cpu")


def model_config_pb2() -> ModuleType:
    """tritonclient's generated ``model_config_pb2`` (Triton's ``ModelConfig`` schema)."""
    return require("tritonclient.grpc.model_config_pb2", "write and read Triton model configurations")


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """What every batching model of the repository shares: batch bound, queue delay, instances and where they run."""

    max_batch: int
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "cpu"

    def __post_init__(self) -> None:
        check_batch_size(self.max_batch, "max_batch")
        check_int("instances", self.instances, 1, MAX_TRITON_INSTANCES)
        if self.kind not in TRITON_KINDS:
            raise UserInputError(f"kind={self.kind!r}: use 'gpu' or 'cpu'")
        delay = self.max_queue_delay_us
        check_int("max_queue_delay_us", delay, 0, MAX_QUEUE_DELAY_US, why=f" ({MAX_QUEUE_DELAY_US / 1e6:g} s)")


def _new(pb2: ModuleType, name: str, batching: BatchingConfig, parameters: Mapping[str, str]) -> Any:
    config = pb2.ModelConfig(name=name, max_batch_size=batching.max_batch)
    for key, value in parameters.items():
        config.parameters[key].string_value = str(value)
    return config


def _batching(pb2: ModuleType, config: Any, batching: BatchingConfig, preferred: Sequence[int]) -> None:
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(sorted({int(b) for b in preferred if 1 < b <= batching.max_batch}))
    group = config.instance_group.add()
    group.count = batching.instances
    group.kind = pb2.ModelInstanceGroup.KIND_GPU if batching.kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU


def _tensor(collection: Any, name: str, data_type: str, dims: Sequence[int], pb2: ModuleType) -> Any:
    tensor = collection.add()
    tensor.name = name
    tensor.data_type = pb2.DataType.Value(data_type)
    tensor.dims.extend(int(d) for d in dims)
    return tensor


def classifier_config(
    *,
    name: str,
    backend: str,
    batching: BatchingConfig,
    input_name: str,
    output_name: str,
    image_size: int,
    num_classes: int,
    input_type: str = "TYPE_FP32",
    output_type: str = "TYPE_FP32",
    preferred_batch_sizes: Sequence[int] = (),
    default_model_filename: str | None = None,
    label_filename: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> Any:
    """``input [3, S, S] -> logits [K]``; ``backend``: ``"python"``, ``"onnxruntime_onnx"`` or ``"tensorrt_plan"``."""
    if backend not in ("python", "onnxruntime_onnx", "tensorrt_plan"):
        raise UserInputError(f"classifier backend {backend!r}: use 'python', 'onnxruntime_onnx' or 'tensorrt_plan'")
    config = python_config(
        name=name, batching=batching, inputs=[(input_name, input_type, (3, image_size, image_size))],
        outputs=[(output_name, output_type, (num_classes,))], parameters=parameters,
        preferred_batch_sizes=preferred_batch_sizes,
    )  # fmt: skip
    if backend != "python":  # a native model names its platform, not a backend
        config.ClearField("backend")
        config.platform = backend
    if default_model_filename:
        config.default_model_filename = default_model_filename
    if label_filename:
        config.output[0].label_filename = label_filename
    return config


def python_config(
    *,
    name: str,
    batching: BatchingConfig,
    inputs: Sequence[tuple[str, str, Sequence[int]]],
    outputs: Sequence[tuple[str, str, Sequence[int]]],
    parameters: Mapping[str, str] | None = None,
    preferred_batch_sizes: Sequence[int] = (),
) -> Any:
    """A python-backend model; ``inputs``/``outputs``: ``(name, TYPE_..., dims without the batch)``."""
    pb2 = model_config_pb2()
    config = _new(pb2, name, batching, parameters or {})
    config.backend = "python"
    for tensor_name, data_type, dims in inputs:
        _tensor(config.input, tensor_name, data_type, dims, pb2)
    for tensor_name, data_type, dims in outputs:
        _tensor(config.output, tensor_name, data_type, dims, pb2)
    _batching(pb2, config, batching, preferred_batch_sizes)
    return config


def ensemble_config(
    *,
    name: str,
    max_batch: int,
    inputs: Sequence[tuple[str, str, Sequence[int]]],
    outputs: Sequence[tuple[str, str, Sequence[int]]],
    steps: Sequence[tuple[str, Mapping[str, str], Mapping[str, str]]],
    parameters: Mapping[str, str] | None = None,
) -> Any:
    """An ensemble; ``steps``: ``(model, {model input: ensemble tensor}, {model output: ensemble tensor})``."""
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = str(value)
    for tensor_name, data_type, dims in inputs:
        _tensor(config.input, tensor_name, data_type, dims, pb2)
    for tensor_name, data_type, dims in outputs:
        _tensor(config.output, tensor_name, data_type, dims, pb2)
    for model, input_map, output_map in steps:
        step = config.ensemble_scheduling.step.add()
        step.model_name = model
        step.model_version = -1
        step.input_map.update(input_map)
        step.output_map.update(output_map)
    return config


def config_text(config: Any) -> str:
    """The protobuf text format Triton reads from ``config.pbtxt``."""
    from google.protobuf import text_format

    return text_format.MessageToString(config, as_utf8=True)


def read_config(path: str | Path) -> Any:
    """Parse a ``config.pbtxt`` into a ``ModelConfig``; a file Triton would not read is a :class:`UserInputError`."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    path = Path(path)
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise UserInputError(f"{str(path)!r} is not a Triton model configuration: {one_line(str(exc))}") from exc
