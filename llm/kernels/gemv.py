"""Triton int4 GEMV for decode (a few rows of activations against a repacked GPTQ matrix).

Each program owns ``BLOCK_N`` output columns and a contiguous range of 16-row tiles of the packed
matrix (split-K). The next tile's load is issued before the current tile is used, so loads
overlap arithmetic. Dequantisation turns four nibbles into two fp16 pairs per instruction pair
``lop3`` into the mantissa of an fp16 constant, then one packed FMA to ``(q - zero) / 16``),
multiplies by the paired fp16 activations with packed FMAs over the 8 values of a word, and
accumulates the word's sum in fp32. Split-K partial sums meet in an fp32 workspace; the last program of a column
block (a ticket counter) writes the fp16 result and leaves workspace and counter at zero again,
so one launch does everything and no memset is needed between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

BLOCK_R = 16  # packed rows (128 inputs) per tile

# One packed word (8 inputs) against four fp16 activation pairs. Nibbles 0/4 and 2/6 are masked
# into the mantissa of 1024.0 (value 1024 + q), nibbles 1/5 and 3/7 likewise without a shift
# (value 1024 + 16q); one packed FMA each turns them into (q - zero) / 16 exactly, which keeps
# the fp16 products small; the caller multiplies the fp32 word sum by 16 * scale.
_DOT8_ASM = tl.constexpr(
    """
{
.reg .b32 w0, w1, w2, w3, t, c16, c256;
.reg .b16 lo, hi;
.reg .f32 flo, fhi;
mov.b32 c16, 0x2C002C00;
mov.b32 c256, 0x1C001C00;
lop3.b32 w0, $1, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 w1, $1, 0x00F000F0, 0x64006400, 0xEA;
shr.b32 t, $1, 8;
lop3.b32 w2, t, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 w3, t, 0x00F000F0, 0x64006400, 0xEA;
fma.rn.f16x2 w0, w0, c16, $2;
fma.rn.f16x2 w1, w1, c256, $3;
fma.rn.f16x2 w2, w2, c16, $2;
fma.rn.f16x2 w3, w3, c256, $3;
mul.rn.f16x2 w0, w0, $4;
fma.rn.f16x2 w0, w1, $5, w0;
fma.rn.f16x2 w0, w2, $6, w0;
fma.rn.f16x2 w0, w3, $7, w0;
mov.b32 {lo, hi}, w0;
cvt.f32.f16 flo, lo;
cvt.f32.f16 fhi, hi;
add.f32 $0, flo, fhi;
}
"""
)
# fp16 pairs of -(64 + z/16) and -(4 + z/16) for the symmetric zero z = 8
_SYM_ZLO = tl.constexpr(0xD408D408 - (1 << 32))
_SYM_ZHI = tl.constexpr(0xC480C480 - (1 << 32))


@dataclass
class GemvConfig:
    """Launch shape of the decode kernel for one matrix."""

    block_n: int = 128
    split_k: int = 1
    num_warps: int = 4
    use_asm: bool = True


class SplitKWorkspace:
    """fp32 partial sums and ticket counters shared by all layers on one device (kept zeroed)."""

    def __init__(self, max_m: int, max_n: int, device: torch.device | str) -> None:
        self.max_m = max_m
        self.max_n = max_n
        self.acc = torch.zeros(max_m * max_n, dtype=torch.float32, device=device)
        self.counters = torch.zeros(
            max_m * triton.cdiv(max_n, 16), dtype=torch.int32, device=device
        )

    def check(self, m: int, n: int) -> None:
        if m > self.max_m or n > self.max_n:
            raise ValueError(
                f"split-K workspace sized for M<={self.max_m}, N<={self.max_n}; got M={m}, N={n}"
            )


@triton.jit
def _word_dot(w, z, x_ptr32, x_ptr16, rows, row_mask, SYM: tl.constexpr, USE_ASM: tl.constexpr):
    """Sum over the 8 inputs of each packed word of ``x[k] * (q[k] - zero) / 16`` -> fp32."""
    if USE_ASM:
        if SYM:
            zlo = tl.full(w.shape, _SYM_ZLO, tl.int32)
            zhi = tl.full(w.shape, _SYM_ZHI, tl.int32)
        else:
            lo_bits = 0xD400 + z
            hi_bits = 0xC400 + 16 * z
            zlo = lo_bits | (lo_bits << 16)
            zhi = hi_bits | (hi_bits << 16)
        x0 = tl.load(x_ptr32 + rows * 4 + 0, mask=row_mask, other=0)[:, None]
        x1 = tl.load(x_ptr32 + rows * 4 + 1, mask=row_mask, other=0)[:, None]
        x2 = tl.load(x_ptr32 + rows * 4 + 2, mask=row_mask, other=0)[:, None]
        x3 = tl.load(x_ptr32 + rows * 4 + 3, mask=row_mask, other=0)[:, None]
        part = tl.inline_asm_elementwise(
            _DOT8_ASM,
            "=f,r,r,r,r,r,r,r",
            [w, zlo, zhi, x0, x1, x2, x3],
            dtype=tl.float32,
            is_pure=True,
            pack=1,
        )
    else:
        if SYM:
            zf = 8.0
        else:
            zf = z.to(tl.float32)
        part = tl.zeros(w.shape, tl.float32)
        for j in tl.static_range(4):
            x_lo = tl.load(x_ptr16 + rows * 8 + 2 * j, mask=row_mask, other=0.0).to(tl.float32)
            x_hi = tl.load(x_ptr16 + rows * 8 + 2 * j + 1, mask=row_mask, other=0.0).to(tl.float32)
            q_lo = ((w >> (4 * j)) & 0xF).to(tl.float32) - zf
            q_hi = ((w >> (4 * j + 16)) & 0xF).to(tl.float32) - zf
            part += x_lo[:, None] * q_lo + x_hi[:, None] * q_hi
        part = part * 0.0625
    return part


@triton.jit
def _int4_gemv_kernel(
    x_ptr,
    qw_ptr,
    s_ptr,
    z_ptr,
    b_ptr,
    y_ptr,
    ws_ptr,
    cnt_ptr,
    N,
    K8,
    NUM_TILES,
    TILES_PER_SPLIT,
    stride_xm,
    stride_ym,
    HAS_ZEROS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GROUP_ROWS: tl.constexpr,
    SPLIT_K,
    SPLIT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
    USE_ASM: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_r = tl.arange(0, BLOCK_R)
    x_row16 = x_ptr + pid_m * stride_xm
    x_row32 = x_row16.to(tl.pointer_type(tl.int32))
    t_begin = pid_k * TILES_PER_SPLIT
    t_end = tl.minimum(t_begin + TILES_PER_SPLIT, NUM_TILES)
    row_end = tl.minimum(t_end * BLOCK_R, K8)
    rows = t_begin * BLOCK_R + offs_r
    w_ptrs = qw_ptr + rows[:, None] * N + offs_n[None, :]
    s_ptrs = s_ptr + offs_n[None, :]
    z_ptrs = z_ptr + offs_n[None, :]
    mask_n2 = mask_n[None, :]
    w = tl.load(w_ptrs, mask=(rows[:, None] < row_end) & mask_n2, other=0)
    acc = tl.zeros([BLOCK_R, BLOCK_N], tl.float32)
    for t in range(t_begin, t_end):
        rows = t * BLOCK_R + offs_r
        row_mask = rows < row_end
        w_ptrs += BLOCK_R * N
        w_next = tl.load(w_ptrs, mask=((rows[:, None] + BLOCK_R) < row_end) & mask_n2, other=0)
        if GROUP_ROWS % BLOCK_R == 0:
            g = (t * BLOCK_R) // GROUP_ROWS
            s = tl.load(s_ptrs + g * N, mask=mask_n2, other=0.0).to(tl.float32)
            if HAS_ZEROS:
                z = tl.load(z_ptrs + g * N, mask=mask_n2, other=0)
            else:
                z = 8
        else:
            g2 = (rows // GROUP_ROWS)[:, None] * N
            m2 = row_mask[:, None] & mask_n2
            s = tl.load(s_ptrs + g2, mask=m2, other=0.0).to(tl.float32)
            if HAS_ZEROS:
                z = tl.load(z_ptrs + g2, mask=m2, other=0)
            else:
                z = 8
        part = _word_dot(w, z, x_row32, x_row16, rows, row_mask, not HAS_ZEROS, USE_ASM)
        acc += part * (s * 16.0)
        w = w_next
    col = tl.sum(acc, axis=0)  # (BLOCK_N,)

    y_row = y_ptr + pid_m * stride_ym
    if not SPLIT:
        if HAS_BIAS:
            col += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        tl.store(y_row + offs_n, col.to(y_ptr.dtype.element_ty), mask=mask_n)
    else:
        ws = ws_ptr + pid_m * N + offs_n
        tl.atomic_add(ws, col, mask=mask_n, sem="relaxed")
        tl.debug_barrier()
        cnt = cnt_ptr + pid_m * tl.num_programs(0) + pid_n
        ticket = tl.atomic_add(cnt, 1, sem="acq_rel")
        if ticket == SPLIT_K - 1:
            # read through L2 (atomics) what the other splits added, then leave zeros behind
            total = tl.atomic_add(ws, tl.zeros([BLOCK_N], tl.float32), mask=mask_n, sem="acquire")
            tl.store(ws, tl.zeros([BLOCK_N], tl.float32), mask=mask_n)
            if HAS_BIAS:
                total += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
            tl.store(y_row + offs_n, total.to(y_ptr.dtype.element_ty), mask=mask_n)
            tl.store(cnt, 0)


def int4_gemv(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
    workspace: SplitKWorkspace | None,
    config: GemvConfig,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x (M, K) fp16 @ W + b`` for small M; W in the repacked layout. Returns ``(M, N)``."""
    m, k = x.shape
    k8, n = qweight.shape
    if k != k8 * 8 or x.stride(1) != 1 or x.stride(0) % 2:
        raise ValueError(f"int4_gemv: x of shape {tuple(x.shape)} does not match qweight {k8}x{n}")
    y = torch.empty(m, n, dtype=x.dtype, device=x.device) if out is None else out
    tiles = triton.cdiv(k8, BLOCK_R)
    split = max(1, min(config.split_k, tiles))
    per_split = triton.cdiv(tiles, split)
    split = triton.cdiv(tiles, per_split)
    grid_n = triton.cdiv(n, config.block_n)
    if split > 1:
        if workspace is None:
            raise ValueError("int4_gemv: split_k > 1 needs a SplitKWorkspace")
        workspace.check(m, n)
        if grid_n * m > workspace.counters.numel():
            raise ValueError("int4_gemv: workspace counters too small for this block size")
        ws, cnt = workspace.acc, workspace.counters
    else:
        ws = cnt = y  # unused
    _int4_gemv_kernel[(grid_n, split, m)](
        x,
        qweight,
        scales,
        zeros if zeros is not None else qweight,
        bias if bias is not None else scales,
        y,
        ws,
        cnt,
        n,
        k8,
        tiles,
        per_split,
        x.stride(0),
        y.stride(0),
        HAS_ZEROS=zeros is not None,
        HAS_BIAS=bias is not None,
        GROUP_ROWS=group_size // 8,
        SPLIT_K=split,
        SPLIT=split > 1,
        BLOCK_N=config.block_n,
        BLOCK_R=BLOCK_R,
        USE_ASM=config.use_asm,
        num_warps=config.num_warps,
    )
    return y
