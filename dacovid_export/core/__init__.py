"""The ground floor: what every stage needs and nothing stage-specific.

:mod:`.errors` (the exception types and their exit codes), :mod:`.fileio`
(atomic writes, checksums, scratch folders, writability), :mod:`.deps`
(optional dependencies: one-line errors naming what to install),
:mod:`.versions` (this package's and the installed packages' versions),
:mod:`.limits` (bounds on image and batch sizes), :mod:`.log` (the one logger
family and the CLI's verbosity), :mod:`.progress` (the one progress-bar helper
and the step timer), :mod:`.commands` (the command lines errors suggest),
:mod:`.onnxruntime_session` and :mod:`.openvino_model` (CPU sessions of ONNX
Runtime and OpenVINO with every option set explicitly). Imports nothing from
the rest of the package.
"""

from dacovid_export.core.errors import (
    DacovidError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.fileio import atomic_path
from dacovid_export.core.log import get_logger, set_verbosity
from dacovid_export.core.progress import StepTimer, progress_bar

__all__ = [
    "DacovidError",
    "MissingDependencyError",
    "UserInputError",
    "atomic_path",
    "get_logger",
    "set_verbosity",
    "StepTimer",
    "progress_bar",
]
