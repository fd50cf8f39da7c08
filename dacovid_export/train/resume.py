"""``--resume``: read ``last.pt``, and refuse when the new options would train another model or other data."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from dacovid_export.core.errors import UserInputError
from dacovid_export.model.torch_load import LOAD_ERRORS
from dacovid_export.train.config import DATA_OPTIONS, MODEL_OPTIONS, TrainConfig

__all__ = ["ResumeState", "read_resume_state", "compare_configs"]

# may change between the interrupted run and its continuation
_ADJUSTABLE = ("epochs", "batch_size", "lr", "workers", "device", "class_weights", "unreadable", "strict_dicom", "show_progress")


@dataclasses.dataclass(frozen=True)
class ResumeState:
    payload: Mapping[str, Any]  # the whole checkpoint dictionary
    epoch: int  # epochs completed
    config: Mapping[str, Any]  # the TrainConfig the run was started with, as a dict
    extra: Mapping[str, Any]  # optimizer, scaler, best, history


def read_resume_state(path: str | os.PathLike[str]) -> ResumeState:
    from dacovid_export.model import read_checkpoint

    try:
        payload = read_checkpoint(path)
    except UserInputError:
        raise
    except LOAD_ERRORS as exc:
        raise UserInputError(f"{str(path)!r} is not a dacovid-export checkpoint (torch.load failed: {type(exc).__name__}: {exc})") from exc
    extra = payload.get("extra_state")
    training = payload.get("training")
    if not isinstance(extra, Mapping) or "optimizer" not in extra or not isinstance(training, Mapping):
        raise UserInputError(
            f"{str(path)!r} holds no training state (optimizer, epoch): only a last.pt written by dacovid-train can be resumed"
        )
    config = training.get("config")
    if not isinstance(config, Mapping):
        raise UserInputError(f"{str(path)!r} does not record the options it was trained with; it cannot be resumed")
    return ResumeState(payload=payload, epoch=int(payload.get("epoch", 0)), config=config, extra=extra)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def compare_configs(previous: Mapping[str, Any], current: TrainConfig) -> list[str]:
    """Raise for options that must not change; return ``"name: old -> new"`` for those that did and may."""
    now = current.to_dict()
    incompatible = []
    for name in MODEL_OPTIONS + DATA_OPTIONS:
        if name in previous and not _same(previous[name], now[name]):
            incompatible.append(f"{name} (run: {previous[name]!r}, now: {now[name]!r})")
    # the backbone file only initialises a fresh run; repeating it, or leaving it out, is fine
    old_weights = previous.get("backbone_weights")
    if current.backbone_weights is not None and old_weights != current.backbone_weights:
        incompatible.append(f"backbone_weights (run: {old_weights!r}, now: {current.backbone_weights!r})")
    if incompatible:
        raise UserInputError(
            "cannot resume: these options differ from the run being resumed: " + "; ".join(incompatible)
            + ". Use the run's values, or start a new run in another --out folder"
        )
    return [
        f"{name}: {previous[name]!r} -> {now[name]!r}"
        for name in _ADJUSTABLE
        if name in previous and name != "show_progress" and not _same(previous[name], now[name])
    ]

