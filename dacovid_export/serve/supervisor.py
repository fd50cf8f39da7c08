"""Keeping a served repository answering: a real request as the health probe, a reload when it fails.

Why a real request: when a python stub dies (``kill -9``, the OOM killer) Triton answers every
later request with "Stub process ... is not healthy", while ``/v2/health/ready`` and the model's
own ready endpoint go on saying 200 (measured on this project's Triton). So every ensemble is
sent one small image (a grey PNG, only ``class_name`` asked for) every ``interval_s`` seconds,
and at once when a stub process of the server disappears. A failed probe unloads the ensemble
with its composing models (readiness is false from then on: strict readiness) and loads it
again, which starts fresh stubs; each event is one line on stderr. If the ensemble does not
answer after :data:`MAX_RELOADS` reloads in a row, :class:`RecoveryFailed` is raised and
``serve`` exits non-zero, so that its own supervisor (systemd, Kubernetes) restarts it.
Reloading needs Triton's explicit model control (``--model-control-mode=explicit``), which
:class:`~dacovid_export.serve.server.TritonServer` starts it with.
"""

from __future__ import annotations

import io
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from dacovid_export.core.errors import one_line
from dacovid_export.core.log import get_logger

__all__ = ["MAX_RELOADS", "RecoveryFailed", "Supervisor", "probe_image", "ensembles_of"]

# what a supervisor says is a warning: a model stopped answering, or came back
_log = get_logger("serve")

MAX_RELOADS = 3
_LOAD_TIMEOUT_S = 120.0


class RecoveryFailed(Exception):
    """An ensemble stayed unhealthy through every reload: the server cannot be trusted to answer."""


def probe_image() -> bytes:
    """A 64 x 64 mid-grey PNG: decodes under any preprocessing, and costs one small inference."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc).encode()


def _reason(body: bytes) -> str:
    try:
        return one_line(str(json.loads(body).get("error", body.decode(errors="replace"))))[:300]
    except ValueError:
        return one_line(body.decode(errors="replace"))[:300]


class Supervisor:
    """Probes ``ensembles`` of the server at ``base_url`` and reloads one that fails; one warning per event (serve logger)."""

    def __init__(self, base_url: str, ensembles: Sequence[str], *, interval_s: float = 5.0, timeout_s: float = 20.0) -> None:
        self.base_url = base_url
        self.ensembles = list(ensembles)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._image = probe_image() if self.ensembles else b""
        self._next = time.monotonic() + interval_s
        self._failures: dict[str, int] = {}

    def probe(self, ensemble: str) -> str | None:
        """None when ``ensemble`` answers the probe image; else why not (one line)."""
        blob = struct.pack("<I", len(self._image)) + self._image
        header = json.dumps({
            "inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}],
            "outputs": [{"name": "class_name", "parameters": {"binary_data": False}}],
        }).encode()  # fmt: skip
        status, body = _post(
            f"{self.base_url}/v2/models/{ensemble}/infer", header + blob,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
            self.timeout_s,
        )  # fmt: skip
        if status == 200:
            return None
        return f"HTTP {status}: {_reason(body)}" if status else f"no answer: {_reason(body)}"

    def tick(self, stub_died: bool) -> None:
        """Called about once a second: probe when due (or at once when a stub died), reload what fails."""
        now = time.monotonic()
        if not stub_died and now < self._next:
            return
        self._next = now + self.interval_s
        for ensemble in self.ensembles:
            why = self.probe(ensemble)
            if why is None:
                if self._failures.pop(ensemble, 0):
                    _log.warning(f"serve: {ensemble!r} answers again")
                continue
            self._recover(ensemble, why)

    def _recover(self, ensemble: str, why: str) -> None:
        for attempt in range(1, MAX_RELOADS + 1):
            self._failures[ensemble] = attempt
            _log.warning(f"serve: {ensemble!r} failed its health probe ({why}): not ready; reloading it and its steps "
                     f"(attempt {attempt} of {MAX_RELOADS})")
            self._reload(ensemble)
            why = self.probe(ensemble) or ""
            if not why:
                self._failures.pop(ensemble, None)
                _log.warning(f"serve: {ensemble!r} reloaded and answers again; ready")
                return
        raise RecoveryFailed(f"{ensemble!r} still fails after {MAX_RELOADS} reloads ({why}): stopping so that a supervisor "
                             "restarts the server")

    def _reload(self, ensemble: str) -> None:
        headers = {"Content-Type": "application/json"}
        # unload the ensemble and every model it uses (strict readiness: the server is not ready from here), then load it,
        # which loads the composing models again with fresh stubs
        _post(f"{self.base_url}/v2/repository/models/{ensemble}/unload",
              json.dumps({"parameters": {"unload_dependents": True}}).encode(), headers, _LOAD_TIMEOUT_S)
        status, body = _post(f"{self.base_url}/v2/repository/models/{ensemble}/load", b"", headers, _LOAD_TIMEOUT_S)
        if status != 200:
            _log.warning(f"serve: loading {ensemble!r} again failed: HTTP {status}: {_reason(body)}")


def ensembles_of(repo: str | Path, models: Sequence[str]) -> list[str]:
    """The models of ``repo`` that are ensembles (what a client calls): those are probed."""
    from dacovid_export.serve.triton_config import read_config

    return [m for m in models if read_config(Path(repo) / m / "config.pbtxt").platform == "ensemble"]
