"""Triton int4 GEMV for decode (a few rows of activations against a repacked GPTQ matrix).

Each program owns ``BLOCK_N`` output columns and a contiguous range of 16-row tiles of the packed
matrix (split-K). The next tile's load is issued before the current tile is used, so loads
overlap arithmetic. Dequantisation turns four nibbles into two fp16 pairs per instruction pair
``lop3`` into the mantissa of an fp16 constant, then one packed FMA to ``(q - zero) / 16``),
multiplies by the paired fp16 activations with packed FMAs over the 8 values of a word, and
accumulates the word's sum in fp32. Split-K partial sums meet in an fp32 workspace; the last
program of a column block (a ticket counter) writes the fp16 result and leaves workspace and
counter at zero again, so one launch does everything and no memset is needed between calls.
With ``accumulate=True`` the partial sums go straight into the caller's fp32 output instead and
the kernel ends there: whoever reads that output rounds it and clears it (the decode step's
attention and add + RMSNorm kernels do), which saves the ticket and the read-back (~1 us a call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from llm.kernels import overlap as ovl
from llm.kernels.overlap import release_after_loop, release_at_start, wait_if_early

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
    paired: bool = True  # the maskless paired-word kernel where the shape allows it
    weight_evict: str = ""  # paired kernel: L2 eviction hint of the weight loads ("evict_first")
    max_registers: int | None = None  # paired kernel: per-thread register cap given to ptxas


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
    ACCUMULATE: tl.constexpr,
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
    if ACCUMULATE:
        _accumulate(col, b_ptr, y_row, offs_n, mask_n, pid_k, HAS_BIAS)
    elif not SPLIT:
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


# Two packed words of one column (rows r and r + 8 of a 16-row tile, same scale group) against
# their fp16 activation pairs: the 16 products are summed in one packed-fp16 accumulator, then
# converted once; the caller multiplies the fp32 sum by 16 * scale. The activations come as
# four 64-bit words (two pairs each), so a tile needs four loads of them instead of eight.
_DOT16_ASM = tl.constexpr(
    """
{
.reg .b32 a0, a1, a2, a3, b0, b1, b2, b3, t, acc, x0, x1, x2, x3, x4, x5, x6, x7;
.reg .b16 lo, hi;
.reg .f32 flo, fhi;
mov.b64 {x0, x1}, $7;
mov.b64 {x2, x3}, $8;
mov.b64 {x4, x5}, $9;
mov.b64 {x6, x7}, $10;
lop3.b32 a0, $1, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 a1, $1, 0x00F000F0, 0x64006400, 0xEA;
shr.b32 t, $1, 8;
lop3.b32 a2, t, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 a3, t, 0x00F000F0, 0x64006400, 0xEA;
lop3.b32 b0, $2, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 b1, $2, 0x00F000F0, 0x64006400, 0xEA;
shr.b32 t, $2, 8;
lop3.b32 b2, t, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 b3, t, 0x00F000F0, 0x64006400, 0xEA;
fma.rn.f16x2 a0, a0, $5, $3;
fma.rn.f16x2 a1, a1, $6, $4;
fma.rn.f16x2 a2, a2, $5, $3;
fma.rn.f16x2 a3, a3, $6, $4;
fma.rn.f16x2 b0, b0, $5, $3;
fma.rn.f16x2 b1, b1, $6, $4;
fma.rn.f16x2 b2, b2, $5, $3;
fma.rn.f16x2 b3, b3, $6, $4;
mul.rn.f16x2 acc, a0, x0;
fma.rn.f16x2 acc, a1, x1, acc;
fma.rn.f16x2 acc, a2, x2, acc;
fma.rn.f16x2 acc, a3, x3, acc;
fma.rn.f16x2 acc, b0, x4, acc;
fma.rn.f16x2 acc, b1, x5, acc;
fma.rn.f16x2 acc, b2, x6, acc;
fma.rn.f16x2 acc, b3, x7, acc;
mov.b32 {lo, hi}, acc;
cvt.f32.f16 flo, lo;
cvt.f32.f16 fhi, hi;
add.f32 $0, flo, fhi;
}
"""
)
_C16 = tl.constexpr(0x2C002C00)  # fp16 pair (1/16, 1/16)
_C256 = tl.constexpr(0x1C001C00)  # fp16 pair (1/256, 1/256)


@triton.jit
def _pair_dot(wa, wb, z, x_ptr16, rows_a, HALF: tl.constexpr, SYM: tl.constexpr,
              USE_ASM: tl.constexpr):  # fmt: skip
    """Sum over the 16 inputs of words ``wa`` (rows ``rows_a``) and ``wb`` (``rows_a + HALF``)."""
    rows_b = rows_a + HALF
    if USE_ASM:
        if SYM:
            zlo = tl.full(wa.shape, _SYM_ZLO, tl.int32)
            zhi = tl.full(wa.shape, _SYM_ZHI, tl.int32)
        else:
            lo_bits = 0xD400 + z
            hi_bits = 0xC400 + 16 * z
            zlo = tl.broadcast_to(lo_bits | (lo_bits << 16), wa.shape)
            zhi = tl.broadcast_to(hi_bits | (hi_bits << 16), wa.shape)
        c16 = tl.full(wa.shape, _C16, tl.int32)
        c256 = tl.full(wa.shape, _C256, tl.int32)
        x_ptr64 = x_ptr16.to(tl.pointer_type(tl.int64))  # rows are 8-byte aligned (the caller)
        xa01 = tl.load(x_ptr64 + rows_a * 2)[:, None]
        xa23 = tl.load(x_ptr64 + rows_a * 2 + 1)[:, None]
        xb01 = tl.load(x_ptr64 + rows_b * 2)[:, None]
        xb23 = tl.load(x_ptr64 + rows_b * 2 + 1)[:, None]
        part = tl.inline_asm_elementwise(
            _DOT16_ASM,
            "=f,r,r,r,r,r,r,l,l,l,l",
            [wa, wb, zlo, zhi, c16, c256, xa01, xa23, xb01, xb23],
            dtype=tl.float32,
            is_pure=True,
            pack=1,
        )
    else:
        if SYM:
            zf = 8.0
        else:
            zf = z.to(tl.float32)
        part = tl.zeros(wa.shape, tl.float32)
        for j in tl.static_range(4):
            xa_lo = tl.load(x_ptr16 + rows_a * 8 + 2 * j).to(tl.float32)[:, None]
            xa_hi = tl.load(x_ptr16 + rows_a * 8 + 2 * j + 1).to(tl.float32)[:, None]
            xb_lo = tl.load(x_ptr16 + rows_b * 8 + 2 * j).to(tl.float32)[:, None]
            xb_hi = tl.load(x_ptr16 + rows_b * 8 + 2 * j + 1).to(tl.float32)[:, None]
            part += xa_lo * (((wa >> (4 * j)) & 0xF).to(tl.float32) - zf)
            part += xa_hi * (((wa >> (4 * j + 16)) & 0xF).to(tl.float32) - zf)
            part += xb_lo * (((wb >> (4 * j)) & 0xF).to(tl.float32) - zf)
            part += xb_hi * (((wb >> (4 * j + 16)) & 0xF).to(tl.float32) - zf)
        part = part * 0.0625
    return part


@triton.jit
def _load_tile(qw_ptr, s_ptr, z_ptr, offs, offs_n, t, N, half_step, HAS_ZEROS: tl.constexpr,
               GROUP_ROWS: tl.constexpr, BLOCK_R: tl.constexpr, W_EVICT: tl.constexpr):  # fmt: skip
    """Tile ``t``'s two half-tiles of words, its scales and (``HAS_ZEROS``) zero points."""
    base = t * BLOCK_R * N
    wa = tl.load(qw_ptr + base + offs, eviction_policy=W_EVICT)
    wb = tl.load(qw_ptr + base + half_step + offs, eviction_policy=W_EVICT)
    g = (t * BLOCK_R // GROUP_ROWS) * N
    s = tl.load(s_ptr + g + offs_n)
    if HAS_ZEROS:
        z = tl.load(z_ptr + g + offs_n)
    else:
        z = s  # unused
    return wa, wb, s, z


@triton.jit
def _tile_dot(wa, wb, s, z, x_row16, t, offs_h, HAS_ZEROS: tl.constexpr, BLOCK_R: tl.constexpr,
              USE_ASM: tl.constexpr):  # fmt: skip
    """fp32 ``(BLOCK_R // 2, BLOCK_N)`` partial products of tile ``t`` times its scales / 16."""
    zero = z[None, :] if HAS_ZEROS else 8
    rows_a = t * BLOCK_R + offs_h
    part = _pair_dot(wa, wb, zero, x_row16, rows_a, BLOCK_R // 2, not HAS_ZEROS, USE_ASM)
    return part * s[None, :].to(tl.float32)


@triton.jit
def _int4_gemv_even_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, b_ptr, qw2_ptr, s2_ptr, z2_ptr, b2_ptr, y_ptr, ws_ptr, cnt_ptr,
    N, TILES_PER_SPLIT, NUM_TILES, stride_xm, stride_ym,
    HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, GROUP_ROWS: tl.constexpr, SPLIT_K,
    SPLIT: tl.constexpr, GATED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
    USE_ASM: tl.constexpr, W_EVICT: tl.constexpr, ACCUMULATE: tl.constexpr,
    EARLY: tl.constexpr, RELEASE: tl.constexpr,
):  # fmt: skip
    """No masks: N % BLOCK_N == 0, K/8 % BLOCK_R == 0, GROUP_ROWS % BLOCK_R == 0.

    Each 16-row tile is read as two 8-row halves whose words pair up in one packed-fp16 dot.
    Two tiles per loop trip, in two register sets: set B (tile t + 1) is loaded before set A
    (tile t) is used, and set A is refilled with tile t + 2 before set B is used, so every load
    has a tile's worth of arithmetic to arrive in. ``GATED``: a second matrix (``qw2``...)
    against the same x, read by the odd programs of the first grid axis; the output is
    ``y1 * silu(y2)``, made by the last of a column block's programs (a ticket counter).
    ``EARLY`` (``llm.kernels.overlap``): launched before the kernel that writes x has ended, it
    loads its first tile of weights and then waits for it (two tiles before the wait measured
    slower).
    """
    HALF: tl.constexpr = BLOCK_R // 2
    release_at_start(RELEASE)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    block = pid_n
    if GATED:
        block = pid_n // 2
        if pid_n % 2 == 1:
            qw_ptr = qw2_ptr
            s_ptr = s2_ptr
            z_ptr = z2_ptr
    offs_n = block * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.arange(0, HALF)
    offs = offs_h[:, None] * N + offs_n[None, :]  # one half-tile, relative to its first row
    half_step = HALF * N
    x_row16 = x_ptr + pid_m * stride_xm
    t_begin = pid_k * TILES_PER_SPLIT
    t_end = tl.minimum(t_begin + TILES_PER_SPLIT, NUM_TILES)
    acc = tl.zeros([HALF, BLOCK_N], tl.float32)
    aw, ax, a_s, az = _load_tile(qw_ptr, s_ptr, z_ptr, offs, offs_n, t_begin, N, half_step,
                                 HAS_ZEROS, GROUP_ROWS, BLOCK_R, W_EVICT)  # fmt: skip
    wait_if_early(EARLY)  # x is written by the kernel this one may have started beside
    for t in range(t_begin, t_end - 1, 2):
        bw, bx, b_s, bz = _load_tile(qw_ptr, s_ptr, z_ptr, offs, offs_n, t + 1, N, half_step,
                                     HAS_ZEROS, GROUP_ROWS, BLOCK_R, W_EVICT)  # fmt: skip
        acc += _tile_dot(aw, ax, a_s, az, x_row16, t, offs_h, HAS_ZEROS, BLOCK_R, USE_ASM)
        t2 = tl.minimum(t + 2, t_end - 1)  # past the end: re-read the last tile, unused
        aw, ax, a_s, az = _load_tile(qw_ptr, s_ptr, z_ptr, offs, offs_n, t2, N, half_step,
                                     HAS_ZEROS, GROUP_ROWS, BLOCK_R, W_EVICT)  # fmt: skip
        acc += _tile_dot(bw, bx, b_s, bz, x_row16, t + 1, offs_h, HAS_ZEROS, BLOCK_R, USE_ASM)
    if (t_end - t_begin) % 2 == 1:  # an odd count leaves the last tile in set A
        acc += _tile_dot(aw, ax, a_s, az, x_row16, t_end - 1, offs_h, HAS_ZEROS, BLOCK_R, USE_ASM)
    release_after_loop(RELEASE)
    col = tl.sum(acc, axis=0) * 16.0  # (BLOCK_N,); the 16 of the (q - zero) / 16 products
    y_row = y_ptr + pid_m * stride_ym
    if ACCUMULATE:  # never GATED: the gate needs the finished sums
        _accumulate(col, b_ptr, y_row, offs_n, offs_n < N, pid_k, HAS_BIAS)
    elif GATED:
        _finish_when_last(col, pid_n % 2, ws_ptr + pid_m * 2 * N,
                          cnt_ptr + pid_m * (tl.num_programs(0) // 2) + block, 2 * SPLIT_K, N,
                          b_ptr, b2_ptr, y_row, offs_n, HAS_BIAS, True, BLOCK_N)  # fmt: skip
    elif SPLIT:
        _finish_when_last(col, 0, ws_ptr + pid_m * N, cnt_ptr + pid_m * tl.num_programs(0) + pid_n,
                          SPLIT_K, N, b_ptr, b2_ptr, y_row, offs_n, HAS_BIAS, False, BLOCK_N)  # fmt: skip
    else:
        _finish(col, col, b_ptr, b2_ptr, y_row, offs_n, HAS_BIAS, False)


@triton.jit
def _finish_when_last(col, half, ws_row, cnt, arrivals, N, b_ptr, b2_ptr, y_row, offs_n,
                      HAS_BIAS: tl.constexpr, GATED: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """Split-K: add this program's sums to ``half`` (the gated pair's matrix) of the fp32
    workspace row; the last of the ``arrivals`` programs of the column block (ticket counter
    ``cnt``) reads the totals back, leaves workspace and counter at zero, and stores the output."""
    ws = ws_row + offs_n
    tl.atomic_add(ws + half * N, col, sem="relaxed")
    tl.debug_barrier()
    ticket = tl.atomic_add(cnt, 1, sem="acq_rel")
    if ticket == arrivals - 1:
        # read through L2 (atomics) what the other programs added, then leave zeros behind
        zero = tl.zeros([BLOCK_N], tl.float32)
        col1 = tl.atomic_add(ws, zero, sem="acquire")
        tl.store(ws, zero)
        col2 = col1
        if GATED:
            col2 = tl.atomic_add(ws + N, zero, sem="acquire")
            tl.store(ws + N, zero)
        _finish(col1, col2, b_ptr, b2_ptr, y_row, offs_n, HAS_BIAS, GATED)
        tl.store(cnt, 0)


@triton.jit
def _accumulate(col, b_ptr, y_row, offs_n, mask_n, pid_k, HAS_BIAS: tl.constexpr):
    """Add this program's fp32 share (and, from the first split, the bias) into ``y``.

    No ticket and no read-back: the kernel ends as soon as its last partial sums are sent, and
    the consumer of ``y`` rounds the total to fp16 and clears it for the next call."""
    if HAS_BIAS:
        col += tl.load(b_ptr + offs_n, mask=mask_n & (pid_k == 0), other=0.0).to(tl.float32)
    tl.atomic_add(y_row + offs_n, col, mask=mask_n, sem="relaxed")


@triton.jit
def _finish(col, col2, b_ptr, b2_ptr, y_row, offs_n, HAS_BIAS: tl.constexpr, GATED: tl.constexpr):
    """Bias, the SiLU gate (fp16 between the steps, as the unfused ops round), store."""
    dt = y_row.dtype.element_ty
    if HAS_BIAS:
        col += tl.load(b_ptr + offs_n).to(tl.float32)
    if GATED:
        if HAS_BIAS:
            col2 += tl.load(b2_ptr + offs_n).to(tl.float32)
        gate = col2.to(dt).to(tl.float32)
        silu = (gate / (1.0 + tl.exp(-gate))).to(dt)
        tl.store(y_row + offs_n, col.to(dt) * silu)
    else:
        tl.store(y_row + offs_n, col.to(dt))


def _even(k8: int, n: int, group_rows: int, block_n: int) -> bool:
    return n % block_n == 0 and k8 % BLOCK_R == 0 and group_rows % BLOCK_R == 0


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
    accumulate: bool = False,
    overlap: ovl.Overlap | None = None,
) -> torch.Tensor:
    """``x (M, K) fp16 @ W + b`` for small M; W in the repacked layout. Returns ``(M, N)``.

    ``accumulate``: add the product in fp32 into ``out`` (``(M, N)`` fp32, contiguous) instead
    of writing fp16; split-K partial sums then go straight into ``out`` (no workspace, no
    ticket), and whoever reads ``out`` must clear it before the next call. ``overlap``: how the
    launch overlaps its neighbours (``llm.kernels.overlap``; None: not at all; the paired kernel
    only, others launch plainly).
    """
    m, k = x.shape
    k8, n = qweight.shape
    if k != k8 * 8:
        raise ValueError(f"int4_gemv: x of shape {tuple(x.shape)} does not match qweight {k8}x{n}")
    if accumulate:
        _check_accumulator(out, m, n, x.device)
    x = aligned_rows(x)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device) if out is None else out
    group_rows = group_size // 8
    if config.paired and _even(k8, n, group_rows, config.block_n):
        return _launch_even(
            x, (qweight, scales, zeros, bias), None, y, group_rows, workspace, config, accumulate,
            overlap,
        )  # fmt: skip
    tiles, split, per_split, grid_n, ws, cnt = _split_plan(
        k8, n, m, 1, workspace, config, y, accumulate
    )
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
        ACCUMULATE=accumulate,
        num_warps=config.num_warps,
    )
    return y


def _check_accumulator(out: torch.Tensor | None, m: int, n: int, device: torch.device) -> None:
    if (
        out is None
        or out.dtype != torch.float32
        or out.shape != (m, n)
        or not out.is_contiguous()
        or out.device != device
    ):
        got = "None" if out is None else f"{out.dtype} {tuple(out.shape)} on {out.device}"
        if out is not None and not out.is_contiguous():
            got += f" with strides {out.stride()}"
        raise ValueError(
            f"int4_gemv: accumulate needs a contiguous fp32 ({m}, {n}) out on {device}; got {got}"
        )


def aligned_rows(x: torch.Tensor, nbytes: int = 8) -> torch.Tensor:
    """x itself when its rows are contiguous and ``nbytes``-aligned (the kernels read fp16
    activations as 32-, 64- or 128-bit words), else an aligned copy."""
    step = nbytes // x.element_size()
    if x.stride(1) == 1 and x.stride(0) % step == 0 and x.data_ptr() % nbytes == 0:
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _split_plan(
    k8: int, n: int, m: int, width: int, workspace, config: GemvConfig, y, accumulate=False
):
    """Tiles, split count, tiles per split, column blocks, workspace and counters of a launch
    (``accumulate``: no workspace, the partial sums go straight into ``y``; ``width`` 2: the
    gated pair, whose two matrices always meet in the workspace)."""
    tiles = triton.cdiv(k8, BLOCK_R)
    split = max(1, min(config.split_k, tiles))
    per_split = triton.cdiv(tiles, split)
    split = triton.cdiv(tiles, per_split)
    grid_n = triton.cdiv(n, config.block_n)
    if (split == 1 and width == 1) or accumulate:
        return tiles, split, per_split, grid_n, y, y  # workspace unused
    if workspace is None:
        raise ValueError("int4_gemv: split_k > 1 and the gated pair need a SplitKWorkspace")
    workspace.check(m, width * n)
    if grid_n * m > workspace.counters.numel():
        raise ValueError("int4_gemv: workspace counters too small for this block size")
    return tiles, split, per_split, grid_n, workspace.acc, workspace.counters


def _launch_even(
    x, first, second, y, group_rows, workspace, config: GemvConfig, accumulate: bool = False,
    overlap: ovl.Overlap | None = None,
) -> torch.Tensor:  # fmt: skip
    """Launch the maskless kernel for one matrix or, with ``second``, the gated pair."""
    overlap = overlap or ovl.NONE
    qweight, scales, zeros, bias = first
    qw2, s2, z2, b2 = second if second is not None else first
    m = x.shape[0]
    k8, n = qweight.shape
    gated = second is not None
    tiles, split, per_split, grid_n, ws, cnt = _split_plan(
        k8, n, m, 2 if gated else 1, workspace, config, y, accumulate
    )
    _int4_gemv_even_kernel[(grid_n * (2 if gated else 1), split, m)](
        x, qweight, scales, zeros if zeros is not None else qweight,
        bias if bias is not None else scales, qw2, s2, z2 if z2 is not None else qw2,
        b2 if b2 is not None else s2, y, ws, cnt, n, per_split, tiles, x.stride(0), y.stride(0),
        HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None, GROUP_ROWS=group_rows,
        SPLIT_K=split, SPLIT=split > 1, GATED=gated, BLOCK_N=config.block_n, BLOCK_R=BLOCK_R,
        USE_ASM=config.use_asm, W_EVICT=config.weight_evict, ACCUMULATE=accumulate,
        EARLY=overlap.early, RELEASE=overlap.release,
        num_warps=config.num_warps, **_register_cap(config), **ovl.launch_options(overlap, x.device),
    )  # fmt: skip
    return y


def _register_cap(config: GemvConfig) -> dict:
    """Launch option that caps registers per thread: with room for both register sets, ptxas
    issues each set's loads a whole tile ahead instead of sinking them toward their use."""
    return {} if config.max_registers is None else {"maxnreg": config.max_registers}


def gated_supported(k: int, n: int, group_size: int, block_n: int) -> bool:
    """True when ``int4_gemv_gated`` can run these shapes (else use two GEMVs and ``silu_mul``)."""
    return k % 8 == 0 and _even(k // 8, n, group_size // 8, block_n)


def int4_gemv_gated(
    x: torch.Tensor,
    first: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    second: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    group_size: int,
    workspace: SplitKWorkspace | None,
    config: GemvConfig,
    out: torch.Tensor | None = None,
    overlap: ovl.Overlap | None = None,
) -> torch.Tensor:
    """``(x @ W1 + b1) * silu(x @ W2 + b2)`` in one launch; each matrix as (qweight, scales,
    zeros, bias) in the repacked layout, both of one shape and quantisation kind. ``overlap``:
    as for ``int4_gemv``."""
    m, k = x.shape
    k8, n = first[0].shape
    if second[0].shape != first[0].shape or (first[2] is None) != (second[2] is None):
        raise ValueError("int4_gemv_gated: the two matrices differ in shape or zero points")
    if (first[3] is None) != (second[3] is None):
        raise ValueError("int4_gemv_gated: bias on one matrix only")
    if k != k8 * 8:
        raise ValueError(f"int4_gemv_gated: x of shape {tuple(x.shape)} does not match {k8}x{n}")
    if not gated_supported(k, n, group_size, config.block_n):
        raise ValueError(f"int4_gemv_gated: {k}x{n} g{group_size} needs N % {config.block_n} == 0")
    y = torch.empty(m, n, dtype=x.dtype, device=x.device) if out is None else out
    return _launch_even(
        aligned_rows(x), first, second, y, group_size // 8, workspace, config, False, overlap
    )
