"""The python-backend models of a served repository: preprocessing, the classifier, postprocessing.

Triton's python backend loads ``REPO/MODEL/1/model.py``; the repository writer makes
that file one import of a class here, so the served code is this package's code
(the same :class:`~dacovid_export.data.preprocessing.Preprocessing`, the same
backends as :class:`~dacovid_export.serve.predictor.Predictor`), never a copy.
``triton_python_backend_utils`` exists only inside Triton's python stub: it is
imported when a model starts.

Every model answers request by request: an image that cannot be used fails its own
request (the reason, one line) and the other requests of the batch are answered.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dacovid_export.backends.base import Backend, run_any_batch
from dacovid_export.core.errors import DacovidError, UserInputError, one_line
from dacovid_export.core.fileio import verify_sha256
from dacovid_export.core.log import get_logger
from dacovid_export.data.agreement import softmax
from dacovid_export.data.preprocessing import Preprocessing, preprocess

__all__ = ["PreprocessModel", "ClassifierModel", "PostprocessModel", "model_file_source", "MAX_REQUEST_ENV",
           "DEFAULT_MAX_REQUEST_MB"]

# how `serve` hands its --max-request-mb to the preprocessing stub (the stub inherits tritonserver's environment)
MAX_REQUEST_ENV = "DACOVID_MAX_REQUEST_BYTES"
# a 2048 x 2048 16-bit DICOM is 8 MiB of pixels plus its header: twice that, for one request
DEFAULT_MAX_REQUEST_MB = 16


def _pb_utils() -> ModuleType:
    # by name: the module exists only inside Triton's python stub, so no checker or wheel knows it
    return importlib.import_module("triton_python_backend_utils")


def _parameters(args: Mapping[str, Any]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def _error(pb: ModuleType, message: str, *, client: bool = False) -> Any:
    """A failed response; ``client``: the request's own fault (HTTP 400 / gRPC INVALID_ARGUMENT), else the server's.

    Load balancers and retry policies retry a 500 / INTERNAL: a bad image must not look like one.
    ``TritonError``'s code argument exists in the stubs of Triton 23.x and later (the serving
    environment's); an older stub gets the message alone.
    """
    code = getattr(pb.TritonError, "INVALID_ARG", None) if client else None
    error = pb.TritonError(one_line(message)) if code is None else pb.TritonError(one_line(message), code)
    return pb.InferenceResponse(output_tensors=[], error=error)


def model_file_source(class_name: str) -> str:
    """The ``model.py`` Triton loads for one of this module's classes."""
    if class_name not in ("PreprocessModel", "ClassifierModel", "PostprocessModel"):
        raise ValueError(f"no python-backend model {class_name!r} in {__name__}")
    return (
        f'"""Triton python-backend model: {class_name} of dacovid-export (the served code is the package\'s own)."""\n\n'
        f"from {__name__} import {class_name} as TritonPythonModel  # noqa: F401\n"
    )


class PreprocessModel:
    """``image`` (encoded bytes, ``[b, 1]``) -> ``input`` (float32 ``[b, 3, S, S]``) with the artifact's preprocessing."""

    def initialize(self, args: Mapping[str, Any]) -> None:
        params = _parameters(args)
        self._spec = Preprocessing.from_dict(json.loads(params["dacovid_preprocessing"]))
        self._output = params.get("dacovid_output_name", "input")
        value = os.environ.get(MAX_REQUEST_ENV, "")
        self._max_bytes = int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_REQUEST_MB << 20

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        pb = _pb_utils()
        responses = []
        for request in requests:
            items = pb.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
            size = sum(len(_raw(item)) for item in items)
            if size > self._max_bytes:  # refused before any image is decoded
                responses.append(_error(
                    pb, f"request of {size / 2**20:.1f} MB ({len(items)} image(s)) is over this server's limit of "
                        f"{self._max_bytes / 2**20:.0f} MB (serve --max-request-mb): send fewer or smaller images",
                    client=True,
                ))  # fmt: skip
                continue
            planes, failed = [], None
            for i, item in enumerate(items):
                where = f"image at index {i} of the batch of {len(items)}"
                try:
                    planes.append(preprocess(_encoded(item, i, len(items)), self._spec))
                except UserInputError as exc:  # the client's bytes: its fault, with which image and why
                    failed = _error(pb, f"{where}: {exc}", client=True)
                except DacovidError as exc:  # a decoder this environment lacks (DICOM): the server's
                    failed = _error(pb, f"{where}: {exc}")
                except MemoryError:
                    failed = _error(pb, f"{where} is unreadable: not enough memory to decode it", client=True)
                if failed is not None:
                    break
            responses.append(failed or pb.InferenceResponse(output_tensors=[pb.Tensor(self._output, np.stack(planes))]))
        return responses

    def finalize(self) -> None:
        pass


def _raw(item: Any) -> Any:
    """One BYTES element as Python sees it (it can arrive as a 0-d array); its ``len`` is its size."""
    item = item.item() if isinstance(item, np.ndarray) else item
    return item if isinstance(item, (bytes, str)) else b""


def _encoded(item: Any, index: int, count: int) -> bytes:
    if isinstance(item, np.ndarray):  # a BYTES element can arrive as a 0-d array
        item = item.item()
    if isinstance(item, str):
        item = item.encode("latin-1")
    if not isinstance(item, bytes):
        raise UserInputError(f"image {index + 1} of {count} is a {type(item).__name__}, not the bytes of an encoded file")
    return item


class ClassifierModel:
    """``input`` -> ``logits`` with the package's own backend for the artifact in this model's version folder.

    At load the artifact must still be the bytes the repository recorded
    (``dacovid_model_sha256``); a tampered or damaged file stops the load with the reason.
    """

    _backend: Backend | None = None

    def initialize(self, args: Mapping[str, Any]) -> None:
        from dacovid_export.backends.registry import open_backend

        params = _parameters(args)
        folder = Path(args["model_repository"]) / str(args["model_version"])
        path = folder / params["dacovid_model_file"]
        verify_sha256(path, params["dacovid_model_sha256"], recorded_in="the repository's config.pbtxt")
        gpu = str(args.get("model_instance_kind", "CPU")).upper() == "GPU"
        device = f"cuda:{args.get('model_instance_device_id', 0)}" if gpu else "cpu"
        # the repository records no runtime: "auto" picks by file and device, as Predictor does
        self._backend = open_backend(path, backend="auto", device=device)
        self._input = params.get("dacovid_input_name", "input")
        self._output = params.get("dacovid_output_name", "logits")
        # the server log (the stub process shares tritonserver's stdout and stderr) shows which runtime serves
        get_logger("serve").info(f"dacovid classifier: {self._backend.describe()} (pid {os.getpid()})")

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        pb = _pb_utils()
        if self._backend is None:
            return [_error(pb, "the classifier is not loaded (finalized or failed to start)") for _ in requests]
        batches = [pb.get_input_tensor_by_name(request, self._input).as_numpy() for request in requests]
        try:
            # n x 3 x S x S: the requests that dynamic batching merged, run as one batch
            logits = run_any_batch(self._backend, np.concatenate(batches).astype(np.float32, copy=False))
        except DacovidError as exc:  # NaN/inf logits, a wrong shape: every request of this batch gets the reason
            return [_error(pb, str(exc)) for _ in requests]
        responses, start = [], 0
        for batch in batches:
            part = logits[start : start + len(batch)]
            start += len(batch)
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(self._output, part)]))
        return responses

    def finalize(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class PostprocessModel:
    """``raw_logits`` -> ``probabilities`` (softmax, float32), ``class_name`` (bytes) and ``logits`` (as given), per row.

    The input's name and whether ``logits`` is an output come from the model's own config, so a
    repository written before ``raw_logits`` (input ``logits``, two outputs) is still served.
    """

    def initialize(self, args: Mapping[str, Any]) -> None:
        params = _parameters(args)
        config = json.loads(args["model_config"])
        self._names = np.array([name.encode("utf-8") for name in json.loads(params["dacovid_class_names"])], dtype=object)
        self._input = str(config.get("input", [{}])[0].get("name", "logits"))
        self._pass_logits = any(o.get("name") == "logits" for o in config.get("output", []))

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        pb = _pb_utils()
        responses = []
        for request in requests:
            raw = pb.get_input_tensor_by_name(request, self._input).as_numpy()  # b x K, the classifier's dtype
            probabilities = softmax(raw.astype(np.float32)).astype(np.float32)
            names = self._names[probabilities.argmax(axis=1)].reshape(-1, 1)  # b x 1
            outputs = [pb.Tensor("probabilities", probabilities), pb.Tensor("class_name", names)]
            if self._pass_logits:
                outputs.append(pb.Tensor("logits", raw))
            responses.append(pb.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self) -> None:
        pass
