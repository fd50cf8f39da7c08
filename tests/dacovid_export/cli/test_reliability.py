"""Every fault is one clear line and nothing is ever lost, class by class, through the CLI where users meet it.

Each case asserts the exit code, exactly one ``error:`` line on stderr, no traceback,
inputs byte-identical afterwards and nothing left behind. Read-only folders: we may
run as root, which ignores file modes, so they are a read-only bind mount in a private
mount namespace (``unshare -m``), a plain ``chmod`` for other users, and ``/proc``
(read-only even for root) everywhere.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.cli.bench_cmd import bench
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.synthetic import make_synthetic_dataset
from tests.helpers.cli import assert_one_line_error, invoke, one_error_line
from tests.helpers.engines import write_placeholder_engine

UNWRITABLE = "/proc/dacovid-no-such-dir/out"  # /proc takes no new files, not even from root


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (hidden ones too) with its content hash: 'nothing lost, nothing left'."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, make_toy_onnx, tiny_checkpoint: Path) -> Path:
    """A folder with a toy ONNX model and a copy of the tiny checkpoint."""
    folder = tmp_path_factory.mktemp("reliability")
    make_toy_onnx(folder / "toy.onnx")
    shutil.copyfile(tiny_checkpoint, folder / "tiny.pt")
    return folder


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 14000 x 14000 PNG: 196 megapixels, over Pillow's limit, a few tens of kB on disk."""
    path = tmp_path_factory.mktemp("bomb") / "zz_bomb.png"
    Image.new("1", (14000, 14000)).save(path)
    assert path.stat().st_size < 1_000_000
    return path


@pytest.fixture(scope="module")
def images_with_bomb(tmp_path_factory: pytest.TempPathFactory, bomb: Path) -> Path:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("bombset") / "d", per_class=4, size=64, seed=0)
    shutil.copyfile(bomb, root / "covid" / bomb.name)
    return root


# --------------------------------------------------------------------- 1. data loss


@pytest.mark.parametrize(
    "case",
    ["bench --json model", "bench --json hardlink", "bench --json --csv same", "check --json checkpoint",
     "check --json model", "bench --json engine sidecar", "trt --timing-cache model", "onnx -o symlink to checkpoint", "triton repo holds the model",
     "triton --overwrite with the model in the repo"],
)
def test_an_output_never_overwrites_an_input(work: Path, tmp_path: Path, case: str) -> None:
    folder = tmp_path / "w"
    shutil.copytree(work, folder)
    toy, ckpt = folder / "toy.onnx", folder / "tiny.pt"
    if case == "bench --json model":
        args, command, fragment = [toy, "--json", toy], bench, "is an input"
    elif case == "bench --json hardlink":
        os.link(toy, folder / "alias.json")
        args, command, fragment = [toy, "--json", folder / "alias.json"], bench, "is an input"
    elif case == "bench --json --csv same":
        args, command, fragment = [toy, "--json", folder / "r.txt", "--csv", folder / "r.txt"], bench, "same file"
    elif case == "check --json checkpoint":
        args, command, fragment = ["check", toy, "--checkpoint", ckpt, "--json", ckpt], cli, "is an input"
    elif case == "check --json model":
        args, command, fragment = ["check", toy, "--checkpoint", ckpt, "--json", f"{folder}/./toy.onnx"], cli, "is an input"
    elif case == "bench --json engine sidecar":
        engine = write_placeholder_engine(folder)
        args, command, fragment = [engine, "--json", f"{engine}.json"], bench, "is an input"
    elif case == "trt --timing-cache model":
        args, command, fragment = ["trt", toy, "--fp32", "-o", folder / "m.engine", "--timing-cache", toy], cli, "is an input"
    elif case == "onnx -o symlink to checkpoint":
        (folder / "link.onnx").symlink_to(ckpt)
        args, command, fragment = ["onnx", ckpt, "-o", folder / "link.onnx"], cli, "is an input"
    elif case == "triton --overwrite with the model in the repo":
        model_dir = folder / "repo" / "dacovid" / "1"
        model_dir.mkdir(parents=True)
        shutil.move(toy, model_dir / "other.onnx")
        assert invoke(cli, ["triton", model_dir / "other.onnx", "--repo", folder / "repo"]).exit_code == 0
        result = invoke(cli, ["triton", model_dir / "other.onnx", "--repo", folder / "repo", "--overwrite"])
        assert result.exit_code == 0, result.output
        assert (model_dir / "other.onnx").read_bytes() == (work / "toy.onnx").read_bytes()
        return
    else:
        # where the repository's classifier file goes: the model may not be overwritten by its own copy
        model_dir = folder / "repo" / "dacovid_classifier" / "1"
        model_dir.mkdir(parents=True)
        shutil.move(toy, model_dir / "model.onnx")
        args, command, fragment = ["triton", model_dir / "model.onnx", "--repo", folder / "repo", "--overwrite"], cli, "is an input"
    before = _snapshot(folder)
    assert_one_line_error(invoke(command, args), fragment)
    assert _snapshot(folder) == before


# --------------------------------------------------------------------- 2. unwritable outputs


@pytest.mark.parametrize(
    "command",
    ["onnx", "check", "bench", "triton", "pipeline", "train", "trt"],
)
def test_unwritable_output_is_one_line_before_any_work(work: Path, tmp_path: Path, command: str) -> None:
    folder = tmp_path / "w"
    shutil.copytree(work, folder)
    toy, ckpt = folder / "toy.onnx", folder / "tiny.pt"
    args = {
        "onnx": ["onnx", ckpt, "-o", f"{UNWRITABLE}/m.onnx"],
        "check": ["check", toy, "--checkpoint", ckpt, "--json", f"{UNWRITABLE}/r.json"],
        "bench": ["bench", toy, "--json", f"{UNWRITABLE}/r.json"],
        "triton": ["triton", toy, "--repo", UNWRITABLE],
        "pipeline": ["pipeline", "--checkpoint", ckpt, "--out", UNWRITABLE, "--no-progress"],
        "train": ["train", folder, "--out", UNWRITABLE, "--no-progress"],
        "trt": ["trt", toy, "--fp32", "-o", f"{UNWRITABLE}/m.engine"],
    }[command]
    before = _snapshot(folder)
    assert_one_line_error(invoke(cli, args), "cannot write", UNWRITABLE, "/proc")
    assert _snapshot(folder) == before


def _readonly_prefix(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only (or a skip saying why none works here)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    if unshare:
        script = 'mount -o bind,ro "$0" "$0" && shift && exec "$@"'
        probe = subprocess.run([unshare, "-m", "sh", "-c", script, str(folder), "true", "true"], capture_output=True)
        if probe.returncode == 0:
            return [unshare, "-m", "sh", "-c", script, str(folder), "placeholder"]
    pytest.skip("running as root without mount namespaces: no read-only folder can be made (the /proc cases cover it)")


@pytest.mark.parametrize("command", ["bench"])
def test_read_only_folder(work: Path, tmp_path: Path, command: str) -> None:
    folder = tmp_path / "w"
    shutil.copytree(work, folder)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    prefix = _readonly_prefix(readonly)
    args = {
        "bench": ["bench", folder / "toy.onnx", "--json", readonly / "sub" / "r.json"],
        "onnx": ["onnx", folder / "tiny.pt", "-o", readonly / "m.onnx"],
    }[command]
    before = _snapshot(folder)
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "dacovid_export", *map(str, args)],
                              capture_output=True, text=True, timeout=120)
    finally:
        readonly.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write"), proc.stderr
    assert str(readonly) in lines[0] and ("read-only" in lines[0] or "permission" in lines[0]), lines[0]
    assert list(readonly.iterdir()) == [] and _snapshot(folder) == before


def test_a_write_that_fails_midway_is_one_line(tmp_path: Path) -> None:
    from dacovid_export.calibration.cache import CalibrationCache
    from dacovid_export.core.errors import OutputNotWritableError
    from dacovid_export.core.fileio import atomic_write_text

    with pytest.raises(OutputNotWritableError, match=r"cannot write '/proc/.*'") as caught:
        atomic_write_text("/proc/dacovid-test.txt", "x")
    assert isinstance(caught.value, UserInputError) and isinstance(caught.value, OSError)
    # an optional write (the calibration cache) still only costs a recalibration
    assert CalibrationCache(UNWRITABLE).store("key", b"model", {}) is None


# --------------------------------------------------------------------- 3. decompression bombs


def test_bomb_in_check_is_an_unreadable_image(work: Path, images_with_bomb: Path) -> None:
    before = _snapshot(images_with_bomb)
    result = invoke(cli, ["check", work / "toy.onnx", "--checkpoint", work / "tiny.pt", "--images", images_with_bomb,
                      "--no-progress"])
    assert_one_line_error(result, "zz_bomb.png", "too large to decode")
    assert _snapshot(images_with_bomb) == before


def test_bomb_in_train_is_skipped_or_named(images_with_bomb: Path, tmp_path: Path) -> None:
    from dacovid_export.train.data import verify_images

    files = {p.name: sorted(p.iterdir()) for p in images_with_bomb.iterdir()}
    readable, skipped = verify_images(files, unreadable="skip")
    assert len(skipped) == 1 and "zz_bomb.png" in skipped[0] and "too large" in skipped[0]
    assert all("zz_bomb" not in p.name for paths in readable.values() for p in paths)
    tiny = ["--image-size", "64", "--batch-size", "4", "--reduction-channels", "16", "--reduction-kernel", "1",
            "--workers", "0", "--no-progress"]
    result = invoke(cli, ["train", images_with_bomb, "--out", tmp_path / "run", "--unreadable", "error", *tiny])
    assert_one_line_error(result, "zz_bomb.png", "too large to decode")
    assert not (tmp_path / "run").exists()


def test_bomb_in_calibration_is_named(images_with_bomb: Path) -> None:
    from dacovid_export.calibration.data import load_calibration_set
    from dacovid_export.data.preprocessing import Preprocessing

    with pytest.raises(UserInputError, match="zz_bomb.png.*(too large|decompression bomb)"):
        load_calibration_set(images_with_bomb, Preprocessing(image_size=64), size=13)  # every image, the bomb too


def test_bomb_and_bad_inputs_in_the_runtime(work: Path, bomb: Path, images_with_bomb: Path) -> None:
    from dacovid_export.serve.predictor import ImageFailure, Prediction, Predictor

    good = sorted((images_with_bomb / "normal").iterdir())[0]
    lab = Image.new("RGB", (40, 30), (90, 120, 30)).convert("LAB")
    with Predictor.from_path(work / "toy.onnx", device="cpu", batch_size=2) as predictor:
        for bad, fragment in [(bomb, "too large"), (np.zeros((0, 0), np.uint8), "empty"),
                              (Image.new("L", (0, 0)), "empty"), (object(), "unsupported image input")]:
            with pytest.raises(UserInputError, match=fragment):
                predictor.predict([good, bad])
        assert predictor.predict_one(lab).class_name in predictor.class_names  # documented "any mode"
        results = predictor.predict([good, bomb, lab, np.zeros((0, 3)), good], errors="return")
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert isinstance(results[0], Prediction) and results[0].source == str(good)
    failure = results[1]
    assert isinstance(failure, ImageFailure) and failure.index == 1 and failure.source == str(bomb)
    assert "too large" in failure.reason and results[3].index == 3
    assert results[0].probabilities == results[4].probabilities


# --------------------------------------------------------------------- 4. absurd sizes


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["bench", "{toy}", "--batch", "100000"], "from 1 to 1024"),
        (["trt", "{toy}", "--fp32", "-o", "{out}/m.engine", "--max-batch", "4096"], "max_batch=4096: give an integer from 1 to 1024"),
        (["onnx", "{ckpt}", "-o", "{out}/m.onnx", "--max-batch", "4096"], "max_batch=4096: give an integer from 1 to 1024"),
        (["pipeline", "--out", "{out}", "--image-size", "100000", "--no-progress"], "from 32 to 1024"),
        (["train", "{data}", "--out", "{out}", "--image-size", "100000", "--no-progress"], "from 32 to 1024"),
        (["train", "{data}", "--out", "{out}", "--batch-size", "100000", "--no-progress"], "from 2 to 1024"),
    ],
)
def test_absurd_sizes_are_refused_with_the_bounds(work: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    values = {"toy": work / "toy.onnx", "out": tmp_path / "out", "data": work, "ckpt": work / "tiny.pt"}
    assert_one_line_error(invoke(cli, [a.format(**values) for a in args]), fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "exc", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")]
)
def test_an_allocation_failure_is_one_line(exc: BaseException) -> None:
    import click

    from dacovid_export.cli.common import handle_errors

    @click.command()
    @handle_errors
    def boom() -> None:
        raise exc

    assert_one_line_error(invoke(boom), "out of memory", "smaller")


# --------------------------------------------------------------------- 6. interrupted runs


def test_scratch_of_a_killed_export_is_marked_refused_and_swept(work: Path, tmp_path: Path) -> None:
    from dacovid_export.core.fileio import (
        SCRATCH_MARKER,
        atomic_write_bytes,
        scratch_dir,
    )
    from dacovid_export.serve.predictor import Predictor

    out = tmp_path / "out" / "m8.onnx"
    proc = subprocess.Popen([sys.executable, "-m", "dacovid_export", "onnx", str(work / "tiny.pt"), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.parent.glob(f".{out.name}.scratch-*/{SCRATCH_MARKER}")):
            assert proc.poll() is None and time.monotonic() < deadline, "the export never made its scratch folder"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (scratch,) = out.parent.glob(f".{out.name}.scratch-*")
    # what a later kill would leave: a complete but unverified model in the scratch folder
    leftover = scratch / "model.fp32.onnx"
    shutil.copyfile(work / "toy.onnx", leftover)
    assert not out.exists()
    with pytest.raises(UserInputError, match="scratch of an interrupted"):
        Predictor.from_path(leftover, device="cpu")
    assert_one_line_error(invoke(cli, ["check", leftover, "--checkpoint", work / "tiny.pt"]), "scratch of an interrupted")
    with scratch_dir(out) as fresh:  # the next run to the same output
        assert not scratch.exists() and fresh.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == []

    # the same for the temporary file of a single atomic write killed midway
    partial = out.parent / f".{out.name}.partial-{proc.pid}-k1ll3d.tmp.onnx"
    shutil.copyfile(work / "toy.onnx", partial)
    with pytest.raises(UserInputError, match="unfinished dacovid-export write"):
        Predictor.from_path(partial, device="cpu")
    atomic_write_bytes(out, b"next run's output")
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


# --------------------------------------------------------------------- 7. trust


def test_triton_refuses_an_engine_whose_bytes_do_not_match_its_sidecar(tmp_path: Path) -> None:
    engine = write_placeholder_engine(tmp_path, flip_byte=True)
    assert_one_line_error(invoke(cli, ["triton", engine, "--repo", tmp_path / "repo"]), "does not match the sha256", "sidecar")
    assert not (tmp_path / "repo").exists()
    ok = tmp_path / "ok"
    ok.mkdir()
    good = write_placeholder_engine(ok)
    assert invoke(cli, ["triton", good, "--repo", tmp_path / "repo"]).exit_code == 0


def test_check_refuses_self_contradicting_metadata(work: Path, tmp_path: Path) -> None:
    import onnx

    from dacovid_export.artifacts.onnx_metadata import write_metadata

    model = onnx.load(str(work / "toy.onnx"))
    write_metadata(model, {"mean": [0.5, 0.5, 0.5], "std": [0.229, 0.224, 0.225], "image_size": "64"})
    onnx.save(model, str(tmp_path / "liar.onnx"))
    assert_one_line_error(invoke(cli, ["check", tmp_path / "liar.onnx", "--checkpoint", work / "tiny.pt"]),
                     "contradicts itself", "mean")


# --------------------------------------------------------------------- 8. smaller


@pytest.mark.parametrize("args", [["onnx"], ["nope"], ["check", "m.onnx"], ["bench", "--batch"], ["onnx", "--precision", "int4", "x.pt", "-o", "y.onnx"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    command, rest = (bench, args[1:]) if args[0] == "bench" else (cli, args)
    assert_one_line_error(invoke(command, rest))


def test_usage_error_via_python_m(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dacovid_export", "check", "--bogus"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--bogus" in proc.stderr, proc.stderr


def test_too_small_calibration_set_is_found_before_the_export(work: Path, tmp_path: Path) -> None:
    calib = make_synthetic_dataset(tmp_path / "calib", per_class=1, size=64, seed=0)
    out = tmp_path / "new" / "m8.onnx"
    result = invoke(cli, ["onnx", work / "tiny.pt", "-o", out, "--precision", "int8", "--calib-data", calib])
    assert_one_line_error(result, "has 3 image(s); at least 8")
    assert not out.parent.exists()  # no empty output folder either


def test_calibration_set_too_small_to_hold_out_validation_is_found_before_the_export(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """9 images pass the calibration minimum, but the INT8 guard's held-out quarter would leave too few."""
    import dacovid_export.model.checkpoint as checkpoint

    def no_export(*_args, **_kwargs):
        raise AssertionError("the checkpoint was loaded: the image set was not checked first")

    monkeypatch.setattr(checkpoint, "load_checkpoint", no_export)
    calib = make_synthetic_dataset(tmp_path / "calib", per_class=3, size=64, seed=0)
    out = tmp_path / "new" / "m8.onnx"
    result = invoke(cli, ["onnx", work / "tiny.pt", "-o", out, "--precision", "int8", "--calib-data", calib])
    assert_one_line_error(result, "has 9 image(s): too few to hold out", "--validation-data")
    assert not out.parent.exists()


def test_a_checkpoint_that_would_run_code_gets_the_friendly_message(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "dacovid-checkpoint", "payload": Evil()}, protocol=2))
    assert_one_line_error(invoke(cli, ["check", work / "toy.onnx", "--checkpoint", evil]), "holds Python objects")
    assert not marker.exists()


def test_check_refuses_the_checkpoint_as_its_own_model(work: Path) -> None:
    assert_one_line_error(invoke(cli, ["check", f"{work}/./tiny.pt", "--checkpoint", work / "tiny.pt"]), "checkpoint itself")


def test_bad_input_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    from dacovid_export.core.fileio import atomic_path

    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke(cli, ["pipeline", "--out", tmp_path / "out", "--images", tmp_path / "empty", "--no-progress"]),
                     "no class subfolders")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b" / "r.json"):
            raise RuntimeError("the writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# --------------------------------------------------------------------- 9. round three: what a new user tried


def _no_export(*_args, **_kwargs):
    raise AssertionError("the checkpoint was loaded: the inputs were not checked first")


@pytest.mark.parametrize("spelling", ["absolute path", "symlink", "split.json", "copy"])
def test_validation_images_are_other_files_than_the_calibration_images(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    import json

    import dacovid_export.model.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_checkpoint", _no_export)
    monkeypatch.chdir(tmp_path)
    calib = make_synthetic_dataset(tmp_path / "data" / "calib", per_class=4, size=64, seed=1)
    how = "the same file"
    if spelling == "absolute path":
        validation = calib.resolve()
    elif spelling == "symlink":
        validation = tmp_path / "data" / "val"
        validation.symlink_to(calib, target_is_directory=True)
    elif spelling == "split.json":  # a run's held-out images that are calibration images too
        validation = tmp_path / "data" / "split.json"
        files = {p.name: [str(f.resolve()) for f in sorted(p.iterdir())] for p in sorted(calib.iterdir())}
        validation.write_text(json.dumps({"format": "dacovid-split", "data_dir": str(tmp_path), "train": files, "val": files}))
    else:
        validation = tmp_path / "data" / "copy"
        shutil.copytree(calib, validation)
        how = "a byte-for-byte copy"
    out = tmp_path / "new" / "m8.onnx"
    before = _snapshot(tmp_path)
    result = invoke(cli, ["onnx", work / "tiny.pt", "-o", out, "--precision", "int8", "--calib-data", "data/calib",
                          "--validation-data", validation])
    assert_one_line_error(result, "is also a calibration image", how, "--validation-data")
    assert _snapshot(tmp_path) == before and not out.parent.exists()


@pytest.mark.parametrize("case", ["fp16 model, guard options", "fp32 model to fp16, guard option", "fp32 model to int8, nan"])
def test_trt_refuses_options_that_no_step_of_the_run_uses(work: Path, tmp_path: Path, make_toy_onnx, case: str) -> None:
    folder = tmp_path / "w"
    shutil.copytree(work, folder)
    m16 = make_toy_onnx(folder / "m16.onnx", precision="fp16")
    out = tmp_path / "out" / "x.engine"
    args, fragments = {
        "fp16 model, guard options": (
            [m16, "--fp16", "--min-agreement", "nan", "--validation-data", "no/such/dir", "--runtime", "tensorrt-rtx"],
            ["min_agreement, validation_data given", "already fp16", "drop them"]),
        "fp32 model to fp16, guard option": (
            # the FP16 guard measures on images: with none given, its target is an option nothing would use
            [folder / "toy.onnx", "--fp16", "--min-agreement", "0.9"], ["min_agreement=0.9 given for fp16 without images", "--calib-data"]),
        "fp32 model to int8, nan": (
            [folder / "toy.onnx", "--int8", "--calib-data", folder, "--min-agreement", "nan"], ["min_agreement=nan"]),
    }[case]
    before = _snapshot(folder)
    assert_one_line_error(invoke(cli, ["trt", *args, "-o", out]), *fragments)
    assert _snapshot(folder) == before and not out.parent.exists()


def test_no_entry_point_reads_a_killed_runs_scratch(work: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    from dacovid_export.artifacts.onnx_metadata import read_onnx_info
    from dacovid_export.core.fileio import SCRATCH_MARKER, scratch_dir
    from dacovid_export.model.checkpoint import read_checkpoint

    dead = subprocess.Popen(["true"])
    dead.wait()
    scratch = tmp_path / ".m8.onnx.scratch-k1ll3d"
    scratch.mkdir()
    (scratch / SCRATCH_MARKER).write_text(f"pid {dead.pid}\n", encoding="utf-8")
    leftover = scratch / "model.int8.onnx"
    shutil.copyfile(work / "toy.onnx", leftover)
    shutil.copyfile(tiny_checkpoint, scratch / "model.pt")
    before = _snapshot(tmp_path)
    out = tmp_path / "out" / "m8.engine"
    assert_one_line_error(invoke(cli, ["trt", leftover, "--fp32", "-o", out]), "scratch of an interrupted", str(scratch))
    assert _snapshot(tmp_path) == before and not out.parent.exists()
    # the refusal is part of reading any artifact, not of one command
    with pytest.raises(UserInputError, match="scratch of an interrupted"):
        read_onnx_info(leftover)
    with pytest.raises(UserInputError, match="scratch of an interrupted"):
        read_checkpoint(scratch / "model.pt")
    # while a run's own scratch stays readable to it (a multi-step write checks what it made)
    with scratch_dir(tmp_path / "own.onnx") as own:
        shutil.copyfile(work / "toy.onnx", own / "model.onnx")
        assert read_onnx_info(own / "model.onnx").precision == "fp32"


@pytest.fixture(scope="module")
def strip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000,000 x 1 PNG: 3 Mpx (under Pillow's limit), 3 kB, ~0.8 TB once its shorter side is resized to 256."""
    path = tmp_path_factory.mktemp("strip") / "zz_strip.png"
    Image.new("L", (3_000_000, 1)).save(path)
    return path


def test_a_strip_is_an_unreadable_image_everywhere(work: Path, strip: Path, tmp_path: Path) -> None:
    from dacovid_export.serve.predictor import ImageFailure, Predictor
    from dacovid_export.train.data import verify_images

    images = make_synthetic_dataset(tmp_path / "d", per_class=2, size=64, seed=0)
    shutil.copyfile(strip, images / "covid" / strip.name)
    before = _snapshot(images)
    result = invoke(cli, ["check", work / "toy.onnx", "--checkpoint", work / "tiny.pt", "--images", images, "--no-progress"])
    assert_one_line_error(result, "zz_strip.png", "unreadable", "3000000x1 pixels", "at most 16:1")
    assert _snapshot(images) == before
    # dacovid-train --unreadable skip leaves it out
    files = {p.name: sorted(p.iterdir()) for p in images.iterdir()}
    readable, skipped = verify_images(files, unreadable="skip")
    assert len(skipped) == 1 and "zz_strip.png" in skipped[0] and "ratio" in skipped[0]
    assert sum(len(v) for v in readable.values()) == 6
    # the runtime returns a failure for it, for a file and for an array alike
    good = sorted((images / "normal").iterdir())[0]
    with Predictor.from_path(work / "toy.onnx", device="cpu") as predictor:
        results = predictor.predict([good, strip, np.zeros((1, 3000), np.uint8)], errors="return")
    assert [r.ok for r in results] == [True, False, False]
    assert all(isinstance(r, ImageFailure) and "at most 16:1" in r.reason for r in results[1:])


def test_a_qdq_graph_is_never_read_as_fp32(work: Path, tmp_path: Path) -> None:
    """A calibration-cache entry keeps the FP32 file's metadata; its Q/DQ graph must not pass for an FP32 model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(work / "toy.onnx"))
    for node in model.graph.node:
        node.input[:] = ["x_dq" if name == "input" else name for name in node.input]
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.01, np.float32), "q_scale"),
                                    numpy_helper.from_array(np.array(0, np.int8), "q_zero")])
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["input", "q_scale", "q_zero"], ["x_q"]))
    model.graph.node.insert(1, helper.make_node("DequantizeLinear", ["x_q", "q_scale", "q_zero"], ["x_dq"]))
    assert TensorProto.INT8  # the zero point's type makes it signed INT8, as the project's Q/DQ
    entry = tmp_path / "0123abcd.onnx"
    onnx.save(model, str(entry))
    before = _snapshot(tmp_path)
    assert_one_line_error(invoke(cli, ["check", entry, "--checkpoint", work / "tiny.pt"]), "says it is fp32", "QuantizeLinear")
    assert _snapshot(tmp_path) == before


def test_image_sets_are_checked_before_the_export(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dacovid_export.model.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_checkpoint", _no_export)
    calib = make_synthetic_dataset(tmp_path / "calib", per_class=4, size=64, seed=1)
    out = tmp_path / "new" / "m8.onnx"
    base = ["onnx", work / "tiny.pt", "-o", out, "--precision", "int8", "--calib-data", calib]
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke(cli, [*base, "--validation-data", tmp_path / "empty"]), "validation folder", "holds no images")
    validation = make_synthetic_dataset(tmp_path / "val", per_class=2, size=64, seed=2)
    (calib / "covid" / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    before = _snapshot(tmp_path)
    assert_one_line_error(invoke(cli, [*base, "--validation-data", validation]), "zz_bad.png", "unreadable")
    # FP16 is guarded too: a 13-image folder is too small to split, so it gets separate validation images here
    assert_one_line_error(invoke(cli, ["onnx", work / "tiny.pt", "-o", out, "--precision", "fp16", "--calib-data", calib,
                                       "--validation-data", validation]),
                          "zz_bad.png", "unreadable")
    assert _snapshot(tmp_path) == before and not out.parent.exists()


# --------------------------------------------------------------------- round four


def _limited_run(args: list[str], cwd: Path, gib: int = 6) -> subprocess.CompletedProcess:
    """``args`` in a child whose address space is capped at ``gib`` GiB: a runaway allocation fails there, not here."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))

    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120, preexec_fn=cap)


def test_an_artifacts_absurd_resize_size_is_refused_where_it_is_read(work: Path, tmp_path: Path) -> None:
    # an ONNX copy whose metadata asks for a 1,000,000-pixel shorter side: on main bf16-guard was OOM-killed at 23 GB,
    # Predictor raised a bare MemoryError from Pillow, and `triton` wrote a repository with it
    import json

    import onnx

    from dacovid_export.artifacts.onnx_metadata import metadata_of, write_metadata

    model = onnx.load(str(work / "toy.onnx"))
    preprocessing = json.loads(metadata_of(model)["preprocessing"])
    write_metadata(model, {"preprocessing": {**preprocessing, "resize_size": 1_000_000}})
    liar = tmp_path / "huge.onnx"
    onnx.save(model, str(liar))
    images = tmp_path / "images" / "normal"
    images.mkdir(parents=True)
    Image.new("L", (80, 64), 128).save(images / "a.png")
    cli_cases = [
        ["bf16-guard", liar, "--validation-data", tmp_path / "images"],
        ["triton", liar, "--repo", tmp_path / "repo"],
    ]
    for args in cli_cases:
        proc = _limited_run([sys.executable, "-m", "dacovid_export", *map(str, args)], tmp_path)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr[-2000:])
        one_error_line(proc.stderr, "resize_size=1000000", "2048")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").rglob("config.pbtxt"))
    script = (
        "import sys\n"
        "from dacovid_export.core.errors import UserInputError\n"
        "from dacovid_export.serve.predictor import Predictor\n"
        "try:\n"
        f"    Predictor.from_path({str(liar)!r}).predict_one({str(images / 'a.png')!r})\n"
        "except UserInputError as exc:\n"
        "    print('refused:', exc)\n"
        "    sys.exit(3)\n"
    )
    proc = _limited_run([sys.executable, "-c", script], tmp_path)
    assert proc.returncode == 3 and "resize_size=1000000" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr[-2000:])


@pytest.mark.parametrize("case", ["epochs beyond the bound", "cuda without CUDA", "qat checkpoint over the input",
                                  "calibration size beyond the bound"])
def test_qat_options_checkable_without_work_are_refused_before_the_export(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    import dacovid_export.calibration.convert as convert
    import dacovid_export.model.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_checkpoint", _no_export)
    monkeypatch.setattr(convert, "export_onnx", _no_export)
    calib = make_synthetic_dataset(tmp_path / "calib", per_class=8, size=64, seed=1)
    source = work / "tiny.pt"
    out = tmp_path / "m8.onnx"
    extra: list[object] = ["--qat", "--train-data", calib]
    if case == "epochs beyond the bound":
        extra += ["--qat-epochs", "1000000000"]
        fragments = ["epochs=1000000000", "1 to 1000"]
    elif case == "cuda without CUDA":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra += ["--qat-device", "cuda"]
        fragments = ["CUDA is not available here", "--qat-device cpu"]
    elif case == "qat checkpoint over the input":
        # m8.onnx's fine-tuned checkpoint is m8.qat.pt: exporting from a checkpoint of that name would overwrite it
        source = tmp_path / "m8.qat.pt"
        shutil.copyfile(work / "tiny.pt", source)
        fragments = ["m8.qat.pt"]
    else:
        extra += ["--calib-size", "1000000000"]
        fragments = ["calib_size=1000000000", "100000"]
    before = _snapshot(tmp_path)
    result = invoke(cli, ["onnx", source, "-o", out, "--precision", "int8", "--calib-data", calib, *extra])
    assert_one_line_error(result, *fragments)
    assert _snapshot(tmp_path) == before


def test_a_pacs_export_of_extension_less_dicoms_is_images_by_content(work: Path, tmp_path: Path) -> None:
    # PACS exports name files IM000001 or by UID: on main `check --images`, training and --calib-data all said
    # "holds no images", though Predictor and the server read the very same files
    pytest.importorskip("pydicom")
    from dacovid_export.calibration.data import load_calibration_set
    from dacovid_export.data.image_folder import scan_class_folders
    from dacovid_export.data.preprocessing import Preprocessing
    from tests.helpers.dicom import write_dx

    pacs = tmp_path / "pacs"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("normal", "pneumonia", "covid")):
        (pacs / name).mkdir(parents=True)
        for i in range(3):  # 3 a class: 9 in all, over calibration's minimum of 8
            write_dx(pacs / name / f"IM{c * 10 + i:06d}", rng.integers(0, 4096, (72, 64), dtype=np.uint16), bits_stored=12)
        (pacs / name / "DICOMDIR-notes").write_text("not an image: exported by the PACS beside the images\n")
    result = invoke(cli, ["check", work / "toy.onnx", "--checkpoint", work / "tiny.pt", "--images", pacs])
    # the toy model is nothing like the checkpoint, so the verdict is FAIL (exit 1): what matters is that it ran on them
    assert result.exit_code == 1 and "9 labelled images from" in result.output, result.output
    said = [line for line in result.stderr.splitlines() if "taken as DICOM (by content)" in line]
    assert len(said) == 1 and said[0].startswith("images: 9 file(s)"), result.stderr
    classes = scan_class_folders(pacs)
    assert {k: len(v) for k, v in classes.items()} == {"normal": 3, "pneumonia": 3, "covid": 3}
    calibration = load_calibration_set(pacs, Preprocessing(image_size=64), size=8, seed=0)
    assert calibration.array.shape == (8, 3, 64, 64)


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("max", [1_000_000, 3, 64, 64], "profile max batch=1000000"),
    ("class_names", ["only"], "number of class_names=1"),
])
def test_an_edited_engine_sidecar_is_bounded_where_it_is_read(tmp_path: Path, field: str, value: object, fragment: str) -> None:
    import json

    engine = write_placeholder_engine(tmp_path)
    (sidecar,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    data = json.loads(sidecar.read_text())
    if field == "max":
        data["profile"]["max"] = value
    else:
        data[field] = value
    sidecar.write_text(json.dumps(data))
    assert_one_line_error(invoke(cli, ["triton", engine, "--repo", tmp_path / "repo"]), fragment)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").rglob("config.pbtxt"))
