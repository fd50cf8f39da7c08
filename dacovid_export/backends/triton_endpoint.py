"""A client of a served Triton repository: encoded images in, the endpoint's answers and statistics out.

``check --triton`` and ``dacovid-bench --triton`` judge and time a live endpoint
through this one class. The endpoint describes itself: the ensemble's config
parameters carry the artifact's classes, preprocessing, precision and source
checksum, so a served model is compared like any artifact file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlparse

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.core.deps import require
from dacovid_export.core.errors import MissingDependencyError, UserInputError, one_line
from dacovid_export.data.preprocessing import Preprocessing

__all__ = ["EndpointAnswer", "ModelStatistics", "TritonEndpoint", "parse_endpoint_url", "read_encoded"]

_PROTOCOLS = ("http", "grpc")


def parse_endpoint_url(url: str) -> tuple[str, str, str | None]:
    """``http://host:port[/model]`` / ``grpc://host:port[/model]`` (``host:port`` is HTTP) -> ``(protocol, "host:port", model)``."""
    text = str(url).strip()
    parsed = urlparse(text if "://" in text else f"http://{text}")
    model = parsed.path.strip("/") or None
    if parsed.scheme not in _PROTOCOLS or not parsed.hostname or (model is not None and "/" in model):
        raise UserInputError(
            f"Triton URL {url!r}: use http://HOST:PORT or grpc://HOST:PORT, optionally /MODEL (e.g. http://127.0.0.1:8000)"
        )
    try:
        port = parsed.port or (8000 if parsed.scheme == "http" else 8001)
    except ValueError as exc:
        raise UserInputError(f"Triton URL {url!r}: {exc}") from exc
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return parsed.scheme, f"{host}:{port}", model


def read_encoded(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes, as a client sends them; a missing file is a :class:`UserInputError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserInputError(f"image {str(path)!r} cannot be read: {exc.strerror or exc}") from exc


@dataclasses.dataclass(frozen=True)
class EndpointAnswer:
    """The ensemble's outputs for a batch of images, row by row."""

    logits: np.ndarray  # float32 n x K
    probabilities: np.ndarray  # float32 n x K
    class_names: tuple[str, ...]  # n


@dataclasses.dataclass(frozen=True)
class ModelStatistics:
    """Triton's own cumulative counters of one model: what serving cost, split by stage (nanoseconds)."""

    model: str
    inference_count: int  # images
    execution_count: int  # executions (batches after dynamic batching)
    success_count: int  # requests
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int

    def minus(self, earlier: "ModelStatistics") -> "ModelStatistics":
        fields = [f.name for f in dataclasses.fields(self) if f.name != "model"]
        return ModelStatistics(self.model, *(getattr(self, f) - getattr(earlier, f) for f in fields))

    def per_request_ms(self) -> dict[str, float | None]:
        """Mean milliseconds per request in each stage (None without requests)."""
        n = self.success_count
        return {
            stage: (getattr(self, f"{stage}_ns") / n / 1e6 if n else None)
            for stage in ("queue", "compute_input", "compute_infer", "compute_output")
        }

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["per_request_ms"] = self.per_request_ms()
        out["mean_batch"] = self.inference_count / self.execution_count if self.execution_count else None
        return out


class TritonEndpoint:
    """The ``model`` ensemble of the Triton server at ``url`` (HTTP or gRPC); a context manager.

    A model named in the URL (``http://host:port/dacovid8``) wins over ``model``.
    """

    def __init__(self, url: str, *, model: str = "dacovid", timeout_s: float = 120.0) -> None:
        self.protocol, self.address, named = parse_endpoint_url(url)
        self.url = f"{self.protocol}://{self.address}"
        self.model = named or model
        self._module = self._client_module(self.protocol)
        try:
            if self.protocol == "http":
                self._client = self._module.InferenceServerClient(
                    self.address, connection_timeout=timeout_s, network_timeout=timeout_s
                )
            else:
                self._client = self._module.InferenceServerClient(self.address)
        except Exception as exc:  # noqa: BLE001 -- tritonclient raises plain Exceptions for bad addresses
            raise UserInputError(f"Triton at {self.url}: {one_line(str(exc))}") from exc
        self._timeout_s = timeout_s
        self._config: Any = None
        self._info: ArtifactInfo | None = None

    @staticmethod
    def _client_module(protocol: str) -> ModuleType:
        try:
            return require(f"tritonclient.{protocol}", f"talk to a Triton server over {protocol.upper()}")
        except RuntimeError as exc:  # tritonclient installed without this protocol's extra
            raise MissingDependencyError(
                f"tritonclient has no {protocol.upper()} support here: pip install 'dacovid-export[serve]' ({exc})"
            ) from exc

    # ------------------------------------------------------------ description

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        """``request()``, the client's errors as one :class:`UserInputError` naming ``what`` failed."""
        try:
            return request()
        except self._errors() as exc:
            raise UserInputError(f"Triton at {self.url}: {what} failed: {one_line(_message(exc))}") from exc

    def _errors(self) -> tuple[type[BaseException], ...]:
        from tritonclient.utils import InferenceServerException

        return (InferenceServerException, ConnectionError, OSError, TimeoutError)

    def config(self) -> Any:
        """The ensemble's ``ModelConfig`` as the server reports it (JSON over HTTP, protobuf over gRPC)."""
        if self._config is None:
            if not self._call("the readiness check", lambda: self._client.is_model_ready(self.model)):
                raise UserInputError(f"Triton at {self.url}: model {self.model!r} is not ready (is it in the repository?)")
            if self.protocol == "http":
                self._config = self._call("reading the model configuration", lambda: self._client.get_model_config(self.model))
            else:
                reply = self._call(
                    "reading the model configuration", lambda: self._client.get_model_config(self.model, as_json=True)
                )
                self._config = reply["config"]
        return self._config

    def parameters(self) -> dict[str, str]:
        params = self.config().get("parameters", {})
        return {key: value.get("string_value", "") for key, value in params.items()}

    def info(self) -> ArtifactInfo:
        """The served artifact's self-description, from the ensemble's parameters (read once)."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self) -> ArtifactInfo:
        params = self.parameters()
        missing = [k for k in ("dacovid_class_names", "dacovid_preprocessing", "dacovid_precision") if k not in params]
        if missing:
            raise UserInputError(
                f"Triton at {self.url}: model {self.model!r} does not describe itself ({', '.join(missing)} missing): "
                "serve a repository written by 'dacovid-export triton'"
            )
        try:
            names = tuple(json.loads(params["dacovid_class_names"]))
            preprocessing = Preprocessing.from_dict(json.loads(params["dacovid_preprocessing"]))
        except (ValueError, TypeError) as exc:
            raise UserInputError(f"Triton at {self.url}: model {self.model!r} has unreadable metadata: {exc}") from exc
        max_batch = int(self.config().get("max_batch_size", 0)) or None
        return ArtifactInfo(
            path=f"{self.url}/{self.model}", kind="endpoint", class_names=names,  # type: ignore[arg-type]
            preprocessing=preprocessing, precision=params["dacovid_precision"],
            source_sha256=params.get("dacovid_source_sha256", ""),
            versions={"dacovid-export": params.get("dacovid_export_version", "")}, max_batch=max_batch,
            extra={"model_sha256": params.get("dacovid_model_sha256", ""),
                   "classifier_backend": params.get("dacovid_classifier_backend", ""),
                   "kind": params.get("dacovid_kind", "")},
        )  # fmt: skip

    def describe(self) -> str:
        params = self.parameters()
        return (
            f"triton/{self.protocol} {self.address} model {self.model} "
            f"({params.get('dacovid_classifier_backend', '?')} classifier, {params.get('dacovid_kind', '?')})"
        )

    # -------------------------------------------------------------- inference

    def classify(self, images: Sequence[bytes]) -> EndpointAnswer:
        """One request of ``len(images)`` encoded images; a bad image fails the request with the server's reason."""
        if not images:
            raise UserInputError("no images to send")
        data = np.empty((len(images), 1), dtype=object)
        for i, image in enumerate(images):
            data[i, 0] = image
        tensor = self._module.InferInput("image", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        outputs = [self._module.InferRequestedOutput(n) for n in ("logits", "probabilities", "class_name")]
        # the two clients name their timeout differently (HTTP: whole seconds)
        if self.protocol == "http":
            reply = self._call(
                "inference", lambda: self._client.infer(self.model, [tensor], outputs=outputs, timeout=int(self._timeout_s))
            )
        else:
            reply = self._call(
                "inference", lambda: self._client.infer(self.model, [tensor], outputs=outputs, client_timeout=self._timeout_s)
            )
        names = reply.as_numpy("class_name").reshape(-1)
        return EndpointAnswer(
            logits=np.asarray(reply.as_numpy("logits"), dtype=np.float32),
            probabilities=np.asarray(reply.as_numpy("probabilities"), dtype=np.float32),
            class_names=tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names),
        )

    def logits_for_files(self, files: Sequence[str | os.PathLike[str]], batch_size: int | None = None) -> np.ndarray:
        """float32 ``n x K`` logits for image files, sent encoded, ``batch_size`` per request (default: the model's max)."""
        size = batch_size or int(self.config().get("max_batch_size", 0)) or 1
        parts = [
            self.classify([read_encoded(f) for f in files[start : start + size]]).logits
            for start in range(0, len(files), size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    # ------------------------------------------------------------- statistics

    def statistics(self, models: Sequence[str] | None = None) -> dict[str, ModelStatistics]:
        """Triton's cumulative statistics for ``models`` (default: the ensemble and its steps)."""
        names = list(models) if models is not None else [self.model, *self.steps()]
        out = {}
        for name in names:
            if self.protocol == "http":
                reply = self._call("reading statistics", lambda: self._client.get_inference_statistics(name))
            else:
                reply = self._call("reading statistics", lambda: self._client.get_inference_statistics(name, as_json=True))
            for entry in reply.get("model_stats", []):
                out[name] = _model_statistics(name, entry)
        return out

    def steps(self) -> list[str]:
        scheduling = self.config().get("ensemble_scheduling", {})
        return [step["model_name"] for step in scheduling.get("step", [])]

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "TritonEndpoint":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _message(exc: BaseException) -> str:
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return str(text or type(exc).__name__)


def _ns(stats: Mapping[str, Any], key: str) -> int:
    return int((stats.get(key) or {}).get("ns", 0))


def _model_statistics(name: str, entry: Mapping[str, Any]) -> ModelStatistics:
    stats = entry.get("inference_stats", {})
    return ModelStatistics(
        model=name,
        inference_count=int(entry.get("inference_count", 0)),
        execution_count=int(entry.get("execution_count", 0)),
        success_count=int((stats.get("success") or {}).get("count", 0)),
        queue_ns=_ns(stats, "queue"),
        compute_input_ns=_ns(stats, "compute_input"),
        compute_infer_ns=_ns(stats, "compute_infer"),
        compute_output_ns=_ns(stats, "compute_output"),
    )
