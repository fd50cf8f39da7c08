"""The C++ runtime (``cpp/``, its ``dacovid_infer`` CLI) judged and timed like any artifact: files in, its answers out.

``check --cpp`` and ``dacovid-bench --cpp`` talk to the compiled program through this
one class, as ``check --triton`` talks to an endpoint through
:class:`~dacovid_export.backends.triton_endpoint.TritonEndpoint`. The program
describes the artifact itself (``dacovid_infer MODEL --info``: what the C++ side
read from the artifact's own metadata), decodes and preprocesses the image files
itself and prints every image's logits as JSON, so what is compared is what a C++
service would compute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo, ArtifactKind
from dacovid_export.core.errors import UserInputError, one_line
from dacovid_export.data.preprocessing import Preprocessing

__all__ = ["CppAnswer", "CppRuntime"]

# exit codes of dacovid_infer, as the Python CLI's
_BAD_INPUT = 2


@dataclasses.dataclass(frozen=True)
class CppAnswer:
    """The C++ runtime's outputs for image files, row by row."""

    logits: np.ndarray  # float32 n x K
    probabilities: np.ndarray  # float64 n x K
    class_names: tuple[str, ...]  # n


class CppRuntime:
    """``binary`` (a built ``dacovid_infer``) running ``model``; ``timeout_s`` bounds every call."""

    def __init__(self, binary: str | os.PathLike[str], model: str | os.PathLike[str], *, timeout_s: float = 1800.0) -> None:
        self.binary = Path(binary)
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise UserInputError(
                f"--cpp {str(binary)!r} is not an executable file: give the dacovid_infer program built from cpp/ (README, C++ runtime)"
            )
        self.model = str(model)
        self._timeout_s = timeout_s
        self._info: ArtifactInfo | None = None
        self._runtime = ""

    def _run(self, args: Sequence[str], what: str) -> str:
        try:
            proc = subprocess.run(
                [str(self.binary), self.model, *args], capture_output=True, text=True, timeout=self._timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserInputError(f"{self.binary}: {what} failed: {one_line(str(exc))}") from exc
        if proc.returncode != 0:
            message = next((line for line in proc.stderr.splitlines() if line.startswith("error:")), proc.stderr.strip())
            text = one_line(message.removeprefix("error:").strip() or f"exit code {proc.returncode}")
            if proc.returncode == _BAD_INPUT:
                raise UserInputError(f"C++ runtime: {text}")
            raise RuntimeError(f"C++ runtime ({self.binary}) {what} failed: {text}")
        return proc.stdout

    # ------------------------------------------------------------ description

    def info(self) -> ArtifactInfo:
        """What the C++ runtime read from the artifact (read once)."""
        if self._info is None:
            raw = self._run(["--info"], "reading the model")
            try:
                data: dict[str, Any] = json.loads(raw)
                kind: ArtifactKind = "onnx" if data["kind"] == "onnx" else "engine"
                self._info = ArtifactInfo(
                    path=self.model, kind=kind,
                    class_names=tuple(str(c) for c in data["class_names"]),
                    preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                    precision=data["precision"], source_sha256=str(data["source_sha256"]),
                    max_batch=data.get("max_batch"), extra={"runtime": data["runtime"], "cpp_kind": data["kind"]},
                )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                raise UserInputError(f"{self.binary} --info gave an unreadable description: {exc}") from exc
            self._runtime = str(data["runtime"])
        return self._info

    def describe(self) -> str:
        self.info()
        return f"cpp/{self._runtime}"

    # -------------------------------------------------------------- inference

    def classify(self, files: Sequence[str | os.PathLike[str]], *, batch_size: int | None = None, threads: int = 1) -> CppAnswer:
        """One ``dacovid_infer --json`` run over ``files``; any image the C++ side refuses is a :class:`UserInputError`."""
        if not files:
            raise UserInputError("no images to classify")
        args = ["--json", "--threads", str(threads), *([] if batch_size is None else ["--batch", str(batch_size)])]
        stdout = self._run([*args, "--", *map(str, files)], "inference")
        rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        errors = [r for r in rows if "error" in r]
        if errors:
            raise UserInputError(f"C++ runtime: {errors[0]['error']} ({len(errors)} of {len(rows)} images refused)")
        if len(rows) != len(files):
            raise RuntimeError(f"C++ runtime answered {len(rows)} lines for {len(files)} images")
        return CppAnswer(
            logits=np.asarray([r["logits"] for r in rows], dtype=np.float32),
            probabilities=np.asarray([r["probabilities"] for r in rows], dtype=np.float64),
            class_names=tuple(r["class"] for r in rows),
        )

    def logits_for_files(self, files: Sequence[str | os.PathLike[str]], batch_size: int | None = None) -> np.ndarray:
        """float32 ``n x K`` logits for image files, decoded and preprocessed by the C++ runtime."""
        return self.classify(files, batch_size=batch_size).logits

    def time_files(self, files: Sequence[str | os.PathLike[str]], batch_size: int, repeats: int) -> list[float]:
        """Milliseconds of each full batch, end to end in C++ (decode + preprocessing + inference + softmax), after a warm-up pass."""
        stdout = self._run(["--time", str(repeats), "--batch", str(batch_size), "--", *map(str, files)], "timing")
        try:
            return [float(v) for v in json.loads(stdout)["bench"]["batch_ms"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"C++ runtime gave unreadable timings: {exc}") from exc
