"""GPTQ v1 packing and the int4 linear layer, checked against the published format element by element."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.gptq_pack import pack_cols, pack_rows, quantize_weight
from llm.quant import GPTQLinear, dequantize, swap_linears, unpack_cols, unpack_rows


def nibble(word: int, j: int) -> int:
    return ((word & 0xFFFFFFFF) >> (4 * j)) & 0xF


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16))
def test_pack_unpack_round_trip(rows8: int, cols8: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (rows8 * 8, cols8 * 8), generator=gen, dtype=torch.int32)
    assert torch.equal(unpack_rows(pack_rows(q)), q)
    assert torch.equal(unpack_cols(pack_cols(q)), q)


def test_nibble_order_is_low_to_high() -> None:
    q = torch.arange(16, dtype=torch.int32).reshape(16, 1) % 16  # rows 0..15
    packed = pack_rows(q)
    assert packed.shape == (2, 1) and packed.dtype == torch.int32
    for r in range(2):
        for j in range(8):
            assert nibble(int(packed[r, 0]), j) == 8 * r + j
    z = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=torch.int32)
    assert nibble(int(pack_cols(z)[0, 0]), 0) == 1 and nibble(int(pack_cols(z)[0, 0]), 7) == 8


def test_symmetric_qzeros_are_0x77777777() -> None:
    t = quantize_weight(torch.randn(64, 256), 128)
    assert t.qzeros.shape == (2, 8) and t.scales.shape == (2, 64) and t.qweight.shape == (32, 64)
    assert (t.qzeros == 2004318071).all()  # every stored zero nibble 7 (= 8 - 1)
    assert torch.equal(t.g_idx, (torch.arange(256) // 128).int())
    assert t.scales.dtype == torch.float16


def test_dequantize_matches_the_formula_elementwise() -> None:
    gen = torch.Generator().manual_seed(1)
    k, n, group = 32, 16, 8
    qweight = torch.randint(-(2**31), 2**31 - 1, (k // 8, n), generator=gen, dtype=torch.int32)
    qzeros = torch.randint(
        -(2**31), 2**31 - 1, (k // group, n // 8), generator=gen, dtype=torch.int32
    )
    scales = torch.rand(k // group, n, generator=gen).half()
    g_idx = torch.randint(0, k // group, (k,), generator=gen, dtype=torch.int32)
    w = dequantize(qweight, qzeros, scales, g_idx, torch.float64)
    for kk in range(k):
        g = int(g_idx[kk])
        for nn_ in range(n):
            q = nibble(int(qweight[kk // 8, nn_]), kk % 8)
            zero = nibble(int(qzeros[g, nn_ // 8]), nn_ % 8) + 1
            assert w[kk, nn_].item() == pytest.approx(float(scales[g, nn_]) * (q - zero))


@pytest.mark.parametrize("group_size", [32, 64, -1])
@pytest.mark.parametrize("act_order", [False, True])
def test_linear_forward_equals_dequantized_matmul(group_size: int, act_order: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(48, 64, generator=gen)
    t = quantize_weight(w, group_size, act_order=act_order, generator=gen)
    if act_order and group_size == 32:
        assert not torch.equal(t.g_idx, torch.sort(t.g_idx).values)  # groups are interleaved
    layer = GPTQLinear(64, 48, group_size, bias=True)
    for name in ("qweight", "qzeros", "scales", "g_idx"):
        getattr(layer, name).copy_(getattr(t, name))
    layer.bias.copy_(torch.randn(48, generator=gen).half())
    x = torch.randn(3, 5, 64, generator=gen)
    w_deq = layer.weight_float()  # (out, in)
    expected = x @ w_deq.t() + layer.bias.float()
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # round to nearest: every weight within half a step of its group scale
    scales = t.scales.float()[t.g_idx.long()].t()  # (out, in)
    assert ((w_deq - w).abs() <= scales / 2 + 1e-6).all()


def test_swap_linears_replaces_only_block_linears() -> None:
    from llm.config import QwenConfig
    from llm.model import QwenForCausalLM

    cfg = QwenConfig.from_name("tiny", vocab_size=256)
    with torch.device("meta"):
        model = QwenForCausalLM(cfg)
    names = swap_linears(model, 32, has_bias=lambda name: name.endswith("c_attn"))
    assert len(names) == 5 * cfg.num_hidden_layers
    assert isinstance(model.transformer.h[0].attn.c_attn, GPTQLinear)
    assert model.transformer.h[0].attn.c_attn.bias is not None
    assert model.transformer.h[0].mlp.w1.bias is None
    assert isinstance(model.lm_head, torch.nn.Linear)
    assert model.transformer.h[1].mlp.c_proj.qweight.shape == (128 // 8, 64)


def test_layer_rejects_unpackable_sizes() -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        GPTQLinear(60, 64, 32)
