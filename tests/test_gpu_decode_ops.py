"""Fused decode-step kernels (attention with rotary and KV write, add + RMSNorm) against PyTorch."""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def attention_reference(qkv, pos, cos, sin, logn, k_cache, v_cache, heads, dim):
    """The model's math for one token: fp32 rotary, fp16 q/k/v, fp32 softmax over 0..pos."""
    c = heads * dim
    q, k, v = (qkv[i * c : (i + 1) * c].view(heads, dim) for i in range(3))
    q = rotate(q.float(), cos[pos], sin[pos]).half() * logn[pos].half()
    k = rotate(k.float(), cos[pos], sin[pos]).half()
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    k_cache[0, pos], v_cache[0, pos] = k, v
    keys, values = k_cache[0, : pos + 1].float(), v_cache[0, : pos + 1].float()  # (S, H, D)
    probs = torch.einsum("hd,shd->hs", q.float() * dim**-0.5, keys).softmax(-1)
    return torch.einsum("hs,shd->hd", probs, values).half().reshape(-1), k_cache, v_cache


def attention_inputs(heads: int, dim: int, slots: int, seed: int):
    """Random ``qkv`` (fp16), rotary tables, logN and fp16 K/V caches of ``slots`` slots."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    qkv = torch.randn(3 * heads * dim, device="cuda", generator=gen).half()
    angles = torch.rand(slots, dim, device="cuda", generator=gen) * 6.3
    cos, sin = angles.cos(), angles.sin()
    logn = 1 + torch.rand(slots, device="cuda", generator=gen)
    k_cache = torch.randn(1, slots, heads, dim, device="cuda", generator=gen).half()
    v_cache = torch.randn(1, slots, heads, dim, device="cuda", generator=gen).half()
    return qkv, cos, sin, logn, k_cache, v_cache


@pytest.mark.parametrize("early", [False, True])
@pytest.mark.parametrize("pos", [0, 1, 63, 64, 65, 1000, 4095])
def test_decode_attention_matches_reference(pos: int, early: bool) -> None:
    """Also launched early (``llm.kernels.overlap``): it reads the position and its rotary rows,
    then waits for the projection."""
    from llm.kernels.decode_ops import AttentionWorkspace, decode_attention
    from llm.kernels.overlap import Overlap

    heads, dim, slots = 8, 128, 4096
    qkv, cos, sin, logn, k_cache, v_cache = attention_inputs(heads, dim, slots, seed=pos)
    ref, k_ref, v_ref = attention_reference(qkv, pos, cos, sin, logn, k_cache, v_cache, heads, dim)
    ws = AttentionWorkspace(heads, dim, 16, torch.device("cuda"))
    position = torch.tensor([pos], device="cuda")
    out = decode_attention(
        qkv, position, cos, sin, logn, k_cache, v_cache, heads, dim, ws, overlap=Overlap(early)
    )
    torch.testing.assert_close(out, ref, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(k_cache, k_ref, rtol=0, atol=1e-3)
    assert torch.equal(v_cache, v_ref)
    assert not ws.counters.any()  # the last split of each head left its counter at zero


@pytest.mark.parametrize(("pos", "slots"), [(0, 4096), (5, 100), (64, 4096), (200, 230)])
def test_decode_attention_ignores_slots_past_the_position(pos: int, slots: int) -> None:
    """Never-written slots past the position (NaN, inf) must not reach the output, also where
    the cache is shorter than the splits' blocks."""
    from llm.kernels.decode_ops import AttentionWorkspace, decode_attention

    heads, dim = 4, 128
    qkv, cos, sin, logn, k_cache, v_cache = attention_inputs(heads, dim, slots, seed=pos + slots)
    k_cache[0, pos:] = float("nan")
    v_cache[0, pos:] = float("inf")
    ref, _, _ = attention_reference(qkv, pos, cos, sin, logn, k_cache, v_cache, heads, dim)
    ws = AttentionWorkspace(heads, dim, 8, torch.device("cuda"))
    position = torch.tensor([pos], device="cuda")
    out = decode_attention(qkv, position, cos, sin, logn, k_cache, v_cache, heads, dim, ws)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=2e-3, atol=2e-3)


def test_add_rmsnorm_matches_reference() -> None:
    from llm.kernels.decode_ops import add_rmsnorm

    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(5120, device="cuda", generator=gen).half()
    delta = torch.randn(5120, device="cuda", generator=gen).half()
    weight = torch.rand(5120, device="cuda", generator=gen).half()
    summed = x + delta
    xf = summed.float()
    ref = (xf * torch.rsqrt(xf.pow(2).mean() + 1e-6)).half() * weight
    out = add_rmsnorm(x, delta, weight, 1e-6)
    assert torch.equal(x, summed)  # the residual stream is updated in place
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_fp32_accumulators_are_rounded_like_fp16_outputs_and_cleared() -> None:
    """A GEMV accumulator (fp32) in place of the fp16 projection: the same results, and the
    consumer leaves the accumulator at zero for the next step."""
    from llm.kernels.decode_ops import AttentionWorkspace, add_rmsnorm, decode_attention

    heads, dim, slots, pos = 4, 128, 256, 100
    gen = torch.Generator(device="cuda").manual_seed(7)
    qkv32 = torch.randn(3 * heads * dim, device="cuda", generator=gen)
    angles = torch.rand(slots, dim, device="cuda", generator=gen) * 6.3
    cos, sin, logn = angles.cos(), angles.sin(), 1 + torch.rand(slots, device="cuda")
    caches = [torch.randn(1, slots, heads, dim, device="cuda", generator=gen).half() for _ in "kv"]
    ws = AttentionWorkspace(heads, dim, 8, torch.device("cuda"))
    position = torch.tensor([pos], device="cuda")
    k16, v16 = (c.clone() for c in caches)
    expected = decode_attention(qkv32.half(), position, cos, sin, logn, k16, v16, heads, dim, ws)
    k32, v32 = (c.clone() for c in caches)
    got = decode_attention(
        qkv32, position, cos, sin, logn, k32, v32, heads, dim, ws, clear_qkv=True
    )
    assert got.dtype == torch.float16
    assert torch.equal(got, expected) and torch.equal(k32, k16) and torch.equal(v32, v16)
    assert not qkv32.any()

    x = torch.randn(5120, device="cuda", generator=gen).half()
    delta32 = torch.randn(5120, device="cuda", generator=gen)
    weight = torch.rand(5120, device="cuda", generator=gen).half()
    x16 = x.clone()
    expected = add_rmsnorm(x16, delta32.half(), weight, 1e-6)
    kept = delta32.clone()
    assert torch.equal(add_rmsnorm(x.clone(), delta32, weight, 1e-6), expected)
    assert torch.equal(delta32, kept)  # cleared only when asked
    got = add_rmsnorm(x, delta32, weight, 1e-6, clear_delta=True)
    assert torch.equal(got, expected) and torch.equal(x, x16)
    assert not delta32.any()
