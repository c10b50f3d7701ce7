"""Int4 kernels against their PyTorch twins (GPU), and the repacked layout (CPU)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llm.kernels.layout import repack_qweight, unpack_repacked, unpack_rows, zeros_from_qzeros
from llm.kernels.linear import Int4Linear
from llm.kernels.reference import dequantize_gptq, dequantize_repacked
from llm.quant import GPTQLinear, dequantize

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")


def make_gptq(
    k: int, n: int, group: int, *, sym: bool, bias: bool, device: str = "cpu", seed: int = 0
):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    layer = GPTQLinear(k, n, group, bias=bias)
    groups = layer.scales.shape[0]
    layer.qweight.copy_(
        torch.randint(-(2**31), 2**31 - 1, layer.qweight.shape, generator=gen, dtype=torch.int32)
    )
    if sym:
        layer.qzeros.fill_(0x77777777)
    else:
        layer.qzeros.copy_(
            torch.randint(-(2**31), 2**31 - 1, layer.qzeros.shape, generator=gen, dtype=torch.int32)
        )
    layer.scales.copy_((torch.rand(groups, n, generator=gen) * 0.02 + 0.002).half())
    g = k if group == -1 else group
    layer.g_idx.copy_((torch.arange(k) // g).int())
    if bias:
        layer.bias.copy_(torch.randn(n, generator=gen).half())
    return layer.to(device)


@pytest.mark.parametrize("sym", [True, False])
def test_repack_keeps_every_value(sym: bool) -> None:
    layer = make_gptq(256, 48, 64, sym=sym, bias=False)
    q = unpack_rows(layer.qweight)
    assert torch.equal(unpack_repacked(repack_qweight(layer.qweight)), q)
    assert not torch.equal(repack_qweight(layer.qweight), layer.qweight)


def test_reference_twins_match_the_checkpoint_math() -> None:
    layer = make_gptq(384, 64, 128, sym=False, bias=False)
    w = dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
    assert torch.allclose(dequantize_gptq(layer.qweight, layer.qzeros, layer.scales, 128), w)
    zeros = zeros_from_qzeros(layer.qzeros, 64)
    got = dequantize_repacked(repack_qweight(layer.qweight), layer.scales, zeros, 128)
    assert torch.allclose(got, w)


def test_int4_linear_cpu_path_equals_gptq_linear() -> None:
    layer = make_gptq(256, 64, 128, sym=True, bias=True)
    fast = Int4Linear.from_gptq(layer)
    assert fast.zeros is None  # symmetric: zero points dropped
    x = torch.randn(3, 5, 256)
    assert torch.allclose(fast(x), layer(x), rtol=1e-4, atol=1e-4)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


SHAPES = [  # (K, N, group, sym, bias)
    (5120, 384, 128, True, True),
    (1024, 520, 128, False, False),
    (640, 256, 64, False, True),
    (512, 200, 32, True, False),
    (768, 136, -1, True, True),
    (13696, 256, 128, True, False),
    (1024, 512, 128, False, True),
    (1024, 256, 256, True, False),  # the maskless kernel with two tiles per scale group
]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 16])
def test_gemv_matches_reference(shape, m: int) -> None:
    from llm.kernels.gemv import GemvConfig, SplitKWorkspace, int4_gemv

    k, n, group, sym, bias = shape
    layer = make_gptq(k, n, group, sym=sym, bias=bias, device="cuda", seed=k + n + m)
    fast = Int4Linear.from_gptq(layer)
    ref_w = dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
    ws = SplitKWorkspace(16, 1024, "cuda")
    x = torch.randn(m, k, device="cuda").half()
    ref = x.float() @ ref_w + (layer.bias.float() if bias else 0)
    for cfg in (
        GemvConfig(64, 1),
        GemvConfig(128, 3),
        GemvConfig(256, 8, 8),
        GemvConfig(128, 2, use_asm=False),
        GemvConfig(64, 4, paired=False),
        GemvConfig(64, 6, max_registers=64, weight_evict="evict_first"),
    ):
        y = torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda")
        int4_gemv(
            x, fast.qweight, fast.scales, fast.zeros, fast.bias, fast.group_size, ws, cfg, out=y
        )
        assert rel(y, ref) < 1e-2, cfg
        assert not ws.acc.any() and not ws.counters.any()  # left clean for the next call


@gpu
@pytest.mark.gpu
def test_gemv_reads_activations_at_any_alignment() -> None:
    from llm.kernels.gemv import GemvConfig, SplitKWorkspace, int4_gemv

    layer = make_gptq(1024, 256, 128, sym=True, bias=False, device="cuda")
    fast = Int4Linear.from_gptq(layer)
    ws = SplitKWorkspace(4, 256, "cuda")
    buf = torch.randn(1 + 2 * 1024, device="cuda").half()
    shifted = buf[1 : 1 + 1024].view(1, 1024)  # 2 bytes past an 8-byte boundary
    strided = buf[1:][::2].unsqueeze(0)  # every other element
    assert shifted.data_ptr() % 8 and strided.stride(1) == 2
    for paired in (True, False):
        cfg = GemvConfig(64, 1, paired=paired)  # split 1: no atomics, results bit for bit
        args = (fast.qweight, fast.scales, None, None, 128, ws, cfg)
        for x in (shifted, strided):
            assert torch.equal(int4_gemv(x, *args), int4_gemv(x.contiguous().clone(), *args))


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [1, 3])
def test_gemv_accumulates_into_fp32(shape, m: int) -> None:
    from llm.kernels.gemv import GemvConfig, int4_gemv

    k, n, group, sym, bias = shape
    layer = make_gptq(k, n, group, sym=sym, bias=bias, device="cuda", seed=k + n + m)
    fast = Int4Linear.from_gptq(layer)
    ref_w = dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
    x = torch.randn(m, k, device="cuda").half()
    ref = x.float() @ ref_w + (layer.bias.float() if bias else 0)
    configs = (
        GemvConfig(64, 1),
        GemvConfig(64, 5, max_registers=64),
        GemvConfig(32, 3, paired=False),
        GemvConfig(64, 4, use_asm=False),
    )
    for cfg in configs:
        acc = torch.full((m, n), 0.25, dtype=torch.float32, device="cuda")
        args = (fast.qweight, fast.scales, fast.zeros, fast.bias, fast.group_size, None, cfg)
        int4_gemv(x, *args, out=acc, accumulate=True)  # no workspace needed
        assert rel(acc - 0.25, ref) < 2e-3, cfg  # what was there stays: the sum is added
    with pytest.raises(ValueError, match="fp32"):
        int4_gemv(x, *args, out=torch.zeros(m, n, device="cuda").half(), accumulate=True)


@gpu
@pytest.mark.gpu
def test_early_launched_gemvs_match_reference() -> None:
    """Launched early (``llm.kernels.overlap``), the paired kernels load their first weight tile
    before they wait; odd and even tile counts per split, the gated pair too."""
    import llm.kernels.gemv as gemv
    from llm.kernels.overlap import Overlap

    x_all = torch.randn(1, 1280, device="cuda").half()
    for k, split in ((128, 1), (256, 1), (384, 1), (1280, 2), (1280, 3)):
        layer = make_gptq(k, 128, 128, sym=k != 384, bias=True, device="cuda", seed=k + split)
        fast = Int4Linear.from_gptq(layer)
        x = x_all[:, :k]
        ref = x.float() @ dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
        ref += layer.bias.float()
        acc = torch.zeros(1, 128, device="cuda")
        cfg = gemv.GemvConfig(64, split, max_registers=64)
        args = (fast.qweight, fast.scales, fast.zeros, fast.bias, 128, None, cfg)
        gemv.int4_gemv(x, *args, out=acc, accumulate=True, overlap=Overlap(True))
        assert rel(acc, ref) < 2e-3, (k, split)
        pair = [
            make_gptq(k, 128, 128, sym=True, bias=False, device="cuda", seed=k + i) for i in (7, 8)
        ]
        w1, w2 = (Int4Linear.from_gptq(p) for p in pair)
        a, b = (x.float() @ dequantize(p.qweight, p.qzeros, p.scales, p.g_idx) for p in pair)
        gated_ref = a.half() * torch.nn.functional.silu(b.half().float()).half()
        ws = gemv.SplitKWorkspace(1, 256, "cuda")
        for gated_cfg in (gemv.GemvConfig(32, split), gemv.GemvConfig(64, split, max_registers=64)):
            y = gemv.int4_gemv_gated(
                x, (w1.qweight, w1.scales, None, None), (w2.qweight, w2.scales, None, None), 128,
                ws, gated_cfg, overlap=Overlap(True),
            )  # fmt: skip
            assert rel(y, gated_ref) < 3e-3, (k, gated_cfg)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [5, 16, 100, 300])
def test_gemm_matches_reference(shape, m: int) -> None:
    from llm.kernels.gemm import GemmConfig, int4_gemm
    from llm.kernels.gemm import dequantize as dq

    k, n, group, sym, bias = shape
    layer = make_gptq(k, n, group, sym=sym, bias=bias, device="cuda", seed=k * m)
    fast = Int4Linear.from_gptq(layer)
    ref_w = dequantize(layer.qweight, layer.qzeros, layer.scales, layer.g_idx)
    x = torch.randn(m, k, device="cuda").half()
    ref = x.float() @ ref_w + (layer.bias.float() if bias else 0)
    for cfg in (GemmConfig(), GemmConfig(16, 64, 128, 8, 4, 4), GemmConfig(64, 128, 32, 8, 4, 2)):
        y = int4_gemm(x, fast.qweight, fast.scales, fast.zeros, fast.bias, fast.group_size, cfg)
        assert rel(y, ref) < 1e-2, cfg
    w = dq(fast.qweight, fast.scales, fast.zeros, fast.group_size)
    assert rel(w, ref_w) < 1e-3


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 4, 7, 64, 1500])
def test_int4_linear_cuda_equals_gptq_linear(m: int) -> None:
    layer = make_gptq(1024, 768, 128, sym=True, bias=True, device="cuda", seed=m)
    from llm.kernels import accelerate

    holder = torch.nn.Sequential(layer)
    x = torch.randn(m, 1024, device="cuda").half()
    ref = layer(x)
    accelerate(holder)
    assert isinstance(holder[0], Int4Linear)
    assert rel(holder[0](x), ref) < 1e-2


GATED_SHAPES = [  # (K, N, sym, bias)
    (5120, 256, True, False),
    (1024, 128, False, True),
    (13696, 128, True, False),
]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", GATED_SHAPES)
@pytest.mark.parametrize("m", [1, 3])
def test_gated_gemv_matches_reference(shape, m: int) -> None:
    from llm.kernels.gemv import GemvConfig, SplitKWorkspace, int4_gemv_gated
    from llm.kernels.linear import gated_choice, gated_mlp

    k, n, sym, bias = shape
    layers = [
        make_gptq(k, n, 128, sym=sym, bias=bias, device="cuda", seed=k + n + m + i) for i in (0, 1)
    ]
    w1, w2 = (Int4Linear.from_gptq(layer) for layer in layers)
    x = torch.randn(m, k, device="cuda").half()
    a, b = (
        (x.float() @ dequantize(la.qweight, la.qzeros, la.scales, la.g_idx)).half()
        + (la.bias if bias else 0)
        for la in layers
    )
    ref = a * torch.nn.functional.silu(b.float()).half()
    ws = SplitKWorkspace(4, 2 * n, "cuda")
    for cfg in (
        GemvConfig(**gated_choice(k, n)),
        GemvConfig(32, 1),
        GemvConfig(32, 4),
        GemvConfig(64, 3, 8),
        GemvConfig(32, 2, use_asm=False),
        GemvConfig(32, 3, max_registers=80),
    ):
        y = torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda")
        int4_gemv_gated(
            x, (w1.qweight, w1.scales, w1.zeros, w1.bias), (w2.qweight, w2.scales, w2.zeros, w2.bias),
            128, ws, cfg, out=y,
        )  # fmt: skip
        assert rel(y, ref) < 1e-2, cfg
        assert not ws.acc.any() and not ws.counters.any()
    with pytest.raises(ValueError, match="SplitKWorkspace"):  # even at split 1: the two halves
        int4_gemv_gated(x, (w1.qweight, w1.scales, w1.zeros, w1.bias),
                        (w2.qweight, w2.scales, w2.zeros, w2.bias), 128, None, GemvConfig(32, 1))  # fmt: skip
    w1.workspace = w2.workspace = ws  # from two rows on: two GEMVs and silu_mul
    assert rel(gated_mlp(w1, w2, x), ref) < 1e-2


def test_gated_mlp_cpu_path_equals_the_model_formula() -> None:
    from llm.kernels.linear import gated_mlp

    layers = [make_gptq(256, 64, 128, sym=True, bias=False, seed=i) for i in (0, 1)]
    w1, w2 = (Int4Linear.from_gptq(layer) for layer in layers)
    x = torch.randn(2, 256)
    ref = layers[0](x) * torch.nn.functional.silu(layers[1](x))
    assert torch.allclose(gated_mlp(w1, w2, x), ref, rtol=1e-4, atol=1e-4)
