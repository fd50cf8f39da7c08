"""The runtime Predictor: inputs of every kind, batch splitting, lifetime, threads, NaN detection."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.data.synthetic import synthetic_image
from dacovid_export.serve.predictor import Prediction, Predictor

CLASSES = ("Normal", "Pneumonia", "COVID-19")


@pytest.fixture(scope="module")
def predictor(tiny_fp32_onnx: Path):
    with Predictor.from_path(tiny_fp32_onnx, device="cpu") as p:
        yield p


@pytest.fixture(scope="module")
def images(synthetic_dir: Path) -> list[Path]:
    return sorted(synthetic_dir.rglob("*.png"))[::4]  # 6 images, all three classes


def _probs(p: Prediction) -> np.ndarray:
    return np.array([p.probabilities[c] for c in CLASSES])


def test_predict_paths(predictor: Predictor, images: list[Path]) -> None:
    results = predictor.predict(images)
    assert len(results) == len(images)
    for path, p in zip(images, results):
        assert p.source == str(path)
        assert tuple(p.probabilities) == CLASSES
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert p.class_name == CLASSES[p.index] == max(p.probabilities, key=p.probabilities.get)
        assert p.confidence == p.probabilities[p.class_name]
        assert len(p.logits) == 3
    assert predictor.predict(images[0])[0].probabilities == results[0].probabilities  # one path, not a list
    assert predictor.predict([]) == []
    assert results[0].to_dict()["class_name"] == results[0].class_name


def test_path_pil_and_array_give_the_same_answer(predictor: Predictor, images: list[Path]) -> None:
    path = images[1]
    pil = Image.open(path)
    array = np.asarray(pil)
    by_path, by_pil, by_array = predictor.predict([path, pil, array])
    np.testing.assert_allclose(_probs(by_pil), _probs(by_path), atol=1e-6)
    np.testing.assert_allclose(_probs(by_array), _probs(by_path), atol=1e-6)
    assert by_pil.source is None and by_array.source is None


def test_16bit_png_and_rgba(predictor: Predictor, tmp_path: Path) -> None:
    gray8 = synthetic_image(2, 64, np.random.default_rng(3))  # uint8 64 x 64
    path8, path16, path_rgba = tmp_path / "g8.png", tmp_path / "g16.png", tmp_path / "rgba.png"
    Image.fromarray(gray8, mode="L").save(path8)
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path16)  # same picture, 16-bit
    rgba = np.dstack([gray8, gray8, gray8, np.full_like(gray8, 255)])
    Image.fromarray(rgba, mode="RGBA").save(path_rgba)
    assert Image.open(path16).mode.startswith("I")
    p8, p16, p_rgba, p_arr16 = predictor.predict([path8, path16, path_rgba, gray8.astype(np.uint16) * 257])
    for other in (p16, p_rgba, p_arr16):
        np.testing.assert_allclose(_probs(other), _probs(p8), atol=1e-5)
        assert other.class_name == p8.class_name


def test_checkpoint_and_onnx_predictors_agree(tiny_checkpoint: Path, predictor: Predictor, images: list[Path]) -> None:
    with Predictor.from_path(tiny_checkpoint, device="cpu") as torch_predictor:
        assert torch_predictor.backend.name == "torch"
        a = torch_predictor.predict(images)
    b = predictor.predict(images)
    assert [p.class_name for p in a] == [p.class_name for p in b]
    np.testing.assert_allclose(np.array([_probs(p) for p in a]), np.array([_probs(p) for p in b]), atol=1e-5)


def test_batches_are_split_to_the_artifact_limit(make_toy_onnx, tmp_path: Path, images: list[Path]) -> None:
    path = make_toy_onnx(tmp_path / "static2.onnx", batch=2)
    with Predictor.from_path(path, device="cpu") as p:
        assert p.batch_size == 2
        sizes: list[int] = []
        run = p.backend.run
        p.backend.run = lambda batch: (sizes.append(len(batch)), run(batch))[1]  # type: ignore[method-assign]
        results = p.predict(images[:5])
        assert len(results) == 5
        assert sizes == [2, 2, 2]  # the last image is padded up to the static batch of 2
        single = p.predict(images[4])[0]
        assert single.probabilities == results[4].probabilities
    with pytest.raises(UserInputError, match="batch_size=4 exceeds the largest batch"):
        Predictor.from_path(path, device="cpu", batch_size=4)


def test_context_manager_frees_the_backend(make_toy_onnx, tmp_path: Path, images: list[Path]) -> None:
    with Predictor.from_path(make_toy_onnx(tmp_path / "toy.onnx"), device="cpu") as p:
        backend = p.backend
        p.predict(images[0])
    assert p.closed and backend._session is None  # ORT session (and its arena) released
    with pytest.raises(UserInputError, match="closed"):
        p.predict(images[0])
    p.close()  # idempotent
    assert "closed" in repr(p)


def test_nan_output_raises(make_toy_onnx, tmp_path: Path, images: list[Path]) -> None:
    with Predictor.from_path(make_toy_onnx(tmp_path / "nan.onnx", scale=float("nan")), device="cpu") as p:
        with pytest.raises(CheckFailedError, match="nan.onnx"):
            p.predict(images[:2])


def test_bad_inputs(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        predictor.predict(tmp_path / "missing.png")
    with pytest.raises(UserInputError, match="unsupported|give a path"):
        predictor.predict(42)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="batch_size=0"):
        Predictor(predictor.backend, batch_size=0)


def test_shared_predictor_from_threads(predictor: Predictor, images: list[Path]) -> None:
    expected = [p.probabilities for p in predictor.predict(images)]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = [p.probabilities for p in predictor.predict(images)]
        except BaseException as exc:  # reported below; a thread's exception would be lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results.values())


@pytest.mark.realdata
def test_real_chest_xrays(real_data_dir: Path, tiny_fp32_onnx: Path) -> None:
    files = [f for folder in sorted(real_data_dir.iterdir()) if folder.is_dir() for f in sorted(folder.glob("*.jp*g"))[:2]]
    assert files, f"no JPEGs under {real_data_dir}"
    with Predictor.from_path(tiny_fp32_onnx, device="cpu", batch_size=4) as p:
        results = p.predict(files)
    assert len(results) == len(files)
    assert all(r.class_name in CLASSES and 0.0 <= r.confidence <= 1.0 for r in results)
