"""PAM and CAM against an independent NumPy implementation of the paper's equations (1)-(4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacovid_export.model import ChannelAttention, PositionAttention


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # x: C x N, weight: C' x C x 1 x 1 -> C' x N
    return weight[:, :, 0, 0] @ x + bias[:, None]


def _pam_reference(a: np.ndarray, module: PositionAttention) -> np.ndarray:
    """Equations (1)-(2), written position by position: s_ji = softmax_i(Q_j . K_i), E_j = alpha sum_i s_ji V_i + A_j."""
    c, h, w = a.shape
    flat = a.reshape(c, h * w)
    p = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    q = _conv1x1(flat, p["query.weight"], p["query.bias"])
    k = _conv1x1(flat, p["key.weight"], p["key.bias"])
    v = _conv1x1(flat, p["value.weight"], p["value.bias"])
    n = h * w
    out = np.empty_like(flat)
    for j in range(n):
        logits = np.array([q[:, j] @ k[:, i] for i in range(n)])
        s = _softmax(logits, axis=0)
        out[:, j] = p["gamma"][0] * (v @ s) + flat[:, j]
    return out.reshape(c, h, w)


def _cam_reference(a: np.ndarray, beta: float) -> np.ndarray:
    """Equations (3)-(4): x_ji = softmax_i(A_j . A_i), E_j = beta sum_i x_ji A_i + A_j (plain softmax, as the paper)."""
    c, h, w = a.shape
    flat = a.reshape(c, h * w)
    out = np.empty_like(flat)
    for j in range(c):
        logits = np.array([flat[j] @ flat[i] for i in range(c)])
        x = _softmax(logits, axis=0)
        out[j] = beta * (x @ flat) + flat[j]
    return out.reshape(c, h, w)


@pytest.fixture()
def features() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 16, 3, 5, dtype=torch.float64) * 0.5


def test_position_attention_matches_equations(features: torch.Tensor) -> None:
    torch.manual_seed(2)
    pam = PositionAttention(16).double()
    with torch.no_grad():
        pam.gamma.fill_(0.7)
    out = pam(features).detach().numpy()
    for b in range(features.shape[0]):
        np.testing.assert_allclose(out[b], _pam_reference(features[b].numpy(), pam), rtol=1e-9, atol=1e-10)


def test_channel_attention_matches_equations(features: torch.Tensor) -> None:
    cam = ChannelAttention().double()
    with torch.no_grad():
        cam.beta.fill_(-0.3)
    out = cam(features).detach().numpy()
    for b in range(features.shape[0]):
        np.testing.assert_allclose(out[b], _cam_reference(features[b].numpy(), -0.3), rtol=1e-9, atol=1e-10)


def test_cam_is_a_plain_softmax_not_danet_rowmax_variant() -> None:
    # DANet's code uses softmax(rowmax - energy), which favours the *least* similar channel.
    # With one channel much larger than the others, the plain softmax puts the weight on it.
    a = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    a[0, 0] = 3.0
    a[0, 1] = 1.0
    a[0, 2] = 0.1
    cam = ChannelAttention().double()
    with torch.no_grad():
        cam.beta.fill_(1.0)
    out = cam(a)
    # channel 1 attends mostly to channel 0 (largest dot product), so its output grows towards 3 + 1
    assert out[0, 1, 0, 0].item() > 3.5


def test_zero_gamma_and_beta_are_identity(features: torch.Tensor) -> None:
    pam, cam = PositionAttention(16).double(), ChannelAttention().double()
    assert pam.gamma.item() == 0.0 and cam.beta.item() == 0.0
    torch.testing.assert_close(pam(features), features)
    torch.testing.assert_close(cam(features), features)


def test_attention_rejects_too_few_channels() -> None:
    with pytest.raises(ValueError, match="channels=4"):
        PositionAttention(4)
