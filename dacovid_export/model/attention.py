"""Position and channel attention of DA-COVID Net (paper equations (1)-(4)).

Both are written as batched MatMul + Softmax over flattened positions so that
torch.onnx exports MatMul -> Softmax -> MatMul, the pattern TensorRT fuses.
No Python integer read from the input shape reaches a reshape: ``flatten`` and
``view_as`` keep batch, height and width symbolic through export.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PositionAttention", "ChannelAttention"]


class PositionAttention(nn.Module):
    """PAM: ``E_j = gamma * sum_i softmax_i(Q_j . K_i) V_i + A_j`` over positions j, i.

    ``gamma`` starts at 0, so a fresh module is the identity and training
    blends attention in gradually (DANet's choice). The paper calls it alpha.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(f"channels={channels!r}: PositionAttention needs >= 8 channels (query/key use channels // 8)")
        self.query = nn.Conv2d(channels, channels // 8, kernel_size=1, bias=True)
        self.key = nn.Conv2d(channels, channels // 8, kernel_size=1, bias=True)
        self.value = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x C x H x W, N = H*W, C' = C // 8
        q = self.query(x).flatten(2)  # B x C' x N
        k = self.key(x).flatten(2)  # B x C' x N
        v = self.value(x).flatten(2)  # B x C x N
        energy = torch.matmul(q.transpose(1, 2), k)  # B x N x N, [j, i] = Q_j . K_i
        attention = torch.softmax(energy, dim=-1)  # normalised over i
        out = torch.matmul(v, attention.transpose(1, 2))  # B x C x N, [:, c, j] = sum_i s_ji V_ci
        return self.gamma * out.view_as(x) + x


class ChannelAttention(nn.Module):
    """CAM: ``E_j = beta * sum_i softmax_i(A_j . A_i) A_i + A_j`` over channels j, i.

    A plain softmax of ``A A^T`` as the paper writes it, not DANet's
    ``softmax(rowmax - energy)``. The energies are large (~2e6 measured at
    224x224), which is why FP16 artifacts keep this module in FP32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(2)  # B x C x N
        energy = torch.matmul(a, a.transpose(1, 2))  # B x C x C, [j, i] = A_j . A_i
        attention = torch.softmax(energy, dim=-1)
        out = torch.matmul(attention, a)  # B x C x N
        return self.beta * out.view_as(x) + x
