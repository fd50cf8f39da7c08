"""What every artifact says about itself, and the rules that keep artifacts safe.

:mod:`.info` (:class:`~.info.ArtifactInfo`, the artifact kinds and precisions),
:mod:`.onnx_metadata` (``metadata_props`` of an ONNX model),
:mod:`.engine_metadata` (an engine's JSON sidecar), :mod:`.onnx_graph` (the
anatomy of the exported graph: attention chains, graph helpers, external data),
:mod:`.read` (:func:`~.read.read_artifact_info` for any file) and
:mod:`.outputs` (an output never destroys an input or its companion files).
"""

from dacovid_export.artifacts.info import (
    ArtifactInfo,
    ArtifactKind,
    artifact_kind,
)
from dacovid_export.artifacts.read import read_artifact_info

__all__ = ["ArtifactInfo", "ArtifactKind", "artifact_kind", "read_artifact_info"]
