"""``dacovid-export trt``: the precision step when an FP32 ONNX is to become an FP16/INT8 engine, then the build.

:func:`dacovid_export.engine.build.build_engine` builds the ONNX it is given;
this module is the one place that chains the precision step
(:func:`dacovid_export.calibration.convert.convert_precision`) in front of it.
The FP16/INT8 ONNX is written beside the engine (:func:`precision_onnx_path`),
so the engine's source stays inspectable. Every user error and the build
environment are checked before the slow precision step starts.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision
from dacovid_export.core.errors import EngineBuildError, UserInputError
from dacovid_export.core.log import Log
from dacovid_export.data.image_folder import check_image_source
from dacovid_export.engine.build import build_engine, prepare_build
from dacovid_export.engine.config import (
    EngineBuildConfig,
    EngineBuildResult,
    check_engine_paths,
    precision_onnx_path,
    refuse_bf16_source,
)

__all__ = ["make_engine", "refuse_qat_engine"]


_QAT_OPTIONS = ("qat", "qat_epochs", "qat_lr", "qat_batch_size", "train_data")


def refuse_qat_engine(
    onnx_path: str | os.PathLike[str], output: str | os.PathLike[str], calib_data: str | os.PathLike[str] | None
) -> None:
    """``trt --int8 --qat``: always a :class:`UserInputError` naming the two commands that do it.

    Why a refusal and not a fine-tune here: QAT fine-tunes the checkpoint's weights (and needs its
    training images), while ``trt`` starts from an ONNX model whose weights are frozen; the
    ``onnx ... --qat`` step writes both the fine-tuned checkpoint and the guarded INT8 ONNX, which
    ``trt --int8`` then builds as is, so the engine is exactly the model the guard judged.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    checkpoint = read_onnx_info(onnx_path).extra.get("source_name") or "CKPT.pt"
    int8_onnx = output.with_name(output.stem + ".int8.onnx")
    data = str(calib_data) if calib_data is not None else "DATA"
    raise UserInputError(
        f"--qat fine-tunes a checkpoint and trt starts from the ONNX model {str(onnx_path)!r}: run `dacovid-export onnx "
        f"{checkpoint} -o {int8_onnx} --precision int8 --calib-data {data} --qat` (the checkpoint {onnx_path.name} was "
        f"exported from), then `dacovid-export trt {int8_onnx} --int8 -o {output}`"
    )


def make_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    *,
    calib_data: str | os.PathLike[str] | None = None,
    calib_size: int | None = None,
    calib_method: str | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    min_agreement: float | None = None,
    validation_data: str | os.PathLike[str] | None = None,
    device: str = "cuda",
    log: Log | None = None,
    progress: bool = True,
) -> EngineBuildResult:
    """Build ``output`` from ``onnx_path``; an FP32 ONNX for an FP16/INT8 engine goes through the precision step first.

    ``calib_data``/``calib_size``/``calib_method``/``seed``/``cache_dir`` and the INT8
    accuracy guard's ``min_agreement``/``validation_data`` go to the precision step
    (``None`` leaves that step's own default). Errors as :func:`build_engine`.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    if not isinstance(config, EngineBuildConfig):
        raise UserInputError(f"config must be an EngineBuildConfig, got {type(config).__name__}")
    check_engine_paths(onnx_path, output)
    calib_dir = _check_calib_dir(calib_data)
    check_outputs(inputs=[onnx_path, calib_dir], files={"output": output, "--timing-cache": config.timing_cache})
    info = read_onnx_info(onnx_path)
    source = _precision_target(info, onnx_path, output, config, calib_dir)
    options = {
        "calib_size": calib_size,
        "calib_method": calib_method,
        "seed": seed or None,
        "cache_dir": cache_dir,
        "min_agreement": min_agreement,
        "validation_data": validation_data,
    }
    given = {name: value for name, value in options.items() if value is not None}
    if source is None:
        if given:
            # as 'onnx --precision fp16 --min-agreement' is refused: an option no step of this run uses is a mistake
            raise UserInputError(
                f"{', '.join(given)} given, but {str(onnx_path)!r} is already {info.precision}: no precision step runs "
                f"for an {config.precision} engine from it, so nothing would use {'it' if len(given) == 1 else 'them'}; "
                f"drop {'it' if len(given) == 1 else 'them'}"
            )
        return build_engine(onnx_path, output, config, device=device, log=log, progress=progress)

    # every option of the precision step is checked (and refused where it does not apply) before any work
    precision = PrecisionConfig(precision=config.precision, calib_data=calib_dir, **given)  # type: ignore[arg-type]
    prepare_build(config, device)  # a missing library or GPU is found before minutes of calibration
    if log is not None:
        log(f"precision ... {onnx_path.name} -> {source.name} ({config.precision})")
    started = time.perf_counter()
    convert_precision(
        onnx_path,
        source,
        precision=config.precision,  # type: ignore[arg-type]
        progress=progress,
        # QAT starts from a checkpoint, not from this ONNX model: its options are never set here
        **{k: v for k, v in precision.to_dict().items() if k != "precision" and k not in _QAT_OPTIONS},
    )
    seconds = time.perf_counter() - started
    if log is not None:
        log(f"precision: {seconds:.2f} s")
    made = read_onnx_info(source)
    if made.precision != config.precision:
        raise EngineBuildError(
            f"the precision step wrote {str(source)!r} marked {made.precision!r}, not {config.precision!r}; "
            "this is a bug in the precision step"
        )
    result = build_engine(
        source, output, config, device=device, log=log, progress=progress, converted_from=onnx_path, precision_seconds=seconds
    )
    return dataclasses.replace(result, onnx_path=source)


def _check_calib_dir(calib_data: str | os.PathLike[str] | None) -> Path | None:
    if calib_data is None:
        return None
    return check_image_source(calib_data, "calibration data", "its training part")


def _precision_target(
    info: ArtifactInfo, onnx_path: Path, output: Path, config: EngineBuildConfig, calib_dir: Path | None
) -> Path | None:
    """Where the precision step writes the ONNX to build, or ``None`` when ``onnx_path`` already has the precision."""
    refuse_bf16_source(info.precision, onnx_path)
    have, want = info.precision, config.precision
    if have == want:
        if calib_dir is not None:
            raise UserInputError(
                f"--calib-data is only used to quantize an FP32 ONNX, but {str(onnx_path)!r} is already {have}: drop --calib-data"
            )
        return None
    if have != "fp32":
        raise UserInputError(
            f"{str(onnx_path)!r} is a {have} ONNX and can only become a {have} engine (use --{have}); "
            f"give the FP32 ONNX to build a {want} engine"
        )
    if want == "int8" and calib_dir is None:
        raise UserInputError(
            f"an INT8 engine from the FP32 ONNX {str(onnx_path)!r} needs calibration images: add --calib-data DIR "
            "(a class-per-folder tree of training images)"
        )
    target = precision_onnx_path(output, want)
    if target.resolve() == onnx_path.resolve():
        raise UserInputError(
            f"the {want} ONNX would be written to {str(target)!r}, which is the input model: choose another -o name"
        )
    return target
