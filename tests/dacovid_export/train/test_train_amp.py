"""Mixed precision keeps the attention in FP32 (checked with CPU autocast; CUDA uses the same code)."""

from __future__ import annotations

import warnings

import torch

from dacovid_export.model import dacovid_net
from dacovid_export.train.amp import AmpPrecision, choose_precision, keep_attention_fp32


def _tiny(kwargs: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "backbone starts from scratch"
        return dacovid_net(**kwargs)


def test_attention_runs_in_fp32_under_autocast(tiny_model_kwargs: dict) -> None:
    torch.manual_seed(0)
    model = _tiny(tiny_model_kwargs).eval()
    with torch.no_grad():
        model.pam.gamma.fill_(0.5)
        model.cam.beta.fill_(0.5)
    x = torch.randn(2, 16, 8, 8) * 30  # large activations: CAM energies far past bf16/fp16 precision
    with torch.no_grad():
        reference = model.cam(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = model.cam(x.bfloat16())
        keep_attention_fp32(model)
        keep_attention_fp32(model)  # idempotent
        with torch.autocast("cpu", dtype=torch.bfloat16):
            kept = model.cam(x)
            pam = model.pam(x)
            logits = model(torch.randn(2, 3, 64, 64))
    # without the guard autocast runs the energies in bf16 and the result drifts
    assert (plain.float() - reference).abs().max() > 1e-2
    assert kept.dtype == torch.float32 and pam.dtype == torch.float32
    torch.testing.assert_close(kept, reference)
    assert torch.isfinite(logits).all()
    assert set(model.state_dict()) == set(_tiny(tiny_model_kwargs).state_dict())  # checkpoints unchanged


def test_cpu_trains_in_plain_fp32() -> None:
    precision = choose_precision(torch.device("cpu"))
    assert precision == AmpPrecision("cpu", None)
    assert precision.name == "fp32" and not precision.channels_last and not precision.needs_grad_scaler
