"""Helpers shared by the precision-step tests (a module, not conftest, so tests can import it by name)."""

from __future__ import annotations

import warnings
from pathlib import Path

SOURCE_METADATA = {"dacovid.test_marker": "kept-through-precision-step"}


def export_fp32_onnx(checkpoint: Path, path: Path) -> Path:
    """FP32 ONNX with a dynamic batch, weights inside the file, plus a metadata entry to follow."""
    import onnx
    import torch

    from dacovid_export.model import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    size = meta.preprocessing.image_size
    x = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    proto = program.model_proto
    for key, value in SOURCE_METADATA.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path), save_as_external_data=False)
    return path


def run_onnx(path: Path, x):
    """Logits of an ONNX model in ONNX Runtime's CPU provider."""
    from dacovid_export.core.onnxruntime_session import open_session

    session = open_session(path, purpose="run the test", intra_op_threads=2)
    return session.run(None, {session.get_inputs()[0].name: x})[0]
