"""GPTQ v1 int4 layout: unpacking, and the repacked layout the CUDA kernels read.

Checkpoint layout (AutoGPTQ "v1", ``y = x @ W + b`` with ``W`` of shape ``(K, N)``):

* ``qweight`` int32 ``(K/8, N)``: nibble ``j`` (bits ``4j..4j+3``) of row ``r`` holds ``q[8r + j]``.
* ``qzeros`` int32 ``(G, N/8)``: nibble ``j`` of column ``c`` holds ``zero[8c + j] - 1``.
* ``scales`` fp16 ``(G, N)``; ``W[k, n] = scales[g, n] * (q[k, n] - zero[g, n])`` with ``g = k // group``.

Repacked layout: the same ``(K/8, N)`` int32 matrix, with the nibbles of each word reordered so
that nibble ``i`` holds ``k = 8r + NIBBLE_ORDER[i]``. Masking a word with ``0x000F000F`` after a
shift by ``4j`` then yields ``k = 8r + 2j`` in the low half-word and ``8r + 2j + 1`` in the high
half-word: two neighbouring inputs, which pair with one 32-bit load of two fp16 activations.
"""

from __future__ import annotations

import torch

PACK = 8  # int4 values per int32 word
NIBBLE_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # k offset stored in nibble i of a repacked word
SYMMETRIC_ZERO = 8


def unpack_rows(qweight: torch.Tensor) -> torch.Tensor:
    """``(K/8, N)`` int32 packed along rows -> ``(K, N)`` int32 values in ``0..15``."""
    shifts = torch.arange(0, 32, 4, device=qweight.device, dtype=torch.int32)
    q = (qweight.unsqueeze(1) >> shifts.view(1, PACK, 1)) & 0xF  # (K/8, 8, N)
    return q.reshape(-1, qweight.shape[1])


def unpack_cols(qzeros: torch.Tensor) -> torch.Tensor:
    """``(G, N/8)`` int32 packed along columns -> ``(G, N)`` int32 values in ``0..15``."""
    shifts = torch.arange(0, 32, 4, device=qzeros.device, dtype=torch.int32)
    q = (qzeros.unsqueeze(2) >> shifts.view(1, 1, PACK)) & 0xF  # (G, N/8, 8)
    return q.reshape(qzeros.shape[0], -1)


def pack_rows(q: torch.Tensor, order: tuple[int, ...] = tuple(range(PACK))) -> torch.Tensor:
    """``(K, N)`` values in ``0..15`` -> ``(K/8, N)`` int32; nibble ``i`` holds ``q[8r + order[i]]``."""
    k, n = q.shape
    if k % PACK:
        raise ValueError(f"pack_rows: K={k} is not a multiple of {PACK}")
    grouped = q.to(torch.int32).reshape(k // PACK, PACK, n)  # (K/8, 8, N)
    out = torch.zeros(k // PACK, n, dtype=torch.int32, device=q.device)
    for i, src in enumerate(order):
        out |= grouped[:, src, :] << (4 * i)
    return out


def zeros_from_qzeros(qzeros: torch.Tensor, n: int) -> torch.Tensor:
    """True zero points ``(G, N)`` int32 (stored value + 1, as AutoGPTQ v1 writes them)."""
    return unpack_cols(qzeros)[:, :n] + 1


def repack_qweight(qweight: torch.Tensor) -> torch.Tensor:
    """GPTQ v1 ``qweight`` -> the kernels' nibble order, computed in row chunks to bound memory."""
    out = torch.empty_like(qweight)
    step = 2048
    for r0 in range(0, qweight.shape[0], step):
        block = unpack_rows(qweight[r0 : r0 + step])
        out[r0 : r0 + step] = pack_rows(block, NIBBLE_ORDER)
    return out


def unpack_repacked(qweight_r: torch.Tensor) -> torch.Tensor:
    """Repacked ``(K/8, N)`` int32 -> ``(K, N)`` int32 values in checkpoint (k) order."""
    q = unpack_rows(qweight_r).reshape(qweight_r.shape[0], PACK, -1)  # (K/8, nibble, N)
    inverse = [NIBBLE_ORDER.index(j) for j in range(PACK)]
    return q[:, inverse, :].reshape(-1, qweight_r.shape[1])


def check_group_index(g_idx: torch.Tensor | None, k: int, group_size: int) -> bool:
    """True when ``g_idx`` is the trivial ``k // group_size`` (no act-order permutation)."""
    if g_idx is None:
        return True
    expected = torch.arange(k, device=g_idx.device, dtype=torch.int64) // group_size
    return bool(torch.equal(g_idx.to(torch.int64), expected))
