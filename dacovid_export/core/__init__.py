"""The ground floor: what every stage needs and nothing stage-specific.

:mod:`.errors` (the exception types and their exit codes), :mod:`.fileio`
(atomic writes, checksums, scratch folders, writability), :mod:`.deps`
(optional dependencies: one-line errors naming what to install),
:mod:`.versions` (this package's and the installed packages' versions),
:mod:`.limits` (bounds on image and batch sizes), :mod:`.progress` (one step
timer), :mod:`.onnxruntime_session` and :mod:`.openvino_model` (CPU sessions of
ONNX Runtime and OpenVINO with every option set explicitly). Imports nothing
from the rest of the package.
"""
