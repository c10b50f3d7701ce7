"""Fused Triton kernels for the single-token decode step (batch 1, fp16 activations).

``add_rmsnorm``: residual add and RMSNorm in one pass; ``rope_kv``: rotary (fp32), logN and the
KV-cache write for one position read from a device tensor; ``decode_attention``: split-KV
attention over the first ``position + 1`` cache slots (the length is read on the device, so one
CUDA graph serves every context length); ``silu_mul``: ``a * silu(b)``. Rounding follows the
PyTorch model: fp32 inside each op, fp16 between ops.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, d_ptr, w_ptr, out_ptr, N, eps, HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if HAS_DELTA:
        x = x + tl.load(d_ptr + offs, mask=mask, other=0.0)
        tl.store(x_ptr + offs, x, mask=mask)
    xf = x.to(tl.float32)
    inv = tl.rsqrt(tl.sum(xf * xf, axis=0) / N + eps)
    normed = (xf * inv).to(x_ptr.dtype.element_ty)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(x_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, normed * w, mask=mask)


def add_rmsnorm(
    x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """``x += delta`` (in place, when given), then ``RMSNorm(x) * weight``; 1-D ``x``."""
    n = x.numel()
    out = torch.empty_like(x)
    block = triton.next_power_of_2(n)
    _add_rmsnorm_kernel[(1,)](
        x, delta if delta is not None else x, weight, out, n, eps,
        HAS_DELTA=delta is not None, BLOCK=block, num_warps=16,
    )  # fmt: skip
    return out


@triton.jit
def _rope_kv_kernel(
    qkv_ptr, pos_ptr, cos_ptr, sin_ptr, logn_ptr, q_ptr, kc_ptr, vc_ptr, C, stride_s,
    D: tl.constexpr, HALF: tl.constexpr,
):  # fmt: skip
    h = tl.program_id(0)
    pos = tl.load(pos_ptr)
    d = tl.arange(0, HALF)
    c1 = tl.load(cos_ptr + pos * D + d)
    c2 = tl.load(cos_ptr + pos * D + HALF + d)
    s1 = tl.load(sin_ptr + pos * D + d)
    s2 = tl.load(sin_ptr + pos * D + HALF + d)
    base = h * D
    dt = q_ptr.dtype.element_ty
    q1 = tl.load(qkv_ptr + base + d).to(tl.float32)
    q2 = tl.load(qkv_ptr + base + HALF + d).to(tl.float32)
    logn = tl.load(logn_ptr + pos).to(dt)
    tl.store(q_ptr + base + d, (q1 * c1 - q2 * s1).to(dt) * logn)
    tl.store(q_ptr + base + HALF + d, (q2 * c2 + q1 * s2).to(dt) * logn)
    k1 = tl.load(qkv_ptr + C + base + d).to(tl.float32)
    k2 = tl.load(qkv_ptr + C + base + HALF + d).to(tl.float32)
    slot = pos * stride_s + base
    tl.store(kc_ptr + slot + d, (k1 * c1 - k2 * s1).to(dt))
    tl.store(kc_ptr + slot + HALF + d, (k2 * c2 + k1 * s2).to(dt))
    dd = tl.arange(0, D)
    tl.store(vc_ptr + slot + dd, tl.load(qkv_ptr + 2 * C + base + dd))


def rope_kv(
    qkv: torch.Tensor,
    position: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    logn: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    heads: int,
    head_dim: int,
) -> torch.Tensor:
    """Rotate q/k of one token at ``position``, scale q by logN, write k/v into the cache.

    ``qkv`` holds ``[q | k | v]`` (3C,); caches are ``(1, S, H, D)``. Returns q ``(H, D)``.
    """
    q = torch.empty(heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    _rope_kv_kernel[(heads,)](
        qkv, position, cos, sin, logn, q, k_cache, v_cache, heads * head_dim, k_cache.stride(1),
        D=head_dim, HALF=head_dim // 2, num_warps=1,
    )  # fmt: skip
    return q


@triton.jit
def _attn_split_kernel(
    q_ptr, kc_ptr, vc_ptr, pos_ptr, part_ptr, stride_s, scale,
    D: tl.constexpr, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    h = tl.program_id(0)
    sp = tl.program_id(1)
    kv_len = tl.load(pos_ptr).to(tl.int32) + 1
    chunk = tl.cdiv(tl.cdiv(kv_len, SPLITS), BLOCK_S) * BLOCK_S
    start = sp * chunk
    end = tl.minimum(start + chunk, kv_len)
    dd = tl.arange(0, D)
    q = tl.load(q_ptr + h * D + dd).to(tl.float32) * scale
    m = tl.full([1], float("-inf"), tl.float32)
    l_sum = tl.zeros([1], tl.float32)
    acc = tl.zeros([D], tl.float32)
    for s0 in range(start, end, BLOCK_S):
        offs = s0 + tl.arange(0, BLOCK_S)
        valid = offs < end
        ptrs = offs[:, None] * stride_s + h * D + dd[None, :]
        k = tl.load(kc_ptr + ptrs, mask=valid[:, None], other=0.0).to(tl.float32)
        v = tl.load(vc_ptr + ptrs, mask=valid[:, None], other=0.0).to(tl.float32)
        scores = tl.where(valid, tl.sum(k * q[None, :], axis=1), float("-inf"))  # (BLOCK_S,)
        m_new = tl.maximum(m, tl.max(scores, axis=0))
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new)
        l_sum = l_sum * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m = m_new
    out = part_ptr + (h * SPLITS + sp) * (D + 2)
    tl.store(out + dd, acc)
    tl.store(out + D + tl.arange(0, 1), m)
    tl.store(out + D + 1 + tl.arange(0, 1), l_sum)


@triton.jit
def _attn_combine_kernel(part_ptr, o_ptr, D: tl.constexpr, SPLITS: tl.constexpr):
    h = tl.program_id(0)
    sp = tl.arange(0, SPLITS)
    dd = tl.arange(0, D)
    rows = part_ptr + (h * SPLITS + sp) * (D + 2)
    m = tl.load(rows + D)
    l_sum = tl.load(rows + D + 1)
    m_all = tl.max(m, axis=0)
    w = tl.where(l_sum > 0, tl.exp(m - m_all), 0.0)
    acc = tl.load(rows[:, None] + dd[None, :])
    o = tl.sum(acc * w[:, None], axis=0) / tl.sum(l_sum * w, axis=0)
    tl.store(o_ptr + h * D + dd, o.to(o_ptr.dtype.element_ty))


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    position: torch.Tensor,
    splits: int = 16,
) -> torch.Tensor:
    """Softmax attention of q ``(H, D)`` over cache slots ``0..position``; returns ``(H*D,)``."""
    heads, d = q.shape
    part = torch.empty(heads, splits, d + 2, dtype=torch.float32, device=q.device)
    _attn_split_kernel[(heads, splits)](
        q, k_cache, v_cache, position, part, k_cache.stride(1), d**-0.5,
        D=d, SPLITS=splits, BLOCK_S=32, num_warps=4,
    )  # fmt: skip
    o = torch.empty(heads * d, dtype=q.dtype, device=q.device)
    _attn_combine_kernel[(heads,)](part, o, D=d, SPLITS=splits, num_warps=4)
    return o


@triton.jit
def _silu_mul_kernel(a_ptr, b_ptr, o_ptr, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(a_ptr + offs, mask=mask, other=0.0)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    silu = (b / (1.0 + tl.exp(-b))).to(a.dtype)
    tl.store(o_ptr + offs, a * silu, mask=mask)


def silu_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a * silu(b)`` elementwise (Qwen's MLP gate: SiLU on ``w2``)."""
    out = torch.empty_like(a)
    n = a.numel()
    _silu_mul_kernel[(triton.cdiv(n, 2048),)](a, b, out, n, BLOCK=2048, num_warps=4)
    return out
