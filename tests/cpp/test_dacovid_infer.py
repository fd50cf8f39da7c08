"""dacovid_infer (the C++ runtime's CLI) against Python's Predictor with the same runtime (OpenVINO on the CPU).

Same class on every image and probabilities within 1e-5, for an FP32 and an INT8 (Q/DQ) model; on the
synthetic set always, on every real chest X-ray of DACOVID_REAL_DATA when it is set.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.data.image_folder import find_images
from dacovid_export.data.preprocessing import preprocess_batch
from dacovid_export.serve.predictor import Predictor

PROB_TOLERANCE = 1e-5


def _infer(tool: Path, model: Path, files: list[Path], *extra: str) -> list[dict]:
    done = subprocess.run([str(tool), str(model), "--json", *extra, "--", *map(str, files)],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _python(model: Path, files: list[Path], **options) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, logits) from Predictor on OpenVINO, the images preprocessed once by Python."""
    with Predictor.from_path(model, backend="openvino", device="cpu", **options) as predictor:
        spec = predictor.preprocessing
        logits = np.concatenate([predictor.predict_logits(preprocess_batch(files[s : s + 16], spec)) for s in range(0, len(files), 16)])
    from dacovid_export.data.agreement import softmax

    return softmax(logits), logits


def _compare(rows: list[dict], files: list[Path], probs: np.ndarray, logits: np.ndarray, classes: tuple[str, ...]) -> None:
    assert [r["image"] for r in rows] == [str(f) for f in files]
    got = np.asarray([r["probabilities"] for r in rows])
    assert [r["class"] for r in rows] == [classes[i] for i in probs.argmax(axis=1)]
    assert np.abs(got - probs).max() <= PROB_TOLERANCE, np.abs(got - probs).max()
    assert np.allclose(np.asarray([r["logits"] for r in rows]), logits, atol=1e-4)


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_same_answers_as_predictor_on_synthetic(dacovid_infer: Path, tiny_fp32_onnx: Path, tiny_int8_onnx: Path,
                                                synthetic_dir: Path, tiny_classes, which: str) -> None:  # fmt: skip
    model = tiny_fp32_onnx if which == "fp32" else tiny_int8_onnx
    files = find_images(synthetic_dir)
    _compare(_infer(dacovid_infer, model, files), files, *_python(model, files), tiny_classes)


@pytest.mark.realdata
def test_same_answers_as_predictor_on_every_real_xray(dacovid_infer: Path, tiny_fp32_onnx: Path, tiny_int8_onnx: Path,
                                                      real_data_dir: Path, tiny_classes) -> None:  # fmt: skip
    files = find_images(real_data_dir)
    for model in (tiny_fp32_onnx, tiny_int8_onnx):
        _compare(_infer(dacovid_infer, model, files, "--batch", "16"), files, *_python(model, files), tiny_classes)


def test_bf16_only_for_a_model_marked_bf16(dacovid_infer: Path, make_toy_onnx, synthetic_dir: Path, tmp_path: Path) -> None:
    from dacovid_export.core.openvino_model import cpu_supports_bf16

    fp32 = make_toy_onnx(tmp_path / "toy.onnx")
    bf16 = make_toy_onnx(tmp_path / "toy.bf16.onnx", precision="bf16")
    info = lambda m: json.loads(subprocess.run([str(dacovid_infer), str(m), "--info"], capture_output=True, text=True).stdout or "{}")  # noqa: E731
    assert info(fp32)["runtime"] == "openvino/cpu (inference precision f32)"
    files = find_images(synthetic_dir)[:4]
    if not cpu_supports_bf16():
        done = subprocess.run([str(dacovid_infer), str(bf16), str(files[0])], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no BF16 support" in done.stderr
        return
    assert info(bf16)["runtime"] == "openvino/cpu (inference precision bf16)" and info(bf16)["precision"] == "bf16"
    probs, logits = _python(bf16, files)
    _compare(_infer(dacovid_infer, bf16, files), files, probs, logits, ("Normal", "Pneumonia", "COVID-19"))


def test_info_and_text_output(dacovid_infer: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, tiny_classes) -> None:
    from dacovid_export.artifacts.read import read_artifact_info

    described = json.loads(subprocess.run([str(dacovid_infer), str(tiny_fp32_onnx), "--info"], capture_output=True, text=True).stdout)
    python = read_artifact_info(tiny_fp32_onnx)
    assert tuple(described["class_names"]) == python.class_names == tuple(tiny_classes)
    assert described["preprocessing"] == python.preprocessing.to_dict()
    assert described["precision"] == "fp32" and described["source_sha256"] == python.source_sha256
    files = find_images(synthetic_dir)[:3]
    done = subprocess.run([str(dacovid_infer), str(tiny_fp32_onnx), *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{f}: ") and line.count(" | ") == 1 for line, f in zip(lines, files))


def test_8_threads_give_the_answers_of_1(dacovid_infer: Path, tiny_int8_onnx: Path, tmp_path: Path) -> None:
    """64 images, batches of 8: 8 worker threads sharing one compiled model == one thread, byte for byte."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(64):
        path = tmp_path / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (70 + i % 5, 64 + i % 7), dtype=np.uint8), "L").save(path)
        files.append(path)
    one = _infer(dacovid_infer, tiny_int8_onnx, files, "--batch", "8", "--threads", "1")
    eight = _infer(dacovid_infer, tiny_int8_onnx, files, "--batch", "8", "--threads", "8")
    assert len(one) == 64 and one == eight
    # another batch size may take other kernels: the same answers within the tolerance, not bit for bit
    singles = _infer(dacovid_infer, tiny_int8_onnx, files, "--batch", "1", "--threads", "8")
    assert np.abs(np.asarray([r["probabilities"] for r in singles]) - np.asarray([r["probabilities"] for r in one])).max() <= PROB_TOLERANCE
