"""PipelineConfig: options that shape only the embedded default, bad values and paths, refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest

import dataclasses

from dacovid_export.calibration.qat import QatConfig
from dacovid_export.core.errors import UserInputError
from dacovid_export.pipeline.config import PIPELINE_BENCH, PipelineConfig, PipelinePrecision


def _config(out: Path, *, calib_data: Path | None = None, calib_size: int | None = None, train_data: Path | None = None,
            qat: QatConfig | None = None, progress: bool = True, **kwargs: object) -> PipelineConfig:
    """A PipelineConfig from the options the CLI spells flat, nested as the CLI nests them."""
    return PipelineConfig(
        out=out, precision=PipelinePrecision(calib_data=calib_data, calib_size=calib_size, train_data=train_data),
        qat=qat, bench=dataclasses.replace(PIPELINE_BENCH, progress=progress), **kwargs,  # type: ignore[arg-type]
    )


def test_config_rejects_embedded_options_with_a_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--image-size"):
        PipelineConfig(out=tmp_path / "o", checkpoint=tiny_checkpoint, image_size=64)
    with pytest.raises(UserInputError, match="model options"):
        PipelineConfig(out=tmp_path / "o", checkpoint=tiny_checkpoint, model_options={"output_stride": 16})


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"model_options": {"depth": 3}}, "depth"),
        ({"model_options": {"output_stride": 4}}, "output_stride"),
        ({"image_size": 8}, "image_size=8"),
        ({"bench": {"batch_sizes": (0,)}}, "batch size=0"),
        ({"bench": {"iterations": 0}}, "iterations=0"),
        ({"calib_size": 2}, "calib_size=2"),
        ({"bench": {"device": "tpu"}}, "tpu"),
        ({"checkpoint": Path("missing.pt")}, "missing.pt"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=fragment):
        if "bench" in kwargs:
            _config(tmp_path / "o", bench=dataclasses.replace(PIPELINE_BENCH, **kwargs["bench"]))
        else:
            _config(tmp_path / "o", **kwargs)


def test_out_must_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a folder"):
        PipelineConfig(out=tmp_path / "file")


def test_checkpoint_must_be_a_checkpoint(make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx")
    with pytest.raises(UserInputError, match="not a PyTorch checkpoint"):
        PipelineConfig(out=tmp_path / "o", checkpoint=toy)


def _run_folder(tiny_checkpoint: Path, tmp_path: Path, *, split: bool) -> Path:
    """A copy of the checkpoint in a run folder, with (or without) a split.json beside it."""
    import shutil

    run = tmp_path / ("run-split" if split else "run")
    run.mkdir()
    shutil.copy(tiny_checkpoint, run / "best.pt")
    if split:
        (run / "split.json").write_text("{}")
    return run / "best.pt"


def test_qat_needs_training_images_before_any_work(tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    checkpoint = _run_folder(tiny_checkpoint, tmp_path, split=False)
    with pytest.raises(UserInputError, match="no split.json next to .*--train-data"):
        _config(tmp_path / "o", checkpoint=checkpoint, calib_data=synthetic_dir, qat=QatConfig())
    # with --train-data, or a split.json beside the checkpoint, the same options are accepted
    config = _config(tmp_path / "o", checkpoint=checkpoint, calib_data=synthetic_dir, qat=QatConfig(), train_data=synthetic_dir)
    assert config.int8_precision_config(synthetic_dir, None).qat
    beside = _run_folder(tiny_checkpoint, tmp_path, split=True)
    config = _config(tmp_path / "o", checkpoint=beside, calib_data=synthetic_dir, qat=QatConfig(epochs=3))
    precision = config.int8_precision_config(synthetic_dir, 64)
    assert (precision.precision, precision.qat_config().epochs, precision.calib_size) == ("int8", 3, 64)
    assert config.to_dict()["qat"] is True


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"train_data": Path(".")}, "--train-data given without --qat"),
        ({"qat": {"epochs": 0}}, "epochs=0"),
        ({"qat": {"lr": 0.0}}, "lr=0.0"),
        ({"qat": {"seed": 5}}, "the run's seed"),
        ({"qat": {}, "calib_data": None}, "needs calibration images"),
        ({"qat": {}, "checkpoint": None}, "give --checkpoint"),
    ],
)
def test_qat_bad_options_are_refused_up_front(
    kwargs: dict, fragment: str, tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    base = {"checkpoint": _run_folder(tiny_checkpoint, tmp_path, split=True), "calib_data": synthetic_dir}
    with pytest.raises(UserInputError, match=fragment):
        if "qat" in kwargs:
            kwargs = kwargs | {"qat": QatConfig(**kwargs["qat"])}
        _config(tmp_path / "o", **(base | kwargs))


def _no_bf16_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU may run BF16: the pipeline's BF16 step is skipped as on a CPU without it."""
    from dacovid_export.calibration.precisions import precision_of
    from dacovid_export.core.errors import MissingDependencyError

    def no_bf16(self) -> None:
        raise MissingDependencyError("no BF16 here")

    monkeypatch.setattr(type(precision_of("bf16")), "preflight", no_bf16)


def test_pipeline_qat_makes_the_int8_model_from_the_checkpoint(
    tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --qat the INT8 model comes from export_at_precision (the checkpoint fine-tuned), FP16 from the FP32 ONNX."""
    from types import SimpleNamespace

    from dacovid_export.core.progress import StepTimer
    from dacovid_export.pipeline import exports
    from dacovid_export.pipeline.inputs import PipelineInputs

    calls: list[tuple[str, object]] = []

    def made(path: Path) -> SimpleNamespace:
        return SimpleNamespace(path=Path(path), fp32_nodes=(), guard=None)

    monkeypatch.setattr(exports, "export_onnx", lambda ckpt, out, *a, **k: made(out))
    monkeypatch.setattr(exports, "convert_precision", lambda src, out, cfg, **k: calls.append(("convert", cfg)) or made(out))
    monkeypatch.setattr(exports, "export_at_precision", lambda ckpt, out, e, cfg, **k: calls.append((str(ckpt), cfg)) or made(out))
    _no_bf16_here(monkeypatch)
    checkpoint = _run_folder(tiny_checkpoint, tmp_path, split=True)
    config = _config(tmp_path / "o", checkpoint=checkpoint, calib_data=synthetic_dir, qat=QatConfig(), progress=False)
    inputs = PipelineInputs(checkpoint, None, synthetic_dir, None, "")
    models = exports.make_onnx_models(inputs, config, StepTimer(False, total=3))
    assert [(who, cfg.precision, cfg.qat) for who, cfg in calls] == [("convert", "fp16", False), (str(checkpoint), "int8", True)]
    assert models.paths["int8"] == tmp_path / "o" / "model.int8.onnx"


def test_an_int8_refusal_in_the_pipeline_says_add_qat(
    tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from dacovid_export.calibration.guard import GuardFailedError
    from dacovid_export.core.progress import StepTimer
    from dacovid_export.pipeline import exports
    from dacovid_export.pipeline.inputs import PipelineInputs

    def convert(src: Path, out: Path, cfg, **kwargs) -> SimpleNamespace:
        if cfg.precision == "int8":
            raise GuardFailedError("INT8 accuracy guard: below the target", report=None)  # type: ignore[arg-type]
        return SimpleNamespace(path=Path(out), fp32_nodes=(), guard=None)

    monkeypatch.setattr(exports, "export_onnx", lambda ckpt, out, *a, **k: SimpleNamespace(path=Path(out), fp32_nodes=(), guard=None))
    monkeypatch.setattr(exports, "convert_precision", convert)
    _no_bf16_here(monkeypatch)
    checkpoint = _run_folder(tiny_checkpoint, tmp_path, split=True)
    config = _config(tmp_path / "o", checkpoint=checkpoint, calib_data=synthetic_dir, progress=False)
    models = exports.make_onnx_models(PipelineInputs(checkpoint, None, synthetic_dir, None, ""), config, StepTimer(False, total=3))
    (failed,) = models.failed
    assert failed.reason.endswith(f"In the pipeline: run this pipeline command again with --qat added (fine-tunes {checkpoint} on the split.json beside it)")
    assert "int8" not in models.paths
