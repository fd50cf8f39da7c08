"""`dacovid-export serve` and `dacovid-export serve-env`: the bundled Triton on a repository, and its environment."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from dacovid_export.cli.common import field_default, handle_errors, verbosity_options
from dacovid_export.serve.server import ServerConfig

__all__ = ["serve", "serve_env"]


@click.command(name="serve")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False))
@click.option("--env", "env_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Serving environment made by 'dacovid-export serve-env'  [default: $DACOVID_SERVE_ENV].")
@click.option("--host", default=field_default(ServerConfig, "host"), show_default=True, help="Address to bind; another than loopback only when you ask for it.")
@click.option("--http-port", type=int, default=field_default(ServerConfig, "http_port"), show_default=True)
@click.option("--grpc-port", type=int, default=field_default(ServerConfig, "grpc_port"), show_default=True)
@click.option("--ready-timeout", type=float, default=field_default(ServerConfig, "ready_timeout_s"), show_default=True, help="Seconds to wait for every model to load.")
@click.option("--log-file", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Keep the server's log here.")
@click.option("--max-request-mb", type=int, default=field_default(ServerConfig, "max_request_mb"), show_default=True,
              help="Largest request (its images together) the server decodes; a larger one is refused with 400 / "
                   "INVALID_ARGUMENT. 16 MB: a 2048x2048 16-bit DICOM (8 MiB of pixels), twice over.")
@click.option("--grpc-tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="PEM certificate: gRPC over TLS (Triton's --grpc-server-cert).")
@click.option("--grpc-tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="PEM private key of --grpc-tls-cert.")
@click.option("--grpc-tls-client-ca", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="PEM CA of client certificates: mutual TLS.")
@click.option("--insecure", is_flag=True,
              help="Serve a non-loopback --host without TLS (no authentication either): only on a network you trust.")
@click.option("--probe-interval", type=float, default=field_default(ServerConfig, "probe_interval_s"), show_default=True,
              help="Seconds between health probes (a real request to every ensemble; a failing one is reloaded, and "
                   "serve exits non-zero if that does not help); 0: no probes.")
@verbosity_options
@handle_errors
def serve(repo: Path, env_dir: Path | None, host: str, http_port: int, grpc_port: int, ready_timeout: float,
          log_file: Path | None, max_request_mb: int, grpc_tls_cert: Path | None, grpc_tls_key: Path | None,
          grpc_tls_client_ca: Path | None, insecure: bool, probe_interval: float) -> None:
    """Serve REPO with the bundled Triton Inference Server, in the foreground, until Ctrl-C or SIGTERM."""
    from dacovid_export.serve.serve_env import serve_env_from
    from dacovid_export.serve.server import TritonServer

    config = ServerConfig(repo=repo, env=serve_env_from(env_dir), host=host, http_port=http_port, grpc_port=grpc_port,
                          ready_timeout_s=ready_timeout, log_file=log_file, max_request_mb=max_request_mb,
                          grpc_tls_cert=grpc_tls_cert, grpc_tls_key=grpc_tls_key, grpc_tls_client_ca=grpc_tls_client_ca,
                          insecure=insecure, probe_interval_s=probe_interval)  # fmt: skip

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    server = TritonServer(config)
    try:
        for line in config.exposure_lines():
            click.echo(line, err=True)
        server.start()
        click.echo(server.banner())
        sys.stdout.flush()
        for _ in server.wait():
            pass
    except KeyboardInterrupt:
        server.stop()
        click.echo("stopped", err=True)
        sys.exit(0)
    finally:
        server.stop()


@click.command(name="serve-env")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--overwrite", is_flag=True, help="Rebuild FOLDER even if it is a good serving environment already (else it is kept).")
@click.option("--check", "check_only", is_flag=True, help="Only check FOLDER (nothing installed).")
@verbosity_options
@handle_errors
def serve_env(folder: Path, overwrite: bool, check_only: bool) -> None:
    """Make (or --check) the Python environment Triton's python stub runs the served models in.

    A venv with NumPy 1.x (Triton 2.51's stub is built on it; NumPy 2 answers wrongly, silently),
    nvidia-pytriton's tritonserver, ONNX Runtime, OpenVINO and this package. This command
    installs packages (pip, from your package index); no other command does.
    """
    from dacovid_export.serve.serve_env import create_serve_env, inspect_serve_env

    env = inspect_serve_env(folder) if check_only else create_serve_env(folder, overwrite=overwrite)
    click.echo(f"serving environment {env.root}: Python {env.python_version}, NumPy {env.numpy_version}, "
               f"dacovid-export {env.dacovid_version}; use: dacovid-export serve REPO --env {env.root}")
