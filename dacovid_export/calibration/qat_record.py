"""What a quantization-aware fine-tune left for the INT8 guard's report: typed, with one serializer.

:class:`PtqBaseline` is what post-training INT8 alone gave on the guard's images (the "before"
of the fine-tune); :class:`QatRecord` the fine-tune itself. Both travel in the ``int8_guard``
metadata as the dicts they always were (``RECORD_VERSION`` marks this form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dacovid_export.data.agreement import Agreement

__all__ = ["RECORD_VERSION", "PtqBaseline", "QatRecord"]

RECORD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PtqBaseline:
    """Agreement with FP32 of the plainly calibrated INT8 model (no fallback), and its accuracy where labelled."""

    method: str
    agreement: Agreement
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.agreement.to_dict(),
                **({"accuracy": self.accuracy} if self.accuracy is not None else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PtqBaseline":
        accuracy = data.get("accuracy")
        return cls(str(data["method"]), Agreement.from_dict(data), None if accuracy is None else float(accuracy))


# the record's fields by their metadata keys; everything else the fine-tune recorded (losses, its options, the
# folded BatchNorms, ...) is kept as it was under ``fine_tune``
_TYPED = ("checkpoint", "reused", "epochs", "train_images", "seconds", "source_sha256", "qat_checkpoint_sha256",
          "before_qat", "record_version")


@dataclasses.dataclass(frozen=True)
class QatRecord:
    """The fine-tune behind an INT8 model: the checkpoint it wrote (or reused), its size, time, checksums, the baseline.

    ``fine_tune``: the rest of what the fine-tune recorded, as recorded (its options, losses,
    images, device): facts for the record that nothing reads back by key.
    """

    checkpoint: str
    reused: bool
    epochs: int | None
    train_images: int | None
    seconds: float
    source_sha256: str
    qat_checkpoint_sha256: str
    before: PtqBaseline | None = None
    fine_tune: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **dict(self.fine_tune),
            "record_version": RECORD_VERSION,
            "checkpoint": self.checkpoint,
            "reused": self.reused,
            "epochs": self.epochs,
            "train_images": self.train_images,
            "seconds": self.seconds,
            "source_sha256": self.source_sha256,
            "qat_checkpoint_sha256": self.qat_checkpoint_sha256,
            **({"before_qat": self.before.to_dict()} if self.before is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QatRecord":
        """The record :meth:`to_dict` wrote, or the untyped form of earlier models (no ``record_version``)."""
        before = data.get("before_qat")
        epochs, images = data.get("epochs"), data.get("train_images", data.get("images"))
        return cls(
            checkpoint=str(data.get("checkpoint", "")),
            reused=bool(data.get("reused", False)),
            epochs=None if epochs is None else int(epochs),
            train_images=None if images is None else int(images),
            seconds=float(data.get("seconds", 0.0)),
            source_sha256=str(data.get("source_sha256", "")),
            qat_checkpoint_sha256=str(data.get("qat_checkpoint_sha256", "")),
            before=None if not before else PtqBaseline.from_dict(before),
            fine_tune={k: v for k, v in data.items() if k not in _TYPED},
        )
