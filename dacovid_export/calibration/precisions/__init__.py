"""The precision registry: one module per precision, each a registered :class:`~.base.PrecisionKind`.

The registry's functions (:mod:`.base`) import every module of this package the first time they
are asked (found on disk, so a new precision is one new file).
"""

from dacovid_export.calibration.precisions.base import (
    PrecisionKind,
    StepInputs,
    Tolerance,
    engine_precisions,
    guard_report_types,
    guarded_precisions,
    pipeline_precisions,
    precision_names,
    precision_of,
    register_precision,
    registered,
)

__all__ = [
    "PrecisionKind",
    "StepInputs",
    "Tolerance",
    "engine_precisions",
    "guard_report_types",
    "guarded_precisions",
    "pipeline_precisions",
    "precision_names",
    "precision_of",
    "register_precision",
    "registered",
]
