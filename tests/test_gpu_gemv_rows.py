"""The tensor-core GEMV for 2-16 rows against its PyTorch twin (GPU), and its shape rules (CPU)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llm.kernels.linear import Int4Linear
from llm.quant import dequantize
from tests.test_gpu_kernels import make_gptq, rel

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")

SHAPES = [  # (K, N, group, sym, bias)
    (5120, 384, 128, True, True),
    (1024, 512, 128, False, False),
    (640, 256, 64, False, True),  # odd steps per warp range
    (512, 192, 32, True, False),  # one step per scale group
    (768, 128, -1, True, True),  # one group over all of K
    (13696, 256, 128, True, False),  # mlp.c_proj's K: 107 groups
    (1024, 320, 256, False, True),
]
LAUNCHES = [  # (split_k, num_warps, max_registers, depth)
    (1, 1, None, 4),
    (1, 4, None, 4),  # one program per column block: sums added across warps, no workspace
    (3, 2, None, 2),
    (8, 4, 128, 4),
    (40, 4, 192, 3),  # more splits than groups: clipped to programs that have work
    (2, 8, None, 8),
]


def _fast_layer(k, n, group, sym, bias, seed):
    layer = make_gptq(k, n, group, sym=sym, bias=bias, device="cuda", seed=seed)
    ref_w = dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
    return Int4Linear.from_gptq(layer), ref_w, layer.bias.float() if bias else 0


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [2, 3, 8, 9, 16])
def test_rows_gemv_matches_reference(shape, m: int) -> None:
    from llm.kernels.gemv import SplitKWorkspace
    from llm.kernels.gemv_rows import int4_gemv_rows

    k, n, group, sym, bias = shape
    fast, ref_w, b = _fast_layer(k, n, group, sym, bias, seed=k + n + m)
    ws = SplitKWorkspace(16, 1024, "cuda")
    x = torch.randn(m, k, device="cuda").half()
    ref = x.float() @ ref_w + b
    for launch in LAUNCHES:
        y = int4_gemv_rows(
            x, fast.qweight, fast.scales, fast.zeros, fast.bias, fast.group_size, ws, *launch
        )  # fmt: skip
        assert y.shape == (m, n) and y.dtype == torch.float16
        assert rel(y, ref) < 1e-3, launch  # fp16 weights, exact products, fp32 sums
        assert not ws.acc.any() and not ws.counters.any()  # left clean for the next call


@gpu
@pytest.mark.gpu
def test_rows_gemv_at_the_engine_shape_equals_one_row_at_a_time() -> None:
    """c_attn's shape with the engine's launch choice: every row as the one-row kernel gives it."""
    from llm.kernels.gemv import GemvConfig, SplitKWorkspace, int4_gemv
    from llm.kernels.gemv_rows import int4_gemv_rows
    from llm.kernels.linear import gemv_choice, rows_choice

    k, n = 5120, 15360
    fast, ref_w, _ = _fast_layer(k, n, 128, True, False, seed=3)
    ws = SplitKWorkspace(16, n, "cuda")
    x = torch.randn(16, k, device="cuda").half()
    one_row = GemvConfig(**gemv_choice(k, n))
    rows = torch.cat([int4_gemv(x[i : i + 1], fast.qweight, fast.scales, None, None, 128, ws,
                                one_row) for i in range(16)])  # fmt: skip
    for m in (2, 5, 16):
        y = int4_gemv_rows(x[:m], fast.qweight, fast.scales, None, None, 128, ws,
                           **rows_choice(m, k, n))  # fmt: skip
        assert rel(y, x[:m].float() @ ref_w) < 1e-3
        assert rel(y, rows[:m]) < 2e-3


@gpu
@pytest.mark.gpu
def test_rows_gemv_reads_activations_at_any_alignment() -> None:
    from llm.kernels.gemv_rows import int4_gemv_rows

    fast, _, _ = _fast_layer(1024, 256, 128, True, False, seed=5)
    buf = torch.randn(4 * 1024 + 8, device="cuda").half()
    shifted = buf[4 : 4 + 3 * 1024].view(3, 1024)  # 8 bytes past a 16-byte boundary
    strided = buf[1:][::2][: 2 * 1024].view(2, 1024)  # every other element
    assert shifted.data_ptr() % 16 and strided.stride(1) == 2
    args = (fast.qweight, fast.scales, None, None, 128, None, 1, 1)  # one program, no workspace
    for x in (shifted, strided):
        assert torch.equal(int4_gemv_rows(x, *args), int4_gemv_rows(x.contiguous().clone(), *args))


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("m", [2, 7, 12, 16])
def test_int4_linear_takes_the_rows_kernel(m: int, monkeypatch) -> None:
    import llm.kernels.gemv_rows as gemv_rows
    from llm.kernels import accelerate

    layer = make_gptq(1024, 768, 128, sym=False, bias=True, device="cuda", seed=m)
    holder = torch.nn.Sequential(layer)
    x = torch.randn(m, 1024, device="cuda").half()
    ref = layer(x)
    accelerate(holder)
    calls = []
    real = gemv_rows.int4_gemv_rows
    monkeypatch.setattr(
        gemv_rows, "int4_gemv_rows", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    assert rel(holder[0](x), ref) < 1e-2
    assert calls == [1]


@gpu
@pytest.mark.gpu
def test_rows_gemv_rejects_what_it_cannot_run() -> None:
    from llm.kernels.gemv import SplitKWorkspace
    from llm.kernels.gemv_rows import int4_gemv_rows

    fast, _, _ = _fast_layer(1024, 256, 128, True, False, seed=9)
    ws = SplitKWorkspace(4, 256, "cuda")
    args = (fast.qweight, fast.scales, None, None, 128)
    x = torch.randn(6, 1024, device="cuda").half()
    with pytest.raises(ValueError, match="workspace"):
        int4_gemv_rows(x, *args, ws)  # sized for 4 rows
    with pytest.raises(ValueError, match="workspace"):
        int4_gemv_rows(x, *args, None)
    with pytest.raises(ValueError, match="does not match"):
        int4_gemv_rows(x[:, :512], *args, SplitKWorkspace(16, 256, "cuda"))
    with pytest.raises(ValueError, match="fp16"):
        int4_gemv_rows(x.float(), *args, SplitKWorkspace(16, 256, "cuda"))


def test_rows_kernel_shape_rules() -> None:
    from llm.kernels.linear import rows_supported

    assert rows_supported(2, 5120, 15360, 128) and rows_supported(16, 13696, 5120, 128)
    assert rows_supported(4, 768, 128, -1) and rows_supported(4, 512, 64, 32)
    assert not rows_supported(1, 5120, 15360, 128)  # one row: the CUDA-core kernel
    assert not rows_supported(17, 5120, 15360, 128)
    assert not rows_supported(4, 1024, 520, 128)  # N not a multiple of 64
    assert not rows_supported(4, 1024, 512, 16)  # groups shorter than a step's 32 inputs
    assert not rows_supported(4, 1000, 512, -1)


@pytest.mark.parametrize("m", [2, 4, 8, 9, 16])
@pytest.mark.parametrize("k, n", [(5120, 15360), (5120, 5120), (5120, 13696), (13696, 5120),
                                  (5120, 153600), (13696, 51200)])  # fmt: skip
def test_rows_choice_fills_the_grid(m: int, k: int, n: int) -> None:
    """The launch rule: ~2048 warps in the grid (~1024 and at least 2 a block from 9 rows on),
    at most 256 steps of 32 inputs per warp, programs of 1 or 4 warps (2 where the whole block
    has only 2)."""
    from llm.kernels.linear import ROWS_STEPS_PER_WARP, rows_choice

    choice = rows_choice(m, k, n)
    per_block = choice["split_k"] * choice["num_warps"]
    target = 2048 if m <= 8 else 1024
    grid_warps = n // 64 * per_block
    assert per_block & (per_block - 1) == 0 and 1 <= per_block <= 32
    assert k / 32 / per_block <= ROWS_STEPS_PER_WARP
    if k / 32 / per_block <= ROWS_STEPS_PER_WARP / 2:  # not raised by the step cap
        assert (
            target / 2**0.5 <= grid_warps <= target * 2**0.5
            or per_block in (1, 32)
            or (m > 8 and per_block == 2)
        )
    assert choice["num_warps"] in (1, 4) or choice["num_warps"] == per_block


@pytest.mark.parametrize("m", [2, 8, 16])
def test_rows_choice_for_matrices_ten_times_a_layer(m: int) -> None:
    """The shapes that streamed fastest there: 2 warps a block on the long-K matrix at every
    row count (the step bound decides), 1 on the wide one up to 8 rows and 2 at 16 (the 16-row
    minimum decides)."""
    from llm.kernels.linear import rows_choice

    def warps_per_block(k: int, n: int) -> int:
        choice = rows_choice(m, k, n)
        return choice["split_k"] * choice["num_warps"]

    assert warps_per_block(13696, 51200) == 2
    assert warps_per_block(5120, 153600) == (1 if m <= 8 else 2)
