"""Start and stop the bundled Triton Inference Server on a served repository, with the known pitfalls handled.

What goes wrong when ``tritonserver`` is started by hand, and what is done here instead
(docs/serving.md, each measured on these machines):

- the python backend needs ``libtriton_python.so``, ``triton_python_backend_utils.py`` and
  the stub of the running Python side by side: a private backend folder of links is made;
- the stub links ``libpython3.X.so.1.0`` and may load another patch release than the
  environment's interpreter (model loads then fail in ``multiprocessing``): ``LD_LIBRARY_PATH``
  is the interpreter's own ``LIBDIR``, and the environment's ``bin`` is first on ``PATH``,
  which is how the stub finds its packages;
- metrics are off and every port is bound to 127.0.0.1 unless another host is asked for;
- a killed stub leaves shared-memory regions in ``/dev/shm``: this server's regions carry a
  prefix of its own, and are removed when it stops (and those of dead earlier servers of ours).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from dacovid_export.core.errors import DacovidError, UserInputError, one_line
from dacovid_export.core.fileio import pid_alive
from dacovid_export.core.limits import MAX_PROBE_INTERVAL_S, MAX_REQUEST_MB
from dacovid_export.core.validate import check_int, check_number, is_int
from dacovid_export.serve.reaper import set_parent_death_signal
from dacovid_export.serve.serve_env import ServeEnvironment, inspect_serve_env
from dacovid_export.serve.triton_config import read_config
from dacovid_export.serve.triton_models import DEFAULT_MAX_REQUEST_MB, MAX_REQUEST_ENV

__all__ = ["ServerConfig", "ServerError", "TritonServer", "repository_models"]

_SHM_DIR = Path("/dev/shm")
_SHM_PREFIX = "dacovid_triton_"
# Triton's log lines: "E1204 16:24:44.094774 5132 file.cc:123] "message""
_LOG_LINE = re.compile(r'^[EWI]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?(?P<message>.*?)"?$')


class ServerError(DacovidError):
    """The server did not start, or a model did not load: the cause, from the server's own log."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How to serve a repository; every address is loopback unless ``host`` says otherwise."""

    repo: Path
    env: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    ready_timeout_s: float = 180.0
    exit_timeout_s: int = 5
    log_file: Path | None = None  # default: a temporary file, removed when the server stops
    max_request_mb: int = DEFAULT_MAX_REQUEST_MB  # a request's images together, refused before decoding
    # gRPC over TLS (Triton's own SSL options); a client CA makes it mutual TLS. HTTP has no TLS in Triton.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_client_ca: Path | None = None
    insecure: bool = False  # serve a non-loopback host without TLS: the user said so
    probe_interval_s: float = 5.0  # health probe of every ensemble while serving (serve/supervisor.py); 0: none

    def __post_init__(self) -> None:
        for label, port in (("http_port", self.http_port), ("grpc_port", self.grpc_port)):
            if not (is_int(port) and 1 <= port <= 65535):
                raise UserInputError(f"{label}={port!r}: give a port from 1 to 65535")
        if self.http_port == self.grpc_port:
            raise UserInputError(f"http_port and grpc_port are both {self.http_port}: give two different ports")
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise UserInputError(f"host={self.host!r}: give an address such as 127.0.0.1")
        mb = self.max_request_mb
        check_int("max_request_mb", mb, 1, MAX_REQUEST_MB, why=" (megabytes per request)")
        if not self.ready_timeout_s > 0:
            raise UserInputError(f"ready_timeout_s={self.ready_timeout_s!r}: must be positive")
        probe = self.probe_interval_s
        check_number("probe_interval_s", probe, 0, MAX_PROBE_INTERVAL_S, why=" (seconds; 0: no probe)")
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise UserInputError("--grpc-tls-cert and --grpc-tls-key go together: give both (PEM certificate and its key)")
        if self.grpc_tls_client_ca is not None and self.grpc_tls_cert is None:
            raise UserInputError("--grpc-tls-client-ca (mutual TLS) needs --grpc-tls-cert and --grpc-tls-key as well")
        for flag, path in (("--grpc-tls-cert", self.grpc_tls_cert), ("--grpc-tls-key", self.grpc_tls_key),
                           ("--grpc-tls-client-ca", self.grpc_tls_client_ca)):
            if path is not None and not Path(path).is_file():
                raise UserInputError(f"{flag} {str(path)!r} is not a file: give a PEM file")
        if self.exposed and self.grpc_tls_cert is None and not self.insecure:
            raise UserInputError(
                f"--host {self.host} exposes HTTP port {self.http_port} and gRPC port {self.grpc_port} to the network, "
                "with no authentication and no TLS: give --grpc-tls-cert and --grpc-tls-key (gRPC over TLS; put plain "
                "HTTP behind a TLS proxy), or --insecure to serve them in the clear anyway"
            )

    @property
    def exposed(self) -> bool:
        """Whether the host is reachable from other machines (anything but a loopback address)."""
        import ipaddress

        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return True  # a host name: it resolves to whatever the network says

    @property
    def grpc_tls(self) -> bool:
        return self.grpc_tls_cert is not None

    def exposure_lines(self) -> list[str]:
        """What ``serve`` says on stderr before serving a non-loopback host: what is reachable, and how protected."""
        if not self.exposed:
            return []
        grpc = ("TLS" + (" with client certificates (mutual)" if self.grpc_tls_client_ca else "")) if self.grpc_tls else "plain text"
        return [
            f"warning: serving on {self.host}: reachable from the network, with no authentication: anyone who can "
            "connect can classify images and read the models' configuration",
            f"warning: HTTP port {self.http_port}: plain text (Triton's HTTP has no TLS); gRPC port {self.grpc_port}: {grpc}",
        ]

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._url_host}:{self.grpc_port}"

    @property
    def _url_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host


def _proc_address(text: str) -> str:
    """An address of /proc/net/tcp[6] (hex, host byte order in 32-bit words) as it is written ("0.0.0.0", "::")."""
    import ipaddress

    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words on these machines
    address = ipaddress.ip_address(words)
    if address.version == 6 and address.ipv4_mapped is not None:  # gRPC binds 127.0.0.1 as ::ffff:127.0.0.1
        return str(address.ipv4_mapped)
    return f"[{address}]" if address.version == 6 else str(address)


def repository_models(repo: str | os.PathLike[str]) -> list[str]:
    """The models of a repository (every ``config.pbtxt`` must parse as Triton's ``ModelConfig``)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UserInputError(f"model repository {str(repo)!r} does not exist or is not a folder")
    models = []
    for config in sorted(repo.glob("*/config.pbtxt")):
        parsed = read_config(config)
        if parsed.name and parsed.name != config.parent.name:
            raise UserInputError(f"{str(config)!r} names model {parsed.name!r} but sits in folder {config.parent.name!r}")
        models.append(config.parent.name)
    if not models:
        raise UserInputError(
            f"model repository {str(repo)!r} holds no model (no */config.pbtxt): write one with 'dacovid-export triton'"
        )
    return models


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise UserInputError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return True


def _shm_in_use() -> set[str]:
    """Names of the /dev/shm files some live process maps or holds open (every process this user may read)."""
    used: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (proc / "maps").read_text(errors="replace").splitlines():
                where = line.find(f"{_SHM_DIR}/")
                if where >= 0:
                    used.add(line[where + len(str(_SHM_DIR)) + 1 :].split(" ", 1)[0])
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(f"{_SHM_DIR}/"):
                        used.add(target[len(str(_SHM_DIR)) + 1 :])
    return used


def _sweep_dead_shm() -> None:
    """Regions of our servers that died without cleaning up: the prefix's PID (the ``serve``) is gone AND no live
    process maps or holds the region. The PID alone is not enough: a tritonserver whose ``serve`` was killed may
    still be serving from it."""
    with contextlib.suppress(OSError):
        candidates = [
            region for region in _SHM_DIR.glob(f"{_SHM_PREFIX}*")
            if (pid := region.name[len(_SHM_PREFIX) :].split("_", 1)[0]).isdigit() and not pid_alive(int(pid))
        ]  # fmt: skip
        if not candidates:
            return
        used = _shm_in_use()
        for region in candidates:
            if region.name not in used:
                with contextlib.suppress(OSError):
                    region.unlink()


# errors Triton logs on every machine without a GPU: they never say why it stopped
_LOG_NOISE = ("CudaDriverHelper has not been initialized", "Failed to initialize CUDA", "Unable to get number of GPUs")
_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<why>.*)")


def _log_message(line: str) -> str:
    match = _LOG_LINE.match(line.strip())
    message = match.group("message") if match else line
    # the python backend appends the stub's traceback after an escaped blank line
    return one_line(message.split("\\n")[0].replace('\\"', '"'))


def _log_cause(log_text: str) -> str | None:
    """The line of the server log that says why it stopped: a model that failed to load, else the first real error."""
    errors = [_log_message(line) for line in log_text.splitlines() if line.startswith("E")]
    errors = [e for e in errors if not any(noise in e for noise in _LOG_NOISE)]
    for message in errors:
        match = _FAILED_LOAD.search(message)
        if match:
            why = re.sub(r"^(Internal|Invalid argument|Unavailable): ", "", match.group("why"))
            return f"model {match.group('model')!r} failed to load: {why}"[:600]
    if errors:
        return errors[0][:600]
    for line in log_text.splitlines():
        if "error" in line.lower() and not any(noise in line for noise in _LOG_NOISE):
            return one_line(line)[:600]
    return None


class TritonServer:
    """The bundled ``tritonserver`` on one repository, as a context manager: started, ready, then stopped.

    :meth:`start` returns when the server and every model of the repository are
    ready, or raises :class:`ServerError` with the cause from the server's log (a port
    in use, a model that fails to load, ...). :meth:`stop` (idempotent) ends the
    server and its python stubs (SIGTERM, then SIGKILL to the process group) and
    removes their shared memory.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
        self._log_path: Path | None = None
        self._prefix = ""
        self.models: list[str] = []
        self.env: ServeEnvironment | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> "TritonServer":
        config = self.config
        self.models = repository_models(config.repo)
        self.env = inspect_serve_env(config.env)
        for label, port in (("HTTP", config.http_port), ("gRPC", config.grpc_port)):
            if not _port_free(config.host, port):
                raise ServerError(
                    f"{label} port {config.host}:{port} is in use (another server?): stop it or choose another --{label.lower()}-port"
                )
        _sweep_dead_shm()
        self._scratch = Path(tempfile.mkdtemp(prefix="dacovid-triton-"))
        backend = self._scratch / "backends" / "python"
        backend.mkdir(parents=True)
        for source in self.env.backend_files:
            (backend / source.name).symlink_to(source)
        self._log_path = config.log_file or self._scratch / "tritonserver.log"
        self._prefix = f"{_SHM_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        command = [
            str(self.env.tritonserver),
            f"--model-repository={Path(config.repo).resolve()}",
            f"--backend-directory={backend.parent}",
            f"--backend-config=python,shm-region-prefix-name={self._prefix}",
            f"--http-address={config.host}",
            f"--http-port={config.http_port}",
            f"--grpc-address={config.host}",
            f"--grpc-port={config.grpc_port}",
            *self._tls_options(),
            "--allow-metrics=false",
            f"--exit-timeout-secs={config.exit_timeout_s}",
            "--strict-readiness=true",
            # explicit model control, every model loaded at start: what lets the supervisor reload a model whose stub died
            "--model-control-mode=explicit",
            "--load-model=*",
        ]
        environment = dict(os.environ)
        environment["PATH"] = f"{self.env.bin_dir}{os.pathsep}{environment.get('PATH', '')}"
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.env.libdir), environment.get("LD_LIBRARY_PATH", "")) if p
        )
        environment["VIRTUAL_ENV"] = str(self.env.root)
        environment[MAX_REQUEST_ENV] = str(config.max_request_mb << 20)
        environment.pop("PYTHONHOME", None)
        environment.pop("PYTHONPATH", None)  # the stub must import the environment's packages, not this one's
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment,
                start_new_session=True,  # its own process group: stopping it reaches every stub
                preexec_fn=set_parent_death_signal,  # SIGTERM from the kernel if this process dies, even by SIGKILL
            )  # fmt: skip
        # and what cleans up after a SIGKILLed serve: the stubs, the shared memory, the scratch (serve/reaper.py)
        self._reaper = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).with_name("reaper.py")), str(os.getpid()), str(self._process.pid),
             str(self._scratch), self._prefix, str(min(4, config.exit_timeout_s))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _tls_options(self) -> list[str]:
        config = self.config
        # grpc_tls is "a certificate is given"; ServerConfig refuses a certificate without its key
        if config.grpc_tls_cert is None or config.grpc_tls_key is None:
            return []
        options = [f"--grpc-server-cert={Path(config.grpc_tls_cert).resolve()}",
                   f"--grpc-server-key={Path(config.grpc_tls_key).resolve()}"]
        if config.grpc_tls_client_ca is not None:
            return ["--grpc-use-ssl-mutual=true", *options, f"--grpc-root-cert={Path(config.grpc_tls_client_ca).resolve()}"]
        return ["--grpc-use-ssl=true", *options]

    def bound_addresses(self) -> dict[str, list[str]]:
        """``{"http": ["ADDR:PORT", ...], "grpc": [...]}``: the listening sockets on this server's ports, as the kernel has them."""
        found: dict[str, list[str]] = {"http": [], "grpc": []}
        ports = {self.config.http_port: "http", self.config.grpc_port: "grpc"}
        for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
            with contextlib.suppress(OSError):
                for row in Path(table).read_text().splitlines()[1:]:
                    fields = row.split()
                    if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                        continue
                    address, _, port_hex = fields[1].partition(":")
                    port = int(port_hex, 16)
                    if port in ports and len(address) == width:
                        found[ports[port]].append(f"{_proc_address(address)}:{port}")
        return found

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline and self._process is not None:
            code = self._process.poll()
            if code is not None:
                cause = _log_cause(self.log_text()) or f"exit status {code}, and its log says no more"
                raise ServerError(f"Triton stopped while starting: {cause}")
            if self._http_ok("/v2/health/ready"):
                return
            states = self._model_states()
            failed = [m for m in states if m.get("state") == "UNAVAILABLE" and m.get("reason")]
            if failed:
                first = failed[0]
                raise ServerError(f"model {first['name']!r} failed to load: {one_line(first['reason'])[:600]}")
            time.sleep(0.25)
        cause = _log_cause(self.log_text())
        raise ServerError(
            f"Triton was not ready after {self.config.ready_timeout_s:.0f} s" + (f": {cause}" if cause else "")
        )

    def _http_ok(self, route: str) -> bool:
        try:
            with urllib.request.urlopen(self.config.http_url + route, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _model_states(self) -> list[dict]:
        request = urllib.request.Request(self.config.http_url + "/v2/repository/index", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return list(json.loads(reply.read() or b"[]"))
        except (urllib.error.URLError, OSError, ValueError):
            return []

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def banner(self) -> str:
        """The line ``serve`` prints once ready: the addresses the sockets are really bound to, the models, the PID."""
        bound = self.bound_addresses()
        # the kernel's view; before the sockets show (or without /proc) the configured address, which Triton binds
        http = " ".join(f"http://{a}" for a in bound["http"]) or f"http://{self.config.host}:{self.config.http_port}"
        grpc = " ".join(f"grpc://{a}" for a in bound["grpc"]) or f"grpc://{self.config.host}:{self.config.grpc_port}"
        tls = " (gRPC over TLS)" if self.config.grpc_tls else ""
        return f"serving {http} {grpc}{tls}: ready models {', '.join(self.ready_models())} (pid {self.pid}; Ctrl-C to stop)"

    def ready_models(self) -> list[str]:
        return sorted(m["name"] for m in self._model_states() if m.get("state") == "READY")

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    def shm_regions(self) -> list[Path]:
        """This server's shared-memory regions that exist now."""
        return sorted(_SHM_DIR.glob(f"{self._prefix}*")) if self._prefix else []

    # ------------------------------------------------------------------- stop

    def stop(self) -> None:
        """End the server and its stubs, remove their shared memory and scratch; idempotent."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:  # first: once this server's group is gone its number may be another's
            reaper.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(timeout=5)
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.config.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            # stubs that outlive the server (they are in its group): none may be left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for region in self.shm_regions():
            with contextlib.suppress(OSError):
                region.unlink()
        if self._scratch is not None:  # the backend links and, without --log-file, the log
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stub_pids(self) -> set[int]:
        """The server's child processes now (its python stubs)."""
        pid = self.pid
        found: set[int] = set()
        if pid is None:
            return found
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.add(int(stat.parent.name))
        return found

    def wait(self, *, supervise: bool = True) -> Iterator[None]:
        """Yield about once a second while the server runs (the foreground loop of ``serve``).

        ``supervise`` (and ``probe_interval_s`` > 0): probe every ensemble and reload one that fails
        (serve/supervisor.py); one that stays broken ends the server with :class:`ServerError`.
        """
        from dacovid_export.serve.supervisor import (
            RecoveryFailed,
            Supervisor,
            ensembles_of,
        )

        supervisor = None
        if supervise and self.config.probe_interval_s > 0:
            supervisor = Supervisor(self.config.http_url, ensembles_of(self.config.repo, self.models),
                                    interval_s=self.config.probe_interval_s)
        stubs = self.stub_pids()
        while self.running:
            yield
            time.sleep(1.0)
            if supervisor is None or not self.running:
                continue
            now = self.stub_pids()
            try:
                supervisor.tick(stub_died=bool(stubs - now))
            except RecoveryFailed as exc:
                self.stop()
                raise ServerError(str(exc)) from exc
            stubs = self.stub_pids()  # a reload starts new stubs
        if self._process is None:
            return
        cause = _log_cause(self.log_text())
        raise ServerError("Triton stopped" + (f": {cause}" if cause else ""))
