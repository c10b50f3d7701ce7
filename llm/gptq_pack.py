"""Quantize float weights into GPTQ v1 int4 tensors (the inverse of ``llm.quant.dequantize``).

Round-to-nearest symmetric quantization (zero point 8, ``scale = max|w| / 7`` per group and
output column), packed exactly as AutoGPTQ's v1 checkpoints: qzeros stored as ``zero - 1``,
nibbles low to high. ``act_order`` assigns input rows to groups in a permuted order and writes
the matching ``g_idx``, as act-order (``desc_act``) checkpoints do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from llm.quant import PACK, QUANTIZED_LINEARS, num_groups

SYMMETRIC_ZERO = 8
MAXQ = 15


@dataclass
class GPTQTensors:
    """The tensors of one quantized linear, as stored in a checkpoint."""

    qweight: torch.Tensor  # (K/8, N) int32
    qzeros: torch.Tensor  # (G, N/8) int32
    scales: torch.Tensor  # (G, N) fp16
    g_idx: torch.Tensor  # (K,) int32

    def as_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.qweight": self.qweight,
            f"{prefix}.qzeros": self.qzeros,
            f"{prefix}.scales": self.scales,
            f"{prefix}.g_idx": self.g_idx,
        }


def pack_rows(q: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` values in ``0..15`` -> ``(K/8, N)`` int32, nibble ``j`` = row ``8r + j``."""
    k, n = q.shape
    if k % PACK:
        raise ValueError(f"cannot pack {k} rows into int32 words of {PACK} nibbles")
    grouped = q.to(torch.int64).reshape(k // PACK, PACK, n)  # (K/8, 8, N)
    words = torch.zeros(k // PACK, n, dtype=torch.int64)
    for j in range(PACK):
        words |= grouped[:, j, :] << (4 * j)
    return _to_int32(words)


def pack_cols(q: torch.Tensor) -> torch.Tensor:
    """``(G, N)`` values in ``0..15`` -> ``(G, N/8)`` int32, nibble ``j`` = column ``8c + j``."""
    g, n = q.shape
    if n % PACK:
        raise ValueError(f"cannot pack {n} columns into int32 words of {PACK} nibbles")
    grouped = q.to(torch.int64).reshape(g, n // PACK, PACK)  # (G, N/8, 8)
    words = torch.zeros(g, n // PACK, dtype=torch.int64)
    for j in range(PACK):
        words |= grouped[:, :, j] << (4 * j)
    return _to_int32(words)


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """Reinterpret unsigned 32-bit values held in int64 as int32 (two's complement)."""
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def group_index(
    in_features: int, group_size: int, perm: torch.Tensor | None = None
) -> torch.Tensor:
    """``g_idx``: the group of each input row; with ``perm`` rows are grouped in that order."""
    order = torch.arange(in_features) if perm is None else perm.long()
    size = in_features if group_size == -1 else group_size
    g_idx = torch.empty(in_features, dtype=torch.int32)
    g_idx[order] = (torch.arange(in_features) // size).to(torch.int32)
    return g_idx


def pack_gptq(
    q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor
) -> GPTQTensors:
    """Pack integer weights ``q`` ``(K, N)``, zero points and scales ``(G, N)`` (v1 format)."""
    return GPTQTensors(
        qweight=pack_rows(q),
        qzeros=pack_cols(zeros - 1),  # v1 checkpoints store zero - 1
        scales=scales.to(torch.float16).contiguous(),
        g_idx=g_idx.to(torch.int32).contiguous(),
    )


def quantize_weight(
    weight: torch.Tensor,
    group_size: int = 128,
    *,
    act_order: bool = False,
    generator: torch.Generator | None = None,
) -> GPTQTensors:
    """Quantize an ``nn.Linear`` weight ``(out, in)`` to GPTQ v1 int4 tensors.

    With ``act_order`` the rows are grouped in a random order drawn from ``generator`` (a
    stand-in for GPTQ's Hessian order), giving a non-trivial ``g_idx``.
    """
    w = weight.detach().to(torch.float32).t().contiguous()  # (K, N)
    k, n = w.shape
    if group_size != -1 and group_size <= 0:
        raise ValueError(f"group_size must be positive or -1, got {group_size}")
    perm = torch.randperm(k, generator=generator) if act_order else None
    g_idx = group_index(k, group_size, perm)
    groups = num_groups(k, group_size)
    amax = torch.zeros(groups, n)  # (G, N)
    for g in range(groups):
        rows = w[g_idx == g]
        if rows.numel():
            amax[g] = rows.abs().amax(dim=0)
    scales = (amax.clamp_min(1e-8) / 7).to(torch.float16)
    s = scales.float()[g_idx.long()]  # (K, N)
    q = torch.clamp(torch.round(w / s) + SYMMETRIC_ZERO, 0, MAXQ).to(torch.int32)
    zeros = torch.full((groups, n), SYMMETRIC_ZERO, dtype=torch.int32)
    return pack_gptq(q, zeros, scales, g_idx)


def quantize_state_dict(
    state: Mapping[str, torch.Tensor],
    group_size: int = 128,
    *,
    act_order: bool = False,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A float Qwen state dict -> checkpoint tensors in the Qwen Int4 layout.

    The linears named in ``QUANTIZED_LINEARS`` become ``qweight/qzeros/scales/g_idx/bias``
    (a zero fp16 bias where the float layer has none, as AutoGPTQ writes it); every other
    tensor is stored as fp16.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        module, _, leaf = name.rpartition(".")
        if module.endswith(QUANTIZED_LINEARS) and leaf == "weight":
            packed = quantize_weight(tensor, group_size, act_order=act_order, generator=gen)
            out.update(packed.as_dict(module))
            bias = state.get(f"{module}.bias")
            if bias is None:
                bias = torch.zeros(tensor.shape[0])
            out[f"{module}.bias"] = bias.detach().to(torch.float16).contiguous()
        elif module.endswith(QUANTIZED_LINEARS) and leaf == "bias":
            continue
        else:
            out[name] = tensor.detach().to(torch.float16).contiguous()
    return out
