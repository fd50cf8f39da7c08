"""What a parity check compares and how strictly: the tolerances per precision and the validated options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dacovid_export.calibration.precisions import Tolerance, registered
from dacovid_export.core.errors import UserInputError

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SYNTHETIC_COUNT", "Tolerance", "ParityConfig"]  # Tolerance: re-exported

DEFAULT_BATCH_SIZE = 8
DEFAULT_SYNTHETIC_COUNT = 32


@dataclasses.dataclass(frozen=True)
class ParityConfig:
    """Tolerances per precision (from each model's metadata) and the provenance rule.

    ``tolerances``: ``{precision: Tolerance}``; by default each registered precision's own
    criteria (``calibration.precisions.<name>.parity``, where the reasons for the values are).
    """

    tolerances: Mapping[str, Tolerance] = dataclasses.field(
        default_factory=lambda: {p.name: p.parity for p in registered()}
    )
    require_same_source: bool = True

    def __post_init__(self) -> None:
        for name, tolerance in self.tolerances.items():
            if not isinstance(tolerance, Tolerance):
                raise UserInputError(f"{name}={tolerance!r}: must be a Tolerance")
        object.__setattr__(self, "tolerances", dict(self.tolerances))

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.tolerances)

    def tolerance_for(self, precision: str) -> Tolerance:
        if precision not in self.tolerances:
            raise UserInputError(
                f"no parity tolerance for precision {precision!r}; known: {', '.join(self.precisions)}"
            )
        return self.tolerances[precision]

    def with_tolerance(self, precision: str, tolerance: Tolerance) -> "ParityConfig":
        """A copy with ``precision``'s criteria replaced as a whole."""
        self.tolerance_for(precision)  # an unknown precision: the one-line error
        return dataclasses.replace(self, tolerances={**self.tolerances, precision: tolerance})

    def with_overrides(self, overrides: Mapping[str, float | None]) -> "ParityConfig":
        """A copy with ``{"<precision>_<field>": value}`` replaced, e.g. ``{"int8_min_agreement": 0.99}``."""
        tolerances = {p: self.tolerance_for(p).to_dict() for p in self.precisions}
        fields = {f.name for f in dataclasses.fields(Tolerance)}
        for key, value in overrides.items():
            precision, _, field = key.partition("_")
            if precision not in tolerances or field not in fields:
                raise UserInputError(
                    f"unknown tolerance {key!r}: use <precision>_<criterion> with precision in "
                    f"{', '.join(self.precisions)} and criterion in {', '.join(sorted(fields))}"
                )
            tolerances[precision][field] = value
        return dataclasses.replace(self, tolerances={p: Tolerance(**t) for p, t in tolerances.items()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {p: self.tolerance_for(p).to_dict() for p in self.precisions}
        out["require_same_source"] = self.require_same_source
        return out
