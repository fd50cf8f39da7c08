"""Serving: the Python :class:`~.predictor.Predictor`, Triton model repositories, and the bundled Triton server.

:mod:`.predictor` (any artifact in, class probabilities out), :mod:`.triton` (a repository
that takes encoded images: ensemble of preprocessing, classifier, postprocessing),
:mod:`.triton_config` (its configs, as Triton's ``ModelConfig``), :mod:`.triton_models`
(the python-backend models, this package's own code), :mod:`.serve_env` (the NumPy 1.x
environment the server's python stub runs in) and :mod:`.server` (start, wait, stop).
The client of a served endpoint is :mod:`dacovid_export.backends.triton_endpoint`.
"""

from dacovid_export.serve.predictor import Prediction, Predictor
from dacovid_export.serve.serve_env import create_serve_env, inspect_serve_env
from dacovid_export.serve.server import ServerConfig, TritonServer
from dacovid_export.serve.triton import TritonRepository, write_triton_repository

__all__ = [
    "Prediction",
    "Predictor",
    "TritonRepository",
    "write_triton_repository",
    "create_serve_env",
    "inspect_serve_env",
    "ServerConfig",
    "TritonServer",
]
