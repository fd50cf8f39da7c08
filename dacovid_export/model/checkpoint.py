"""Checkpoints: weights plus everything needed to use them (classes, preprocessing, options, metrics, versions).

Read with ``torch.load(weights_only=True)``: loading a checkpoint never runs code.
Only plain Python values and tensors are stored, which that loader accepts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_path, refuse_scratch, sha256_file
from dacovid_export.core.versions import package_versions
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.model.network import DACovidNet, ModelConfig
from dacovid_export.model.torch_load import load_tensors, why_load_failed

__all__ = ["CHECKPOINT_FORMAT", "CheckpointMetadata", "image_record_of", "save_checkpoint", "load_checkpoint", "read_checkpoint", "model_from_payload"]

CHECKPOINT_FORMAT = "dacovid-checkpoint"
_FORMAT_VERSION = 1

# what parsing a checkpoint's fields or loading its weights raises when the file is damaged or from another version
_DAMAGE_ERRORS = (KeyError, ValueError, RuntimeError, TypeError)


def _damaged(source: str, exc: BaseException) -> UserInputError:
    if isinstance(exc, UserInputError):
        return exc
    return UserInputError(f"{source} is damaged or from an incompatible version: {exc}")


@dataclasses.dataclass(frozen=True)
class CheckpointMetadata:
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    model_config: ModelConfig
    training: Mapping[str, Any]
    metrics: Mapping[str, Any]
    versions: Mapping[str, str]
    epoch: int
    sha256: str
    path: str
    # which images trained it and which were held out, by content (None: trained elsewhere or before the record)
    image_record: ImageRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_dict(),
            "model_config": self.model_config.to_dict(),
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            "versions": dict(self.versions),
            "epoch": self.epoch,
            "sha256": self.sha256,
            "path": self.path,
            "image_record": None if self.image_record is None else {
                "train": len(self.image_record.train), "val": len(self.image_record.val)
            },
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], path: str | os.PathLike[str]) -> CheckpointMetadata:
        """What a raw checkpoint dictionary (:func:`read_checkpoint` of ``path``) says about itself.

        The one parser of those fields; :class:`UserInputError` when one is missing or damaged.
        """
        try:
            return cls(
                class_names=tuple(payload["class_names"]),
                preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
                model_config=ModelConfig.from_dict(payload["model_config"]),
                training=payload.get("training", {}),
                metrics=payload.get("metrics", {}),
                versions=payload.get("versions", {}),
                epoch=int(payload.get("epoch", 0)),
                sha256=sha256_file(path),
                path=str(path),
                image_record=image_record_of(payload, path),
            )
        except _DAMAGE_ERRORS as exc:
            raise _damaged(f"checkpoint {str(path)!r}", exc) from exc


def image_record_of(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> ImageRecord | None:
    """The checkpoint's record of its training and held-out images (tensors, no code), or None when it has none."""
    data = payload.get("image_record")
    if data is None:
        return None
    record = ImageRecord.from_tensors(data, f"checkpoint {str(path)!r}")
    return dataclasses.replace(record, source=f"the record in checkpoint {Path(path).name!r}")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: DACovidNet,
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    epoch: int = 0,
    extra_state: Mapping[str, Any] | None = None,
    image_record: ImageRecord | None = None,
) -> Path:
    """Write a checkpoint atomically. ``extra_state`` (optimizer, scheduler, RNG) is for ``--resume``.

    ``image_record``: the content fingerprints of the images that trained it and were held out.
    """
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.config.num_classes} outputs")
    # unwrap DDP / torch.compile wrappers so keys never carry "module." prefixes
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": _FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in inner.state_dict().items()},
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "model_config": inner.config.to_dict(),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "versions": package_versions(),
        "epoch": int(epoch),
    }
    if extra_state:
        payload["extra_state"] = dict(extra_state)
    if image_record is not None:
        payload["image_record"] = image_record.to_tensors()
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint dictionary, validated; :class:`UserInputError` for anything that is not one (or another run's scratch)."""
    refuse_scratch(path)
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint {str(path)!r} does not exist or is not a file")
    payload = load_tensors(path, lambda exc: UserInputError(f"{str(path)!r} is not a dacovid-export checkpoint ({why_load_failed(exc)})"))
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserInputError(
            f"{str(path)!r} is not a dacovid-export checkpoint (no '{CHECKPOINT_FORMAT}' format tag); "
            "make one with dacovid-train"
        )
    if payload.get("format_version", 0) > _FORMAT_VERSION:
        raise UserInputError(
            f"{str(path)!r} has checkpoint format {payload['format_version']}, newer than this dacovid-export "
            f"understands ({_FORMAT_VERSION}); upgrade dacovid-export"
        )
    return payload


def model_from_payload(payload: Mapping[str, Any], source: str) -> DACovidNet:
    """The network a raw checkpoint dictionary describes, its weights loaded (strict), on the CPU.

    ``source`` names the file in the :class:`UserInputError` raised when the payload does not fit.
    """
    try:
        model = DACovidNet(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except _DAMAGE_ERRORS as exc:
        raise _damaged(source, exc) from exc
    return model


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[DACovidNet, CheckpointMetadata]:
    """Model in eval mode on the CPU, and its metadata."""
    payload = read_checkpoint(path)
    meta = CheckpointMetadata.from_payload(payload, path)  # cheap fields first, then the network
    model = model_from_payload(payload, f"checkpoint {str(path)!r}")
    model.eval()
    return model, meta
