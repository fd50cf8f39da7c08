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
from dacovid_export.calibration.precisions import precision_of
from dacovid_export.core.errors import EngineBuildError, UserInputError
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.core.validate import as_path
from dacovid_export.engine.build import build_engine, prepare_build
from dacovid_export.engine.config import (
    EngineBuildConfig,
    EngineBuildResult,
    check_engine_paths,
    precision_onnx_path,
    refuse_engineless_source,
)

__all__ = ["engine_precision_config", "make_engine", "refuse_qat_engine"]

_log = get_logger("engine")


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


def engine_precision_config(
    onnx_path: str | os.PathLike[str],
    precision: str,
    *,
    calib_data: str | os.PathLike[str] | None = None,
    min_agreement: float | None = None,
    validation_data: str | os.PathLike[str] | None = None,
    training_data: str | os.PathLike[str] | None = None,
) -> PrecisionConfig | None:
    """The precision step's options for ``trt --<precision> ONNX``, or ``None`` when none were given.

    An option no step of the run would use (the ONNX already has the engine's precision) is
    refused before it is judged, as ``onnx --precision fp16 --min-agreement`` is: the error
    says to drop it, not how to fix a value nothing reads. Otherwise the options become one
    :class:`PrecisionConfig`, validated here, that :func:`make_engine` takes as is.
    """
    options = {
        "calib_data": calib_data, "min_agreement": min_agreement, "validation_data": validation_data,
        "training_data": training_data,
    }
    given = tuple(name for name, value in options.items() if value is not None)
    if not given:
        return None
    onnx_path = Path(onnx_path)
    have = read_onnx_info(onnx_path).precision
    if have == precision:
        _refuse_unused_options(given, onnx_path, have, precision)
    if have != "fp32":
        return None  # make_engine refuses this pair of precisions with its own message
    return PrecisionConfig(
        precision=precision,
        calib_data=as_path(calib_data),
        min_agreement=min_agreement,
        validation_data=as_path(validation_data),
        training_data=as_path(training_data),
    )


def make_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    precision: PrecisionConfig | None = None,
    *,
    device: str = "cuda",
    log_steps: bool = False,
    progress: bool = True,
) -> EngineBuildResult:
    """Build ``output`` from ``onnx_path``; an FP32 ONNX for an FP16/INT8 engine goes through the precision step first.

    ``precision``: that step's options (calibration images, the accuracy guard), of the
    engine's precision; ``None`` leaves the step's defaults (an INT8 engine from an FP32 ONNX
    needs ``calib_data``). ``log_steps`` and ``progress`` as :func:`build_engine` (``log_steps`` also
    says the precision step's start and seconds). Errors as :func:`build_engine`.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    if not isinstance(config, EngineBuildConfig):
        raise UserInputError(f"config must be an EngineBuildConfig, got {type(config).__name__}")
    if precision is not None and not isinstance(precision, PrecisionConfig):
        raise UserInputError(f"precision must be a PrecisionConfig or None, got {type(precision).__name__}")
    if precision is not None and precision.precision != config.precision:
        raise UserInputError(
            f"precision options for {precision.precision!r} given for an {config.precision} engine: make them for "
            f"{config.precision!r}"
        )
    calib_dir = precision.calib_data if precision is not None else None
    if precision is not None and precision.qat:
        refuse_qat_engine(onnx_path, output, calib_dir)
    check_engine_paths(onnx_path, output)
    check_outputs(inputs=[onnx_path, calib_dir], files={"output": output, "--timing-cache": config.timing_cache})
    info = read_onnx_info(onnx_path)
    source = _precision_target(info, onnx_path, output, config, calib_dir)
    if source is None:
        if precision is not None and precision.given():
            _refuse_unused_options(precision.given(), onnx_path, info.precision, config.precision)
        return build_engine(onnx_path, output, config, device=device, log_steps=log_steps, progress=progress)

    step = precision if precision is not None else PrecisionConfig(precision=config.precision)
    prepare_build(config, device)  # a missing library or GPU is found before minutes of calibration
    info_if(_log, f"precision ... {onnx_path.name} -> {source.name} ({config.precision})", log_steps)
    started = time.perf_counter()
    convert_precision(onnx_path, source, step, progress=progress)
    seconds = time.perf_counter() - started
    info_if(_log, f"precision: {seconds:.2f} s", log_steps)
    made = read_onnx_info(source)
    if made.precision != config.precision:
        raise EngineBuildError(
            f"the precision step wrote {str(source)!r} marked {made.precision!r}, not {config.precision!r}; "
            "this is a bug in the precision step"
        )
    result = build_engine(
        source, output, config, device=device, log_steps=log_steps, progress=progress, converted_from=onnx_path,
        precision_seconds=seconds,
    )
    return dataclasses.replace(result, onnx_path=source)


def _refuse_unused_options(given: tuple[str, ...], onnx_path: Path, have: str, want: str) -> None:
    """As 'onnx --precision fp16 --min-agreement' is refused: an option no step of this run uses is a mistake."""
    if "calib_data" in given:
        raise UserInputError(_CALIB_UNUSED.format(path=str(onnx_path), have=have))
    them = "it" if len(given) == 1 else "them"
    raise UserInputError(
        f"{', '.join(given)} given, but {str(onnx_path)!r} is already {have}: no precision step runs "
        f"for an {want} engine from it, so nothing would use {them}; drop {them}"
    )


_CALIB_UNUSED = "--calib-data is only used to quantize an FP32 ONNX, but {path!r} is already {have}: drop --calib-data"


def _precision_target(
    info: ArtifactInfo, onnx_path: Path, output: Path, config: EngineBuildConfig, calib_dir: Path | None
) -> Path | None:
    """Where the precision step writes the ONNX to build, or ``None`` when ``onnx_path`` already has the precision."""
    refuse_engineless_source(info.precision, onnx_path)
    have, want = info.precision, config.precision
    if have == want:
        if calib_dir is not None:
            raise UserInputError(_CALIB_UNUSED.format(path=str(onnx_path), have=have))
        return None
    if have != "fp32":
        raise UserInputError(
            f"{str(onnx_path)!r} is a {have} ONNX and can only become a {have} engine (use --{have}); "
            f"give the FP32 ONNX to build a {want} engine"
        )
    if precision_of(want).needs_images and calib_dir is None:
        raise UserInputError(
            f"a {want.upper()} engine from the FP32 ONNX {str(onnx_path)!r} needs calibration images: add --calib-data DIR "
            "(a class-per-folder tree of training images)"
        )
    target = precision_onnx_path(output, want)
    if target.resolve() == onnx_path.resolve():
        raise UserInputError(
            f"the {want} ONNX would be written to {str(target)!r}, which is the input model: choose another -o name"
        )
    return target
