"""Triton int4 GEMV for 2-16 rows of activations on the tensor cores, each weight read once.

The one-row decode kernel (``llm.kernels.gemv``) multiplies on the CUDA cores; for several rows
it would have to read the weights once per row. Here the weights are the A operand of
``mma.sync.m16n8k16`` (16 output columns by 16 inputs) and up to 8 rows of activations its
B operand, so a second block of 8 rows costs one more MMA per weight word and nothing else.

The kernel reads the same repacked layout as the one-row kernel. The MMA's inputs need not be
in order, only paired alike in A and B: lane ``(g, t)`` of a warp (``g = lane // 4``,
``t = lane % 4``) takes packed row ``4s + t`` of step ``s``, and from it the words of columns
``4g .. 4g + 3`` and ``32 + 4g .. 35 + 4g`` of the warp's 64 (two 128-bit loads, each 128
contiguous bytes over the 8 lanes of a quad-row) and, right before use, the 8 activations of
that packed row (one 128-bit load per block of rows, L1-resident: keeping them out of the ring
leaves registers for more warps). One ``lop3`` per nibble pair puts a pair of weights into
the mantissas of fp16 ``1024 + q`` or ``64 + q``, one ``sub.f16x2`` leaves ``q - zero``
exactly, one ``mul.f16x2`` by the scale pair makes the fp16 weight (as dequantising does), and
two MMAs per pair of words (inputs ``k0..k3`` of the packed row, then ``k4..k7``) sum exact
products into fp32 accumulators. Each warp keeps ``depth`` steps of weights in flight and the
next scale group's parameters loaded a group ahead. The warps of a program take successive
ranges of scale groups and add their sums through shared memory; where one program covers all
of K it stores the fp16 result itself. Otherwise the programs of the second grid axis take
further ranges (split-K): their sums meet in the fp32 workspace, and the last program of a
column block (a ticket counter) writes the fp16 result and leaves workspace and counter at
zero.

Every tensor here is one-dimensional with one element per thread (element ``i`` on thread
``i``): the MMA needs each lane to hold its own fragment, so nothing may move elements between
threads, and the loads are inline ``ld.global.v4`` for the same reason.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm.kernels.gemv import SplitKWorkspace, aligned_rows
from llm.kernels.linear import COLUMNS_PER_WARP, MAX_ROWS, rows_supported

_MAX_ROWS = tl.constexpr(MAX_ROWS)


def _mma_step_asm(blocks: int) -> str:
    """PTX of one step for one pair of weight words: per half of the words 4 ``lop3``, 4
    ``sub`` and 4 ``mul`` make the A fragment ``(q - z) * s``, then one MMA per block of 8
    activation rows.

    Operands: ``$0 .. $(4 blocks - 1)`` the fp32 sums (tied to the last inputs), then the words
    of columns ``c`` and ``c + 4`` (A rows ``g`` and ``g + 8``), their zero pairs
    ``(1024 + z, 64 + z)``, their scale pairs, and per block the four activation pairs
    ``(k0, k1) (k2, k3) (k4, k5) (k6, k7)``.
    """
    n_out = 4 * blocks
    w_lo, w_hi = n_out, n_out + 1
    z_lo_1024, z_lo_64, z_hi_1024, z_hi_64, s_lo, s_hi = (n_out + 2 + i for i in range(6))
    x0 = n_out + 8
    lines = [
        "{",
        ".reg .b32 a0, a1, a2, a3, w_lo, w_hi;",
        f"shr.b32 w_lo, ${w_lo}, 8;",
        f"shr.b32 w_hi, ${w_hi}, 8;",
    ]
    for half, (lo, hi) in enumerate(((f"${w_lo}", f"${w_hi}"), ("w_lo", "w_hi"))):
        lines += [
            f"lop3.b32 a0, {lo}, 0x000F000F, 0x64006400, 0xEA;",
            f"lop3.b32 a1, {hi}, 0x000F000F, 0x64006400, 0xEA;",
            f"lop3.b32 a2, {lo}, 0x00F000F0, 0x54005400, 0xEA;",
            f"lop3.b32 a3, {hi}, 0x00F000F0, 0x54005400, 0xEA;",
            f"sub.f16x2 a0, a0, ${z_lo_1024};",
            f"sub.f16x2 a1, a1, ${z_hi_1024};",
            f"sub.f16x2 a2, a2, ${z_lo_64};",
            f"sub.f16x2 a3, a3, ${z_hi_64};",
            f"mul.f16x2 a0, a0, ${s_lo};",
            f"mul.f16x2 a1, a1, ${s_hi};",
            f"mul.f16x2 a2, a2, ${s_lo};",
            f"mul.f16x2 a3, a3, ${s_hi};",
        ]
        for b in range(blocks):
            d = ", ".join(f"${4 * b + i}" for i in range(4))
            xa, xb = x0 + 4 * b + 2 * half, x0 + 4 * b + 2 * half + 1
            lines.append(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                f"{{{d}}}, {{a0, a1, a2, a3}}, {{${xa}, ${xb}}}, {{{d}}};"
            )
    lines.append("}")
    return "\n".join(lines)


_MMA_STEP_1 = tl.constexpr(_mma_step_asm(1))
_MMA_STEP_2 = tl.constexpr(_mma_step_asm(2))
_MMA_CONSTRAINTS_1 = tl.constexpr("=f," * 4 + "r," * 12 + "0,1,2,3")
_MMA_CONSTRAINTS_2 = tl.constexpr("=f," * 8 + "r," * 16 + "0,1,2,3,4,5,6,7")

# 128-bit loads; the weights with an L2 evict-first policy (read once per call)
_LOAD_WEIGHTS = tl.constexpr(
    "{ .reg .b64 pol; createpolicy.fractional.L2::evict_first.b64 pol, 1.0; "
    "ld.global.L1::no_allocate.L2::cache_hint.v4.b32 {$0, $1, $2, $3}, [$4], pol; }"
)
_LOAD_IF = tl.constexpr(
    "{ .reg .pred p; setp.ne.b32 p, $5, 0; mov.b32 $0, 0; mov.b32 $1, 0; mov.b32 $2, 0; "
    "mov.b32 $3, 0; @p ld.global.v4.b32 {$0, $1, $2, $3}, [$4]; }"
)
# 4 + 4 fp16 scales at $8 and $8 + 64 bytes (zeros where not $9) -> 8 pairs (s, s)
_LOAD_SCALE_PAIRS = tl.constexpr(
    "{ .reg .pred p; .reg .b32 r0, r1, r2, r3; .reg .b16 h0, h1, h2, h3, h4, h5, h6, h7; "
    "setp.ne.b32 p, $9, 0; mov.b32 r0, 0; mov.b32 r1, 0; mov.b32 r2, 0; mov.b32 r3, 0; "
    "@p ld.global.v2.b32 {r0, r1}, [$8]; @p ld.global.v2.b32 {r2, r3}, [$8 + 64]; "
    "mov.b32 {h0, h1}, r0; mov.b32 {h2, h3}, r1; mov.b32 {h4, h5}, r2; mov.b32 {h6, h7}, r3; "
    "mov.b32 $0, {h0, h0}; mov.b32 $1, {h1, h1}; mov.b32 $2, {h2, h2}; mov.b32 $3, {h3, h3}; "
    "mov.b32 $4, {h4, h4}; mov.b32 $5, {h5, h5}; mov.b32 $6, {h6, h6}; mov.b32 $7, {h7, h7}; }"
)
_SYM_1024 = tl.constexpr(0x64086408)  # fp16 pair (1032, 1032): 1024 + the zero 8
_SYM_64 = tl.constexpr(0x54805480)  # fp16 pair (72, 72): 64 + 8


@triton.jit
def _words(ptr):
    """The words at ``ptr .. ptr + 3`` and ``ptr + 32 .. ptr + 35`` (16-byte aligned), with the
    weights' cache policy: the 8 lanes of a quad-row read 128 contiguous bytes per load."""
    a = tl.inline_asm_elementwise(
        _LOAD_WEIGHTS, "=r,=r,=r,=r,l", [ptr], dtype=(tl.int32,) * 4, is_pure=True, pack=1
    )
    b = tl.inline_asm_elementwise(
        _LOAD_WEIGHTS, "=r,=r,=r,=r,l", [ptr + 32], dtype=(tl.int32,) * 4, is_pure=True, pack=1
    )
    return a + b


@triton.jit
def _load_if(ptr, present):
    """The 4 words at ``ptr`` (16-byte aligned), zeros where not ``present``."""
    return tl.inline_asm_elementwise(
        _LOAD_IF, "=r,=r,=r,=r,l,r", [ptr, present.to(tl.int32)], dtype=(tl.int32,) * 4,
        is_pure=True, pack=1,
    )  # fmt: skip


@triton.jit
def _group_params(s_ptr, z_ptr, group, end_group, col, N, HAS_ZEROS: tl.constexpr):
    """Scale group ``group``'s parameters for the lane's 8 columns: the scale pairs ``(s, s)``
    (zero from ``end_group`` on, where the group is another warp's or past the matrix) and the
    zero pairs the MMA step subtracts, ``(1024 + z, 64 + z)``."""
    valid = group < end_group
    offset = tl.minimum(group, end_group - 1) * N + col
    scales = tl.inline_asm_elementwise(
        _LOAD_SCALE_PAIRS, "=r,=r,=r,=r,=r,=r,=r,=r,l,r", [s_ptr + offset, valid.to(tl.int32)],
        dtype=(tl.int32,) * 8, is_pure=True, pack=1,
    )  # fmt: skip
    if HAS_ZEROS:
        z = _load_if(z_ptr + offset, valid) + _load_if(z_ptr + offset + 32, valid)
        zeros = [((0x6400 + v) * 0x10001, (0x5400 + 16 * v) * 0x10001) for v in z]
    else:
        sym = (tl.full(valid.shape, _SYM_1024, tl.int32), tl.full(valid.shape, _SYM_64, tl.int32))
        zeros = (sym,) * 8
    return scales, zeros


@triton.jit
def _mma_step(acc, words, params, x, TWO_BLOCKS: tl.constexpr):
    """Add one step (32 inputs) into the sums of the lane's 4 tiles of 16 columns, each tile
    the lane's columns ``col + T`` and ``col + 32 + T``."""
    scales, zeros = params
    out = ()
    for tile in tl.static_range(4):
        lo, hi = zeros[tile], zeros[tile + 4]
        args = [words[tile], words[tile + 4], lo[0], lo[1], hi[0], hi[1], scales[tile],
                scales[tile + 4]]  # fmt: skip
        if TWO_BLOCKS:
            got = tl.inline_asm_elementwise(
                _MMA_STEP_2, _MMA_CONSTRAINTS_2, args + list(x) + list(acc[tile]),
                dtype=(tl.float32,) * 8, is_pure=True, pack=1,
            )  # fmt: skip
        else:
            got = tl.inline_asm_elementwise(
                _MMA_STEP_1, _MMA_CONSTRAINTS_1, args + list(x) + list(acc[tile]),
                dtype=(tl.float32,) * 4, is_pure=True, pack=1,
            )  # fmt: skip
        out = out + (got,)
    return out


@triton.jit
def _step_words(qw_ptr, row, last_row, col, N):
    """The lane's 8 words of packed row ``row`` (clamped to the last step)."""
    return _words(qw_ptr + tl.minimum(row, last_row) * N + col)


@triton.jit
def _activations(x0_ptr, x1_ptr, row, g, M, TWO_BLOCKS: tl.constexpr):
    """The lane's 8 activations of packed row ``row`` in each block of rows."""
    x = _load_if(x0_ptr + 8 * row, g < M)
    if TWO_BLOCKS:
        x = x + _load_if(x1_ptr + 8 * row, g + 8 < M)
    return x


@triton.jit
def _next_group(step, params, ahead, first_group, end_group, s_ptr, z_ptr, col, N,
                HAS_ZEROS: tl.constexpr, STEPS: tl.constexpr):  # fmt: skip
    """After a scale group's last step: the group after it (loaded a group ahead) becomes the
    current one, and the one after that is loaded."""
    if step % STEPS == STEPS - 1:
        params = ahead
        group = first_group + step // STEPS + 2
        ahead = _group_params(s_ptr, z_ptr, group, end_group, col, N, HAS_ZEROS)
    return params, ahead


@triton.jit
def _int4_gemv_rows_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr,
    M, N, K8, NUM_GROUPS, GROUPS_PER_WARP, SPLIT_K, stride_xm, stride_ym,
    HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, GROUP_ROWS: tl.constexpr,
    TWO_BLOCKS: tl.constexpr, NUM_WARPS: tl.constexpr, DEPTH: tl.constexpr,
    WHOLE_K: tl.constexpr,
):  # fmt: skip
    LANES: tl.constexpr = 32 * NUM_WARPS
    STEPS: tl.constexpr = GROUP_ROWS // 4  # MMA steps per scale group
    SUMS: tl.constexpr = 8 if TWO_BLOCKS else 4
    i = tl.arange(0, LANES)
    lane = i % 32
    g = lane // 4
    t = lane % 4
    pid_n = tl.program_id(0)
    col = pid_n * 64 + 4 * g  # the lane's columns: col .. col + 3 and col + 32 .. col + 35
    first_group = (tl.program_id(1) * NUM_WARPS + i // 32) * GROUPS_PER_WARP
    end_group = tl.minimum(first_group + GROUPS_PER_WARP, NUM_GROUPS)
    last_row = K8 - 4 + t  # a warp past the last group re-reads the last step (scales zero)
    x0_ptr = x_ptr + g * stride_xm
    x1_ptr = x0_ptr + 8 * stride_xm
    first_row = first_group * GROUP_ROWS + t

    acc = ((tl.zeros([LANES], tl.float32),) * SUMS,) * 4
    params = _group_params(s_ptr, z_ptr, first_group, end_group, col, N, HAS_ZEROS)
    ahead = _group_params(s_ptr, z_ptr, first_group + 1, end_group, col, N, HAS_ZEROS)
    # a ring of DEPTH register sets, each refilled with the step DEPTH ahead once it has been
    # used, so DEPTH steps of weights are in flight per warp (ptxas issues a trip's refills
    # together at its end); steps past the warp's range re-read the last rows, times zero
    # scales
    sets = ()
    for d in tl.static_range(DEPTH):
        sets = sets + (_step_words(qw_ptr, first_row + 4 * d, last_row, col, N),)
    for step in range(0, GROUPS_PER_WARP * STEPS, DEPTH):
        for d in tl.static_range(DEPTH):
            row = tl.minimum(first_row + 4 * (step + d), last_row)
            x = _activations(x0_ptr, x1_ptr, row, g, M, TWO_BLOCKS)
            words = sets[d]
            acc = _mma_step(acc, words, params, x, TWO_BLOCKS)
            params, ahead = _next_group(step + d, params, ahead, first_group, end_group, s_ptr,
                                        z_ptr, col, N, HAS_ZEROS, STEPS)  # fmt: skip
            refill = _step_words(qw_ptr, first_row + 4 * (step + d + DEPTH), last_row, col, N)
            sets = sets[:d] + (refill,) + sets[d + 1 :]

    lane32 = tl.arange(0, 32)  # a lane's sums are at the same place in every warp
    for tile in tl.static_range(4):
        for k in tl.static_range(SUMS):
            # sum k of tile T: activation row 2t + k % 2 (+ 8 for k >= 4), column col + T (+ 32
            # for k % 4 >= 2)
            r = 2 * (lane32 % 4) + (k % 2) + 8 * (k // 4)
            c = pid_n * 64 + 4 * (lane32 // 4) + tile + 32 * ((k // 2) % 2)
            v = tl.sum(tl.reshape(acc[tile][k], [NUM_WARPS, 32]), axis=0)
            if WHOLE_K:  # one program per column block holds the whole sum
                if HAS_BIAS:
                    v += tl.load(b_ptr + c).to(tl.float32)
                tl.store(y_ptr + r * stride_ym + c, v.to(y_ptr.dtype.element_ty), mask=r < M)
            else:
                tl.atomic_add(ws_ptr + r * N + c, v, mask=r < M, sem="relaxed")
    if not WHOLE_K:
        tl.debug_barrier()
        ticket = tl.atomic_add(cnt_ptr + pid_n, 1, sem="acq_rel")
        if ticket == SPLIT_K - 1:
            _write_block(ws_ptr, b_ptr, y_ptr, pid_n, M, N, stride_ym, HAS_BIAS)
            tl.store(cnt_ptr + pid_n, 0)


@triton.jit
def _write_block(ws_ptr, b_ptr, y_ptr, pid_n, M, N, stride_ym, HAS_BIAS: tl.constexpr):
    """The last program of a column block: read the totals through L2 (atomics), leave zeros
    behind, add the bias and store fp16."""
    rows = tl.arange(0, _MAX_ROWS)[:, None]
    cols = pid_n * 64 + tl.arange(0, 64)[None, :]
    mask = rows < M  # N is a multiple of the 64 columns
    ws = ws_ptr + rows * N + cols
    zero = tl.zeros([_MAX_ROWS, 64], tl.float32)
    total = tl.atomic_add(ws, zero, mask=mask, sem="acquire")
    tl.store(ws, zero, mask=mask)
    if HAS_BIAS:
        total += tl.load(b_ptr + cols).to(tl.float32)
    tl.store(y_ptr + rows * stride_ym + cols, total.to(y_ptr.dtype.element_ty), mask=mask)


def int4_gemv_rows(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
    workspace: SplitKWorkspace | None,
    split_k: int = 8,
    num_warps: int = 4,
    max_registers: int | None = None,
    depth: int = 4,
) -> torch.Tensor:
    """``x (M, K) fp16 @ W + b`` for 2-16 rows, W in the repacked layout, read once for all
    rows. ``split_k`` programs (of ``num_warps`` warps, each a range of scale groups) share a
    column block's inputs; they meet in ``workspace`` (needed only when more than one program
    has work). ``max_registers``: a per-thread cap given to ptxas; ``depth``: steps of weights
    each warp keeps in flight. Returns ``(M, N)`` fp16."""
    m, k = x.shape
    k8, n = qweight.shape
    if k != k8 * 8:
        raise ValueError(f"int4_gemv_rows: x of shape {tuple(x.shape)} does not match {k8}x{n}")
    if not rows_supported(m, k, n, group_size):
        raise ValueError(
            f"int4_gemv_rows: M={m} K={k} N={n} g{group_size} needs 2 <= M <= {MAX_ROWS}, "
            f"N % {COLUMNS_PER_WARP} == 0 and scale groups of a multiple of 32 inputs that tile K"
        )
    if x.dtype != torch.float16 or scales.dtype != torch.float16:
        raise ValueError("int4_gemv_rows: fp16 activations and scales only")
    x = aligned_rows(x, 16)  # the activations are read 8 at a time
    group_rows = (k if group_size == -1 else group_size) // 8
    num_groups = k8 // group_rows
    groups_per_warp = triton.cdiv(num_groups, max(1, split_k) * num_warps)
    split = triton.cdiv(num_groups, groups_per_warp * num_warps)  # no program without work
    if split > 1:
        if workspace is None:
            raise ValueError("int4_gemv_rows: split-K programs meet in a workspace; none given")
        workspace.check(m, n)
        ws_acc, ws_counters = workspace.acc, workspace.counters
    else:  # one program covers all of K and stores its result: any pointer will do
        ws_acc, ws_counters = scales, qweight
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _int4_gemv_rows_kernel[(n // COLUMNS_PER_WARP, split)](
        x, qweight, scales, zeros if zeros is not None else qweight,
        bias if bias is not None else scales, y, ws_acc, ws_counters,
        m, n, k8, num_groups, groups_per_warp, split, x.stride(0), y.stride(0),
        HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None, GROUP_ROWS=group_rows,
        TWO_BLOCKS=m > 8, NUM_WARPS=num_warps, DEPTH=depth, WHOLE_K=split == 1,
        num_warps=num_warps,
        **({} if max_registers is None else {"maxnreg": max_registers}),
    )  # fmt: skip
    return y
