"""``Int4Linear``: the CUDA replacement of ``llm.quant.GPTQLinear``, and ``accelerate(model)``."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from llm.kernels.layout import check_group_index, repack_qweight, zeros_from_qzeros

if TYPE_CHECKING:  # the module needs Triton, which CPU installs lack
    from llm.kernels.overlap import Overlap

log = logging.getLogger(__name__)

# Measured on the H200 at the Qwen-14B shapes: the one-row GEMV (one program per row, so each row
# re-reads the weights) beats dequantise + cuBLAS up to ~8 rows; the tensor-core GEMV for 2-16
# rows reads them once (``llm.kernels.gemv_rows``). The Triton tensor-core GEMM (64 TFLOP/s at
# M=2048) loses to dequantise + cuBLAS (~670 TFLOP/s) at every M, so it is only used when
# ``prefill_kernel == "triton"``.
ONE_ROW_MAX_M = 8  # the one-row kernel, where the rows kernel cannot run the shape
MAX_ROWS = 16  # the rows kernel: two blocks of the MMA's 8 activation rows
COLUMNS_PER_WARP = 64  # the rows kernel: 8 lanes of a quad-row times 8 columns
ROWS_STEPS_PER_WARP = 256  # the rows kernel: most steps (32 inputs each) one warp runs


class Int4Linear(nn.Module):
    """GPTQ int4 linear on the repacked layout: Triton GEMV for decode, GEMM for prefill."""

    def __init__(
        self,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | None,
        bias: torch.Tensor | None,
        group_size: int,
        workspace: object | None = None,
    ) -> None:
        super().__init__()
        self.in_features = qweight.shape[0] * 8
        self.out_features = qweight.shape[1]
        self.group_size = group_size
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.register_buffer("zeros", zeros)
        self.register_buffer("bias", bias)
        self.workspace = workspace
        self.prefill_kernel = "dequant"  # or "triton": the fused tensor-core GEMM
        self.gemv_config: object | None = None  # GemvConfig, made on first CUDA call
        self.gated_config: object | None = None  # GemvConfig of the gated pair this layer leads
        self._accumulator: torch.Tensor | None = None  # fp32 sums for ``accumulate``, kept zero

    @classmethod
    def from_gptq(cls, layer: nn.Module, workspace: object | None = None) -> Int4Linear:
        """Repack a ``GPTQLinear``'s buffers (the checkpoint layout) for the kernels."""
        k, n = layer.in_features, layer.out_features
        group = k if layer.group_size == -1 else layer.group_size
        if not check_group_index(layer.g_idx, k, group):
            raise ValueError(f"Int4Linear: act-order g_idx is not supported ({k}x{n})")
        zeros = zeros_from_qzeros(layer.qzeros, n)
        zeros = None if bool((zeros == 8).all()) else zeros.contiguous()
        bias = layer.bias
        if bias is not None:
            bias = None if not bool(bias.any()) else bias.to(layer.scales.dtype).contiguous()
        return cls(
            repack_qweight(layer.qweight), layer.scales.contiguous(), zeros, bias, group, workspace
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            from llm.kernels.reference import int4_linear_reference

            y = int4_linear_reference(
                x.reshape(-1, self.in_features),
                self.qweight,
                self.scales,
                self.zeros,
                self.bias,
                self.group_size,
            )
            return y.reshape(*x.shape[:-1], self.out_features)
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.dtype != self.scales.dtype or not x2.is_contiguous():
            x2 = x2.to(self.scales.dtype).contiguous()
        m = x2.shape[0]
        if x2.dtype == torch.float16 and rows_supported(
            m, self.in_features, self.out_features, self.group_size
        ):
            from llm.kernels.gemv_rows import int4_gemv_rows

            y = int4_gemv_rows(
                x2, self.qweight, self.scales, self.zeros, self.bias, self.group_size,
                self.workspace, **rows_choice(m, self.in_features, self.out_features),
            )  # fmt: skip
        elif m <= ONE_ROW_MAX_M:
            from llm.kernels.gemv import int4_gemv

            y = int4_gemv(
                x2,
                self.qweight,
                self.scales,
                self.zeros,
                self.bias,
                self.group_size,
                self.workspace,
                self._decode_config(),
            )
        elif self.prefill_kernel == "triton":
            from llm.kernels.gemm import GemmConfig, int4_gemm

            cfg = GemmConfig(16, 64, 128, 8, 4, 4) if m <= 16 else GemmConfig(128, 256, 64, 8, 8, 3)
            y = int4_gemm(
                x2, self.qweight, self.scales, self.zeros, self.bias, self.group_size, cfg
            )
        else:
            from llm.kernels.gemm import dequantize

            w = dequantize(self.qweight, self.scales, self.zeros, self.group_size)
            y = x2 @ w
            if self.bias is not None:
                y += self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def accumulate(self, x: torch.Tensor, overlap: Overlap | None = None) -> torch.Tensor | None:
        """``x @ W + b`` for one row, summed in fp32 into this layer's accumulator ``(1, N)``.

        For batch-1 decode: the split-K programs add their partial sums straight into the
        accumulator and the kernel ends without gathering them; the consumer
        (``add_rmsnorm(..., clear_delta=True)``, ``decode_attention(..., clear_qkv=True)``)
        rounds the total to fp16 and clears it. ``overlap``: how the launch overlaps its
        neighbours (``llm.kernels.overlap.Overlap``). Returns None where this does not apply
        (not CUDA, not one row, another dtype): the caller then uses ``forward``.
        """
        x2 = x.reshape(-1, self.in_features)
        if not x2.is_cuda or x2.shape[0] != 1 or x2.dtype != self.scales.dtype:
            return None
        from llm.kernels.gemv import int4_gemv

        if self._accumulator is None:
            self._accumulator = torch.zeros(
                1, self.out_features, dtype=torch.float32, device=x.device
            )
        int4_gemv(
            x2, self.qweight, self.scales, self.zeros, self.bias, self.group_size, None,
            self._decode_config(), out=self._accumulator, accumulate=True,
            overlap=overlap,
        )  # fmt: skip
        return self._accumulator

    def _decode_config(self):
        """The decode GEMV's launch shape, chosen on first use (``gemv_choice``)."""
        if self.gemv_config is None:
            from llm.kernels.gemv import GemvConfig

            self.gemv_config = GemvConfig(**gemv_choice(self.in_features, self.out_features))
        return self.gemv_config

    def clear_accumulator(self) -> None:
        """Zero the accumulator (after an interrupted step left a sum in it)."""
        if self._accumulator is not None:
            self._accumulator.zero_()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 g{self.group_size}"


def gemv_choice(k: int, n: int) -> dict:
    """Decode-kernel launch shape (best of a sweep on the H200 at the Qwen-14B shapes).

    64 columns per program, the paired kernel, at most 64 registers per thread (room for both
    register sets, so each tile's loads go out a whole tile ahead). Split-K: 4 for the wide
    matrices (N >= 12288: c_attn 12.5 us), 10 for attn.c_proj (6.3 us), 12 for the long
    K = 13696 of mlp.c_proj (11.3 us, against 12.6 for the previous kernel at split 16), all
    accumulating in fp32. Weights are read once per token, so their loads ask L2 to evict them
    first (-0.3 to -0.5 us each; the gated pair was slower with the hint).
    """
    tiles = max(1, -(-k // 128))
    split = 4 if n >= 12288 else 10 if k < 8192 else 12
    return {
        "block_n": 64,
        "split_k": min(split, tiles),
        "weight_evict": "evict_first",
        "max_registers": 64,
    }


def rows_supported(m: int, k: int, n: int, group_size: int) -> bool:
    """True when the tensor-core GEMV (``llm.kernels.gemv_rows``) can run ``M x K @ K x N``:
    2-16 rows, N a multiple of 64, scale groups of a multiple of 32 inputs that tile K."""
    group = k if group_size == -1 else group_size
    return 2 <= m <= MAX_ROWS and n % COLUMNS_PER_WARP == 0 and group % 32 == 0 and k % group == 0


def rows_choice(m: int, k: int, n: int) -> dict:
    """Launch shape of the tensor-core GEMV for ``m`` rows (a sweep on the H200 at the
    Qwen-14B shapes and two ten times a layer: 1-8 warps, split-K 1-8, 4 or 8 steps in flight;
    4, the kernel's default, was best).

    The warps per 64-column block (``num_warps * split_k``) bring the grid to ~2048 warps, ~1024
    for 9-16 rows (whose warps hold twice the sums; more warps than fit at once were slower),
    the nearest power of two, and at least enough that no warp runs more than 256 steps
    (32 inputs each), and at least 2 for 9-16 rows. Programs of 4 warps (fewer where the block
    has fewer), or of one warp for up to 4 rows when a block of at most 8 warps gives each at
    most 32 steps (then no sums are added across warps). c_attn: 16.7 / 18.4 / 21.8 us at 2 /
    8 / 16 rows (the one-row kernel over every row: 25 / 80 / 153 us).

    The step bound decides only for matrices about ten times a layer: with 128 steps (as
    before) the long-K 13696 x 51200 matrix took 4-warp programs and the 5120 x 153600 one
    2-warp programs; with 256, 2 and 1 warps per block streamed 33-35% and 9% faster at 2-8
    rows on an H100 (the 16-row minimum keeps 2 warps there, where 1 was 5% slower).
    """
    blocks = n // COLUMNS_PER_WARP
    steps = -(-k // 32)
    target = 2048 if m <= 8 else 1024
    per_block = 1 << max(0, round(math.log2(target / blocks)))
    longest = 1 << max(0, math.ceil(math.log2(steps / ROWS_STEPS_PER_WARP)))
    fewest = 1 if m <= 8 else 2  # 9-16 rows: one-warp blocks left the last wave short
    per_block = min(32, max(per_block, longest, fewest))
    one_warp = m <= 4 and per_block <= 8 and steps <= 32 * per_block
    num_warps = 1 if one_warp else min(4, per_block)
    return {"split_k": per_block // num_warps, "num_warps": num_warps}


def gated_choice(k: int, n: int) -> dict:
    """Launch shape of the gated pair kernel (``w1`` and ``w2`` in one launch, 2x the columns).

    Each program reads one of the two matrices, so a program is as light as a single GEMV's and
    takes the same shape: 64 columns under the 64-register cap, weights hinted ``evict_first``.
    Split-K 2 keeps the grid (856 programs at 5120 x 2 x 13696) within one wave of the H200's
    resident programs; split 3 (1284) spills into a second: 21.7 against 28.2 us, graph-timed
    with L2-cold weights (the earlier form, both matrices in every program, 23.8 us at its best
    shape, 32 columns and split 3).
    """
    return {
        "block_n": 64,
        "split_k": min(2, max(1, -(-k // 128))),
        "weight_evict": "evict_first",
        "max_registers": 64,
    }


def gated_mlp(
    w1: nn.Module, w2: nn.Module, x: torch.Tensor, overlap: Overlap | None = None
) -> torch.Tensor:
    """``w1(x) * silu(w2(x))`` for a few rows; one int4 launch when both layers allow it
    (``overlap``: how that launch overlaps its neighbours, ``llm.kernels.overlap.Overlap``)."""
    if not x.is_cuda:
        return w1(x) * torch.nn.functional.silu(w2(x))
    if (
        isinstance(w1, Int4Linear)
        and isinstance(w2, Int4Linear)
        and x.is_cuda
        and x.dtype == w1.scales.dtype
        and x.is_contiguous()
        and _gated_rows(x.reshape(-1, w1.in_features).shape[0], w1)
        and w1.qweight.shape == w2.qweight.shape
        and w1.group_size == w2.group_size
        and (w1.zeros is None) == (w2.zeros is None)
        and (w1.bias is None) == (w2.bias is None)
    ):
        from llm.kernels.gemv import GemvConfig, gated_supported, int4_gemv_gated

        if w1.gated_config is None:
            w1.gated_config = GemvConfig(**gated_choice(w1.in_features, w1.out_features))
        cfg = w1.gated_config
        if gated_supported(w1.in_features, w1.out_features, w1.group_size, cfg.block_n):
            y = int4_gemv_gated(
                x.reshape(-1, w1.in_features),
                (w1.qweight, w1.scales, w1.zeros, w1.bias),
                (w2.qweight, w2.scales, w2.zeros, w2.bias),
                w1.group_size,
                w1.workspace,
                cfg,
                overlap=overlap,
            )
            return y.reshape(*x.shape[:-1], w1.out_features)
    from llm.kernels.decode_ops import silu_mul

    return silu_mul(w1(x), w2(x))


def _gated_rows(m: int, w1: Int4Linear) -> bool:
    """Whether the gated pair kernel takes ``m`` rows: it runs one program per row, so from two
    rows on the tensor-core GEMV (each matrix read once) and ``silu_mul`` are faster."""
    if m == 1:
        return True
    return m <= ONE_ROW_MAX_M and not rows_supported(
        m, w1.in_features, w1.out_features, w1.group_size
    )


def accelerate(model: nn.Module) -> nn.Module:
    """Swap every ``GPTQLinear`` of ``model`` (on CUDA) for ``Int4Linear``, in place."""
    from llm.quant import GPTQLinear

    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, GPTQLinear)]
    if not targets:
        return model
    device = targets[0][1].qweight.device
    workspace = None
    if device.type == "cuda":
        from llm.kernels.gemv import SplitKWorkspace

        max_n = max(m.out_features for _, m in targets)
        workspace = SplitKWorkspace(MAX_ROWS, 2 * max_n, device)  # 2x: the gated pair
    for name, layer in targets:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        try:
            fast = Int4Linear.from_gptq(layer, workspace)
        except ValueError as e:
            log.warning("keeping the PyTorch path for %s: %s", name, e)
            continue
        setattr(parent, leaf, fast)
        del layer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("accelerate: %d int4 layers on the Triton path", len(targets))
    return model
