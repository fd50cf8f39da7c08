"""The pipeline's "Served" step: its FP32 and INT8 ONNX models in a Triton repository, served, judged and timed.

Runs when a serving environment is given (``--serve-env`` or ``$DACOVID_SERVE_ENV``,
made by ``dacovid-export serve-env``) and tritonclient is installed (``[serve]``);
otherwise the step is skipped with the reason. The server binds 127.0.0.1 on free
ports and is stopped before the step returns, whatever happens.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from dacovid_export.bench.records import BenchResult
from dacovid_export.bench.run import run_benchmark
from dacovid_export.core.errors import DacovidError
from dacovid_export.parity.report import ParityReport
from dacovid_export.parity.run import run_parity
from dacovid_export.pipeline.config import PARITY_BATCH, PipelineConfig
from dacovid_export.pipeline.outcomes import FailedStep, SkippedStep
from dacovid_export.serve.serve_env import SERVE_ENV_VAR
from dacovid_export.serve.server import ServerConfig, TritonServer
from dacovid_export.serve.triton import write_triton_repository

__all__ = ["SERVED_PRECISIONS", "ServedOutcome", "serve_models"]

SERVED_PRECISIONS = ("fp32", "int8")
# served levels of the pipeline: one client, and as many as the dynamic batcher can merge at batch 4
_CONCURRENCY = (1, 4)


@dataclasses.dataclass(frozen=True)
class ServedOutcome:
    """What the served step measured, or why it did not run."""

    repo: Path | None = None
    parity: ParityReport | None = None
    bench: BenchResult | None = None
    skipped: tuple[SkippedStep, ...] = ()
    failed: tuple[FailedStep, ...] = ()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_models(
    checkpoint: Path, onnx_paths: Mapping[str, Path], images: Path | None, config: PipelineConfig
) -> ServedOutcome:
    """Serve the FP32 and INT8 ONNX models; parity of the live endpoint against the checkpoint, and its latency."""
    env = config.serve_env or (Path(os.environ[SERVE_ENV_VAR]) if os.environ.get(SERVE_ENV_VAR) else None)
    if env is None:
        return ServedOutcome(skipped=(SkippedStep("served", "no serving environment: make one with 'dacovid-export "
                                                  "serve-env DIR' and pass --serve-env DIR"),))  # fmt: skip
    if importlib.util.find_spec("tritonclient") is None:
        return ServedOutcome(skipped=(SkippedStep("served", "tritonclient is not installed: pip install 'dacovid-export[serve]'"),))
    if images is None:
        return ServedOutcome(skipped=(SkippedStep("served", "no image files to send (synthetic tensors only)"),))
    served = {p: onnx_paths[p] for p in SERVED_PRECISIONS if p in onnx_paths}
    repo = config.out / "triton_repo"
    names = {p: "dacovid" if p == "fp32" else f"dacovid_{p}" for p in served}
    try:
        for precision, path in served.items():
            write_triton_repository(path, repo, name=names[precision], overwrite=True)
        http_port = _free_port()
        grpc_port = _free_port()
        while grpc_port == http_port:
            grpc_port = _free_port()
        server_config = ServerConfig(repo=repo, env=env, http_port=http_port, grpc_port=grpc_port)
        with TritonServer(server_config):
            urls = [f"{server_config.http_url}/{names[p]}" for p in served]
            parity = run_parity(checkpoint, [], images=images, batch_size=PARITY_BATCH, seed=config.seed,
                                device=config.device, progress=config.progress, endpoints=urls,
                                training_data=config.training_data)  # fmt: skip
            bench_config = dataclasses.replace(config.bench, triton=tuple(urls), concurrency=_CONCURRENCY)
            bench = run_benchmark([str(p) for p in served.values()], bench_config)
    except DacovidError as exc:
        return ServedOutcome(repo=repo, failed=(FailedStep("served", str(exc), type(exc).__name__),))
    return ServedOutcome(repo=repo, parity=parity, bench=bench)
