"""The QAT fine-tune's resumable state: tensors plus one JSON string, read with ``weights_only=True``, checked before use.

A state file sits next to the output and any file can be planted there, so loading it must never
run code (a pickle's ``__reduce__`` would run under ``weights_only=False``) and nothing it says
is trusted: the JSON part must carry this run's fingerprint, an epoch in range and one finite loss
per epoch, and the tensors must be exactly the model's and Adam's (names, shapes, dtypes, finite).
Anything else is reported in one line by the caller, which then starts over.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.core.fileio import atomic_path
from dacovid_export.model.torch_load import load_tensors, why_load_failed

if TYPE_CHECKING:
    import torch

__all__ = ["STATE_FORMAT", "QatState", "BadQatState", "save_qat_state", "load_qat_state"]

# /1 was a pickled dict read unsafely: never read again; /2 shuffled by its own seed rule (seed * 1000 + epoch), not
# training's (core.seeds): its epochs would not continue as an uninterrupted run of this version does
STATE_FORMAT = "dacovid-qat-state/3"
_MODEL = "model."
_ADAM = ("step", "exp_avg", "exp_avg_sq")


class BadQatState(Exception):
    """The state file cannot be used; ``str()`` says why (for one line, then a fresh start)."""


class QatState:
    """What a resumed fine-tune continues from: the epoch reached, its losses, the student's and Adam's tensors."""

    __slots__ = ("epoch", "losses", "model", "optimizer")

    def __init__(self, epoch: int, losses: list[float], model: dict[str, Any], optimizer: dict[str, Any]) -> None:
        self.epoch, self.losses, self.model, self.optimizer = epoch, losses, model, optimizer


def save_qat_state(
    path: str | os.PathLike[str],
    *,
    fingerprint: dict[str, Any],
    epoch: int,
    losses: list[float],
    model: "torch.nn.Module",
    optimizer: "torch.optim.Optimizer",
) -> None:
    """Write the state atomically: ``{"meta": JSON text, "tensors": {name: tensor}}``, nothing else."""
    import torch

    tensors: dict[str, torch.Tensor] = {_MODEL + k: v.detach().cpu() for k, v in model.state_dict().items()}
    for index, moments in optimizer.state_dict()["state"].items():
        for name in _ADAM:
            value = moments[name]
            tensors[f"adam.{index}.{name}"] = (value if torch.is_tensor(value) else torch.tensor(float(value))).detach().cpu()
    meta = json.dumps({"format": STATE_FORMAT, "fingerprint": fingerprint, "epoch": epoch, "losses": losses})
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "tensors": tensors}, tmp)


def load_qat_state(
    path: str | os.PathLike[str],
    *,
    fingerprint: dict[str, Any],
    epochs: int,
    model: "torch.nn.Module",
    optimizer: "torch.optim.Optimizer",
) -> QatState:
    """The state in ``path`` when it is this run's and whole; else :class:`BadQatState` (nothing is loaded into anything)."""
    import torch

    path = Path(path)
    payload = load_tensors(path, lambda exc: BadQatState(f"is unreadable ({why_load_failed(exc)})"))
    if not isinstance(payload, dict) or set(payload) != {"meta", "tensors"} or not isinstance(payload["meta"], str):
        raise BadQatState("is not a dacovid-export QAT state")
    try:
        meta = json.loads(payload["meta"])
    except ValueError as exc:
        raise BadQatState(f"has unreadable metadata ({exc.__class__.__name__})") from exc
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise BadQatState(f"is not a {STATE_FORMAT} file")
    if meta.get("fingerprint") != fingerprint:
        raise BadQatState("is from another checkpoint, configuration or image set")
    epoch, losses = meta.get("epoch"), meta.get("losses")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        raise BadQatState(f"says epoch {epoch!r}, outside 1..{epochs}")
    if (
        not isinstance(losses, list)
        or len(losses) != epoch
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in losses)
    ):
        raise BadQatState(f"does not hold one finite loss for each of its {epoch} epoch(s)")
    tensors = payload["tensors"]
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in tensors.items()):
        raise BadQatState("holds something other than named tensors")
    expected: dict[str, torch.Tensor] = {_MODEL + k: v for k, v in model.state_dict().items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        expected[f"adam.{index}.step"] = torch.zeros((), dtype=torch.float32)
        expected[f"adam.{index}.exp_avg"] = param
        expected[f"adam.{index}.exp_avg_sq"] = param
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise BadQatState(f"does not match this model ({len(missing)} tensor(s) missing, {len(extra)} unexpected)")
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise BadQatState(f"has {name} of {tuple(got.shape)} {got.dtype}, not {tuple(want.shape)} {want.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise BadQatState(f"has non-finite values in {name}")
    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    # the param groups (lr, betas) are this run's own: the fingerprint holds the options they come from
    optimizer_state = {
        "state": {i: {name: tensors[f"adam.{i}.{name}"] for name in _ADAM} for i in range(len(params))},
        "param_groups": optimizer.state_dict()["param_groups"],
    }
    return QatState(epoch=epoch, losses=[float(v) for v in losses], model=model_state, optimizer=optimizer_state)
