"""Triton int4 GEMM for prefill on the tensor cores, and a dequantise kernel for cuBLAS.

``int4_gemm`` dequantises each ``BLOCK_K x BLOCK_N`` weight tile in registers (fp16) and feeds it
to ``tl.dot`` with fp32 accumulation; the activation tile is loaded in the repacked nibble order,
so no reordering of the weights is needed. ``dequantize`` writes the whole fp16 matrix once, for
long prompts where cuBLAS on the dense matrix beats the fused kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@dataclass
class GemmConfig:
    """Tile shape of the prefill kernel."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    group_m: int = 8
    num_warps: int = 8
    num_stages: int = 3


@triton.jit
def _int4_gemm_kernel(
    x_ptr,
    qw_ptr,
    s_ptr,
    z_ptr,
    b_ptr,
    y_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_ym,
    HAS_ZEROS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GROUP_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    rows_in_group = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % rows_in_group
    pid_n = (pid % per_group) // rows_in_group

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    c = tl.arange(0, BLOCK_K)
    nib = c % 8
    k_in = 8 * (c // 8) + 2 * (nib % 4) + nib // 4  # input index held by tile row c
    shifts = 4 * nib
    K8 = K // 8

    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for kt in tl.range(0, tl.cdiv(K, BLOCK_K), num_stages=NUM_STAGES):
        k0 = kt * BLOCK_K
        kk = k0 + k_in
        a = tl.load(
            x_ptr + offs_m[:, None] * stride_xm + kk[None, :],
            mask=mask_m[:, None] & (kk[None, :] < K),
            other=0.0,
        )
        prow = k0 // 8 + c // 8
        p = tl.load(
            qw_ptr + prow[:, None] * N + offs_n[None, :],
            mask=(prow[:, None] < K8) & mask_n[None, :],
            other=0,
        )
        g = k0 // GROUP_SIZE
        s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0)
        q = ((p >> shifts[:, None]) & 0xF).to(tl.float16)
        if HAS_ZEROS:
            z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0).to(tl.float16)
            w = (q - z[None, :]) * s[None, :]
        else:
            w = (q - 8.0) * s[None, :]
        acc = tl.dot(a, w.to(a.dtype), acc)

    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _dequant_kernel(
    qw_ptr,
    s_ptr,
    z_ptr,
    w_ptr,
    N,
    K8,
    HAS_ZEROS: tl.constexpr,
    GROUP_SIZE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < K8) & (offs_n[None, :] < N)
    p = tl.load(qw_ptr + rows[:, None] * N + offs_n[None, :], mask=mask, other=0)
    for i in tl.static_range(8):
        k = 8 * rows + (2 * (i % 4) + i // 4)
        g = k // GROUP_SIZE
        s = tl.load(s_ptr + g[:, None] * N + offs_n[None, :], mask=mask, other=0.0).to(tl.float32)
        q = ((p >> (4 * i)) & 0xF).to(tl.float32)
        if HAS_ZEROS:
            q -= tl.load(z_ptr + g[:, None] * N + offs_n[None, :], mask=mask, other=0).to(
                tl.float32
            )
        else:
            q -= 8.0
        tl.store(
            w_ptr + k[:, None] * N + offs_n[None, :], (q * s).to(w_ptr.dtype.element_ty), mask=mask
        )


def _block_k(group_size: int, wanted: int) -> int:
    for bk in (wanted, 128, 64, 32, 16):
        if bk <= wanted and group_size % bk == 0:
            return bk
    raise ValueError(f"int4_gemm: group size {group_size} is not a multiple of 16")


def int4_gemm(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
    config: GemmConfig,
) -> torch.Tensor:
    """``x (M, K) fp16 @ W + b`` on the tensor cores; W in the repacked layout."""
    m, k = x.shape
    k8, n = qweight.shape
    if k != k8 * 8 or x.stride(1) != 1:
        raise ValueError(f"int4_gemm: x of shape {tuple(x.shape)} does not match qweight {k8}x{n}")
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    bk = _block_k(group_size, config.block_k)
    grid = (triton.cdiv(m, config.block_m) * triton.cdiv(n, config.block_n),)
    _int4_gemm_kernel[grid](
        x,
        qweight,
        scales,
        zeros if zeros is not None else qweight,
        bias if bias is not None else scales,
        y,
        m,
        n,
        k,
        x.stride(0),
        y.stride(0),
        HAS_ZEROS=zeros is not None,
        HAS_BIAS=bias is not None,
        GROUP_SIZE=group_size,
        BLOCK_M=config.block_m,
        BLOCK_N=config.block_n,
        BLOCK_K=bk,
        GROUP_M=config.group_m,
        NUM_STAGES=config.num_stages,
        num_warps=config.num_warps,
    )
    return y


def dequantize(
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    group_size: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Repacked int4 -> dense ``(K, N)`` matrix in ``scales``' dtype (or into ``out``)."""
    k8, n = qweight.shape
    w = torch.empty(k8 * 8, n, dtype=scales.dtype, device=qweight.device) if out is None else out
    block_r, block_n = 16, 128
    grid = (triton.cdiv(k8, block_r), triton.cdiv(n, block_n))
    _dequant_kernel[grid](
        qweight,
        scales,
        zeros if zeros is not None else qweight,
        w,
        n,
        k8,
        HAS_ZEROS=zeros is not None,
        GROUP_SIZE=group_size,
        BLOCK_R=block_r,
        BLOCK_N=block_n,
        num_warps=4,
    )
    return w
