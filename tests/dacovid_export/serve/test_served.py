"""A real Triton server on loopback, serving repositories the package writes: answers, batching, failures, lifetime.

Needs the serving environment named by ``DACOVID_SERVE_ENV`` (README's test command
makes it with ``dacovid-export serve-env``); skips with the reason otherwise. Every
server is stopped by PID in teardown, and its shared memory must be gone.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.backends.triton_endpoint import TritonEndpoint
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import pid_alive
from dacovid_export.serve.predictor import Predictor
from dacovid_export.serve.serve_env import SERVE_ENV_VAR, inspect_serve_env
from dacovid_export.serve.server import ServerConfig, ServerError, TritonServer
from dacovid_export.serve.triton import write_triton_repository
from tests.helpers.cli import assert_one_line_error, invoke


@pytest.fixture(scope="session")
def serve_env() -> Path:
    value = os.environ.get(SERVE_ENV_VAR)
    if not value:
        pytest.skip(f"{SERVE_ENV_VAR} is not set: make a serving environment with 'dacovid-export serve-env DIR'")
    inspect_serve_env(value)  # a broken environment is a failure, not a skip
    return Path(value)


def _free_ports() -> tuple[int, int]:
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()
    return ports  # type: ignore[return-value]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_fp32_onnx: Path, tiny_int8_onnx: Path) -> Path:
    root = tmp_path_factory.mktemp("served") / "repo"
    write_triton_repository(tiny_fp32_onnx, root, name="dacovid")  # python classifier, ONNX Runtime, CPU
    write_triton_repository(tiny_int8_onnx, root, name="dacovid8")  # python classifier, OpenVINO (INT8 on a CPU)
    return root


@pytest.fixture(scope="module")
def server(repo: Path, serve_env: Path) -> Iterator[TritonServer]:
    http_port, grpc_port = _free_ports()
    triton = TritonServer(ServerConfig(repo=repo, env=serve_env, http_port=http_port, grpc_port=grpc_port))
    triton.start()
    pid = triton.pid
    regions = triton.shm_regions()
    try:
        yield triton
    finally:
        triton.stop()
        assert pid is not None and not pid_alive(pid)
        assert regions and not any(r.exists() for r in regions)


@pytest.fixture(scope="module")
def images(synthetic_dir: Path) -> list[Path]:
    return sorted(synthetic_dir.rglob("*.png"))[::3]  # 8: the repositories' max batch


def _predict(model: Path, files: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with Predictor.from_path(model) as predictor:
        predictions = predictor.predict(files)
    probs = np.array([list(p.probabilities.values()) for p in predictions])
    return np.array([p.logits for p in predictions]), probs, [p.class_name for p in predictions]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_fp32_answers_equal_predictor(server: TritonServer, tiny_fp32_onnx: Path, images: list[Path], protocol: str) -> None:
    url = server.config.http_url if protocol == "http" else server.config.grpc_url
    _, probs, names = _predict(tiny_fp32_onnx, images)
    with TritonEndpoint(url) as endpoint:
        answer = endpoint.classify([p.read_bytes() for p in images])
        info = endpoint.info()
    assert list(answer.class_names) == names
    assert np.abs(answer.probabilities - probs).max() <= 1e-5
    assert info.precision == "fp32" and info.image_size == 64 and info.class_names == ("Normal", "Pneumonia", "COVID-19")


OUTPUTS = ("probabilities", "class_name", "logits")


def _client(server: TritonServer, protocol: str) -> tuple[object, object]:
    """A raw tritonclient (module, client) for ``protocol``: what a user's own client sends, output by output."""
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module  # type: ignore[no-redef]
    url = server.config.http_url if protocol == "http" else server.config.grpc_url
    return module, module.InferenceServerClient(url.split("://")[1])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_any_subset_of_the_outputs_is_answered(server: TritonServer, tiny_fp32_onnx: Path, images: list[Path],
                                               protocol: str) -> None:
    # on main only all three or logits + probabilities were answered; any other set: "[400] ... unexpected deadlock"
    import itertools

    logits, probs, names = _predict(tiny_fp32_onnx, images[:2])
    module, client = _client(server, protocol)
    try:
        for count in (1, 2, 3):
            for subset in itertools.combinations(OUTPUTS, count):
                tensor = module.InferInput("image", [2, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[p.read_bytes()] for p in images[:2]], dtype=object))
                reply = client.infer("dacovid", [tensor], outputs=[module.InferRequestedOutput(n) for n in subset])
                got = {n: reply.as_numpy(n) for n in OUTPUTS}
                assert all((got[n] is not None) == (n in subset) for n in OUTPUTS), (subset, got)
                if "probabilities" in subset:
                    assert np.abs(got["probabilities"] - probs).max() <= 1e-5, subset
                if "logits" in subset:
                    assert np.abs(got["logits"] - logits).max() <= 1e-4, subset
                if "class_name" in subset:
                    assert [v.decode() for v in got["class_name"].reshape(-1)] == names, subset
    finally:
        client.close()


def test_int8_served_with_openvino_equals_predictor(server: TritonServer, tiny_int8_onnx: Path, images: list[Path]) -> None:
    logits, probs, names = _predict(tiny_int8_onnx, images)  # auto on a CPU: OpenVINO
    with TritonEndpoint(server.config.grpc_url, model="dacovid8") as endpoint:
        answer = endpoint.classify([p.read_bytes() for p in images])
    assert list(answer.class_names) == names
    assert np.abs(answer.probabilities - probs).max() <= 1e-5
    assert "dacovid classifier: openvino" in server.log_text() or "OpenVINO" in server.log_text()


def test_concurrent_requests_are_batched(server: TritonServer, images: list[Path]) -> None:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(server.config.grpc_url.split("://")[1])
    before = client.get_inference_statistics("dacovid_classifier", as_json=True)["model_stats"][0]
    done: list[object] = []
    finished = threading.Event()

    def callback(result: object, error: object) -> None:
        done.append(error or result)
        if len(done) == 64:
            finished.set()

    for i in range(64):
        data = np.array([[images[i % len(images)].read_bytes()]], dtype=object)
        tensor = grpc.InferInput("image", [1, 1], "BYTES")
        tensor.set_data_from_numpy(data)
        client.async_infer("dacovid", [tensor], callback)
    assert finished.wait(120)
    after = client.get_inference_statistics("dacovid_classifier", as_json=True)["model_stats"][0]
    client.close()
    assert not [d for d in done if not hasattr(d, "as_numpy")], done[:1]
    images_run = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert images_run == 64 and executions < 64


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (14000, 14000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "payload, reason",
    [(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "unreadable or corrupt"), (None, "too large to decode safely"), (b"", "empty")],
    ids=["corrupt", "bomb", "empty"],
)
def test_a_bad_image_fails_its_request_only(server: TritonServer, images: list[Path], payload: bytes | None, reason: str) -> None:
    with TritonEndpoint(server.config.http_url) as endpoint:
        with pytest.raises(UserInputError, match=reason) as caught:
            endpoint.classify([_bomb() if payload is None else payload])
        assert "\n" not in str(caught.value)
        # the server goes on answering, right
        again = endpoint.classify([images[0].read_bytes()])
    assert again.probabilities.shape == (1, 3) and np.isfinite(again.probabilities).all()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bad_image_is_the_clients_error_naming_its_index(server: TritonServer, images: list[Path], protocol: str) -> None:
    # on main: HTTP 500 / gRPC INTERNAL (which retry policies retry), the image named by its byte count
    from tritonclient.utils import InferenceServerException

    module, client = _client(server, protocol)
    client_error = "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    try:
        batch = [p.read_bytes() for p in images]
        batch[5] = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # the 6th of 8
        cases = {"index 5 of the batch of 8": batch, "limit of 16 MB": [b"\0" * (17 << 20)]}
        for fragment, payload in cases.items():
            tensor = module.InferInput("image", [len(payload), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[b] for b in payload], dtype=object))
            with pytest.raises(InferenceServerException) as caught:
                client.infer("dacovid", [tensor], outputs=[module.InferRequestedOutput("class_name")])
            assert str(caught.value.status()) == client_error, (fragment, caught.value.status(), str(caught.value))
            assert fragment in str(caught.value), str(caught.value)
    finally:
        client.close()


def test_dicom_bytes_are_served_like_the_png(server: TritonServer, tiny_fp32_onnx: Path, images: list[Path],
                                             tmp_path: Path) -> None:
    """A MONOCHROME1 DICOM of a PNG's inverted pixels is the PNG's answer; a truncated one fails its request only."""
    pytest.importorskip("pydicom", reason="pip install 'dacovid-export[dicom]'")
    from tests.helpers.dicom import write_dx

    png = images[0]
    pixels = np.asarray(Image.open(png).convert("L"))
    dicom = write_dx(tmp_path / "m1.dcm", 255 - pixels, PhotometricInterpretation="MONOCHROME1")
    _, probs, names = _predict(tiny_fp32_onnx, [png])
    with TritonEndpoint(server.config.grpc_url) as endpoint:
        answer = endpoint.classify([dicom.read_bytes()])
        assert list(answer.class_names) == names
        assert np.abs(answer.probabilities - probs).max() <= 1e-5
        with pytest.raises(UserInputError, match="truncated or corrupt"):
            endpoint.classify([dicom.read_bytes()[:300]])


def test_max_batch_size_is_enforced(server: TritonServer, images: list[Path]) -> None:
    with TritonEndpoint(server.config.http_url) as endpoint:
        with pytest.raises(UserInputError, match="batch"):
            endpoint.classify([images[0].read_bytes()] * 9)  # the repository's max batch is 8


def test_check_triton_passes_and_fails(server: TritonServer, tiny_checkpoint: Path, synthetic_dir: Path,
                                       tmp_path: Path) -> None:
    ok = invoke(cli, ["check", "--checkpoint", tiny_checkpoint, "--images", synthetic_dir, "--triton",
                      server.config.http_url, "--triton", server.config.grpc_url, "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("PASS") >= 2 and server.config.http_url + "/dacovid" in ok.output
    # another checkpoint: the endpoint serves a model exported from a different one
    import torch

    from dacovid_export.data.preprocessing import Preprocessing
    from dacovid_export.model import dacovid_net, save_checkpoint
    from tests.helpers import tiny

    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    with pytest.warns(UserWarning, match="no backbone weights given"):  # untrained on purpose
        model = dacovid_net(**tiny.tiny_model_kwargs()).eval()
    save_checkpoint(other, model, class_names=tiny.TINY_CLASSES, preprocessing=Preprocessing(image_size=tiny.TINY_IMAGE_SIZE))
    failed = invoke(cli, ["check", "--checkpoint", other, "--images", synthetic_dir, "--triton",
                          server.config.grpc_url, "--no-progress"])
    assert failed.exit_code == 1, failed.output
    assert "FAIL" in failed.output and "source" in failed.output


def test_bench_triton_rows(server: TritonServer, tiny_fp32_onnx: Path) -> None:
    from dacovid_export.bench.config import BenchConfig
    from dacovid_export.bench.records import RECORD_KEYS
    from dacovid_export.bench.report import format_markdown
    from dacovid_export.bench.run import run_benchmark

    config = BenchConfig(iterations=3, warmup=1, batch_sizes=(1, 2), triton=(server.config.http_url,),
                         concurrency=(1, 2), progress=False)
    result = run_benchmark([str(tiny_fp32_onnx)], config)
    served = [r for r in result.records if r.backend == "triton/http"]
    assert [r.variant for r in served] == ["concurrency 1", "concurrency 2"]
    assert [r.iterations for r in served] == [3, 6]
    predictor = [r for r in result.records if r.backend.startswith("in-process/")]
    assert [r.batch for r in predictor] == [1, 2]
    for record in served + predictor:
        row = record.to_dict()
        assert set(row) == set(RECORD_KEYS)
        # threads: the server's own; GFLOP/s and the GEMM fraction: rates of in-process CPU compute rows only
        assert all(row[k] is not None for k in RECORD_KEYS if k not in ("threads", "gflops_per_s", "gemm_fraction")), row
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["throughput_ips"] > 0
    level = result.served[1]
    assert set(level.server) == {"dacovid", "dacovid_preprocess", "dacovid_classifier", "dacovid_postprocess"}
    assert level.server["dacovid_classifier"].inference_count == 6
    assert level.server["dacovid_classifier"].compute_infer_ns > 0
    text = format_markdown(result)
    assert "## Served" in text and "dacovid_classifier: queue" in text


# ------------------------------------------------------------------ serve: the command and its failures


def test_serve_refuses_a_tampered_model(tmp_path: Path, make_toy_onnx, serve_env: Path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    model = repo / "dacovid_classifier" / "1" / "toy.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    http_port, grpc_port = _free_ports()
    result = invoke(cli, ["serve", repo, "--env", serve_env, "--http-port", http_port, "--grpc-port", grpc_port])
    assert_one_line_error(result, "dacovid_classifier", "does not match the sha256")


def test_serve_refuses_a_port_in_use(tmp_path: Path, make_toy_onnx, serve_env: Path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = _free_ports()[1]
        result = invoke(cli, ["serve", repo, "--env", serve_env, "--http-port", port, "--grpc-port", other])
    assert_one_line_error(result, f"127.0.0.1:{port} is in use")


def test_serve_needs_a_numpy1_environment(tmp_path: Path, make_toy_onnx) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    result = invoke(cli, ["serve", repo], env={SERVE_ENV_VAR: ""})
    assert_one_line_error(result, "serve-env")
    # a "venv" whose Python is this one: NumPy 2, which the stub answers wrongly with
    fake = tmp_path / "numpy2-env"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "python").symlink_to(sys.executable)
    result = invoke(cli, ["serve", repo, "--env", fake])
    assert_one_line_error(result, "NumPy 2", "serve-env")


def test_serve_runs_until_sigterm_and_leaves_nothing(tmp_path: Path, make_toy_onnx, serve_env: Path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    http_port, grpc_port = _free_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "dacovid_export", "serve", str(repo), "--env", str(serve_env),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"serving http://127.0.0.1:{http_port} grpc://127.0.0.1:{grpc_port}"), line
        assert "dacovid_classifier" in line
        server_pid = int(line.split("(pid ")[1].split(";")[0])
        with TritonEndpoint(f"http://127.0.0.1:{http_port}") as endpoint:
            assert endpoint.info().precision == "fp32"
        t0 = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - t0 < 20
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not pid_alive(server_pid)
    assert not list(Path("/dev/shm").glob(f"dacovid_triton_{process.pid}_*"))


def test_a_non_loopback_host_needs_tls_or_insecure_and_says_what_is_exposed(tmp_path: Path) -> None:
    # on main `serve --host 0.0.0.0` said nothing of exposure; nothing here binds anything but loopback
    repo, env = tmp_path / "repo", tmp_path / "env"
    result = invoke(cli, ["serve", repo, "--env", env, "--host", "0.0.0.0", "--http-port", "18000", "--grpc-port", "18001"])
    assert_one_line_error(result, "--host 0.0.0.0 exposes HTTP port 18000 and gRPC port 18001", "--grpc-tls-cert", "--insecure")
    with pytest.raises(UserInputError, match="go together"):
        ServerConfig(repo=repo, env=env, host="0.0.0.0", grpc_tls_cert=tmp_path / "c.pem")
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    (tmp_path / "ca.pem").write_text("ca")
    tls = ServerConfig(repo=repo, env=env, host="0.0.0.0", grpc_tls_cert=tmp_path / "c.pem", grpc_tls_key=tmp_path / "k.pem",
                       grpc_tls_client_ca=tmp_path / "ca.pem")
    options = TritonServer(tls)._tls_options()
    assert "--grpc-use-ssl-mutual=true" in options and f"--grpc-root-cert={tmp_path / 'ca.pem'}" in options
    lines = tls.exposure_lines()
    assert len(lines) == 2 and "no authentication" in lines[0] and "gRPC port 8001: TLS with client certificates" in lines[1]
    insecure = ServerConfig(repo=repo, env=env, host="0.0.0.0", insecure=True)
    assert "gRPC port 8001: plain text" in insecure.exposure_lines()[1]
    assert ServerConfig(repo=repo, env=env).exposure_lines() == []  # loopback: nothing to say


def test_the_banner_says_what_the_kernel_has_bound(server: TritonServer) -> None:
    bound = server.bound_addresses()
    assert bound == {"http": [f"127.0.0.1:{server.config.http_port}"], "grpc": [f"127.0.0.1:{server.config.grpc_port}"]}
    assert server.banner().startswith(f"serving http://127.0.0.1:{server.config.http_port} grpc://127.0.0.1:")


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (this container's init may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_sigkill_of_serve_leaves_no_server_stub_region_or_scratch(tmp_path: Path, make_toy_onnx, serve_env: Path) -> None:
    # on main tritonserver (its own process group) went on serving, with its stubs, regions and scratch folder
    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    http_port, grpc_port = _free_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "dacovid_export", "serve", str(repo), "--env", str(serve_env),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    server_pid = None
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        server_pid = int(line.split("(pid ")[1].split(";")[0])
        stubs = _children(server_pid)
        assert stubs, "no python stubs under tritonserver"
        arguments = Path(f"/proc/{server_pid}/cmdline").read_bytes().decode().split("\0")
        scratch = Path(next(a for a in arguments if a.startswith("--backend-directory=")).split("=", 1)[1]).parent
        assert scratch.is_dir() and list(Path("/dev/shm").glob(f"dacovid_triton_{process.pid}_*"))
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            all(_gone(p) for p in [server_pid, *stubs]) and not scratch.exists()
            and not list(Path("/dev/shm").glob(f"dacovid_triton_{process.pid}_*"))
        ):
            time.sleep(0.25)
        assert _gone(server_pid) and all(_gone(p) for p in stubs)
        assert not list(Path("/dev/shm").glob(f"dacovid_triton_{process.pid}_*")) and not scratch.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if server_pid is not None and not _gone(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def test_a_killed_classifier_stub_is_replaced_under_load(tmp_path: Path, make_toy_onnx, serve_env: Path,
                                                          images: list[Path]) -> None:
    # on main 76 of 79 later requests failed "Stub process ... is not healthy" for 60 s, readiness said 200, serve said nothing
    import tritonclient.http as http

    repo = tmp_path / "repo"
    write_triton_repository(make_toy_onnx(tmp_path / "toy.onnx"), repo)
    http_port, grpc_port = _free_ports()
    errors = tmp_path / "serve.stderr"
    with open(errors, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dacovid_export", "serve", str(repo), "--env", str(serve_env),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--probe-interval", "2"],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    client = None
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        server_pid = int(line.split("(pid ")[1].split(";")[0])
        client = http.InferenceServerClient(f"127.0.0.1:{http_port}", connection_timeout=10, network_timeout=20)
        payload = np.array([[images[0].read_bytes()]], dtype=object)

        def ask() -> tuple[bool, object]:
            tensor = http.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(payload)
            try:  # a subset of the outputs, as a client may ask
                reply = client.infer("dacovid", [tensor], outputs=[http.InferRequestedOutput("probabilities"),
                                                                   http.InferRequestedOutput("class_name")])
            except Exception as exc:  # noqa: BLE001  # any failure of the call is what is counted here
                return False, str(exc)
            return True, (reply.as_numpy("class_name").reshape(-1)[0], reply.as_numpy("probabilities").round(5).tobytes())

        ok, expected = ask()
        assert ok, expected
        (stub,) = [p for p in _children(server_pid)
                   if b"dacovid_classifier" in Path(f"/proc/{p}/cmdline").read_bytes()]
        answers: list[tuple[float, bool, object]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                answers.append((time.monotonic(), *ask()))
                time.sleep(0.05)

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        time.sleep(1.0)
        killed = time.monotonic()
        os.kill(stub, signal.SIGKILL)
        recovered = None
        while time.monotonic() - killed < 30 and recovered is None and process.poll() is None:
            time.sleep(0.5)
            recovered = next((t for t, ok, _ in answers if t > killed + 1 and ok), None)
        stop.set()
        worker.join(30)
        assert recovered is not None or process.poll() not in (None, 0), "neither recovered nor exited non-zero in 30 s"
        assert all(answer == expected for _, ok, answer in answers if ok), "a request got a wrong answer"
        if recovered is not None:
            assert recovered - killed < 30 and process.poll() is None
            said = errors.read_text()
            assert "failed its health probe" in said and "answers again" in said, said
            assert not [ln for ln in said.splitlines() if ln.strip() and not ln.startswith(("serve:", "warning:"))], said
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if client is not None:
            client.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_sweep_leaves_a_region_that_a_live_process_still_maps(tmp_path: Path) -> None:
    # on main a later serve unlinked an orphaned server's in-use regions: their prefix's PID (the dead serve) was gone
    from dacovid_export.serve.server import _sweep_dead_shm

    dead = subprocess.Popen(["true"])
    dead.wait()
    region = Path("/dev/shm") / f"dacovid_triton_{dead.pid}_test{os.getpid()}_region"
    region.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import mmap, sys, time\nf = open(sys.argv[1], 'r+b')\nm = mmap.mmap(f.fileno(), 4096)\n"
         "f.close()\nprint('mapped', flush=True)\ntime.sleep(60)", str(region)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "mapped"  # type: ignore[union-attr]
        _sweep_dead_shm()
        assert region.exists(), "a region still mapped by a live process was swept"
        holder.kill()
        holder.wait()
        _sweep_dead_shm()
        assert not region.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        region.unlink(missing_ok=True)


def test_server_config_is_checked() -> None:
    with pytest.raises(UserInputError, match="two different ports"):
        ServerConfig(repo=Path("r"), env=Path("e"), http_port=8000, grpc_port=8000)
    with pytest.raises(UserInputError, match="port from 1 to 65535"):
        ServerConfig(repo=Path("r"), env=Path("e"), http_port=0)
    assert issubclass(ServerError, Exception)
