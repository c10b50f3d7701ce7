"""Plain PyTorch twins of the int4 kernels: slow, obviously correct, used by the tests."""

from __future__ import annotations

import torch

from llm.kernels.layout import unpack_repacked, unpack_rows, zeros_from_qzeros


def dequantize_gptq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Checkpoint buffers -> ``W`` float32 ``(K, N)`` with ``W[k, n] = s * (q - zero)``."""
    q = unpack_rows(qweight).float()  # (K, N)
    n = qweight.shape[1]
    zeros = zeros_from_qzeros(qzeros, n).float()  # (G, N)
    g = torch.arange(q.shape[0], device=q.device) // group_size
    return (q - zeros[g]) * scales.float()[g]


def dequantize_repacked(
    qweight_r: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int
) -> torch.Tensor:
    """Repacked buffers -> ``W`` float32 ``(K, N)``; ``zeros=None`` means symmetric (zero 8)."""
    q = unpack_repacked(qweight_r).float()  # (K, N)
    g = torch.arange(q.shape[0], device=q.device) // group_size
    z = 8.0 if zeros is None else zeros.float()[g]
    return (q - z) * scales.float()[g]


def int4_linear_reference(
    x: torch.Tensor,
    qweight_r: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
) -> torch.Tensor:
    """``x @ W + b`` in float32 from the repacked layout; returns x's dtype."""
    w = dequantize_repacked(qweight_r, scales, zeros, group_size)
    y = x.float() @ w
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
