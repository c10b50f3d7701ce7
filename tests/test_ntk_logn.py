"""Dynamic NTK and logN attention past ``seq_length``, against a direct implementation of the formulas.

With ``seq_length`` 16, prompts of 40 and 100 tokens use NTK alpha 7 and 15 and scale queries
at positions >= 16 by log_16(p + 1).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from llm.config import QwenConfig
from llm.engine import load_engine
from llm.model import ntk_alpha
from llm.quant import GPTQLinear
from llm.types import SamplingParams


def with_config(src: Path, dst: Path, **changes: object) -> Path:
    """A copy of checkpoint ``src`` (large files linked) with config.json fields changed."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            os.symlink(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


@pytest.fixture(scope="module")
def short_engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    d = with_config(tiny_model_dir, tmp_path_factory.mktemp("seq16") / "ckpt", seq_length=16)
    return load_engine(d, device="cpu", progress=False)


def weight(layer: torch.nn.Module) -> torch.Tensor:
    w = layer.weight_float() if isinstance(layer, GPTQLinear) else layer.weight
    return w.double()


def linear(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = x @ weight(layer).t()
    return y if layer.bias is None else y + layer.bias.double()


def direct_logits(model: torch.nn.Module, ids: list[int], alpha: float) -> torch.Tensor:
    """Qwen v1 forward written from the formulas, float64, one causal pass."""
    cfg = model.config
    s, dim, heads = cfg.seq_length, cfg.kv_channels, cfg.num_attention_heads
    n = len(ids)
    base = cfg.rotary_emb_base * alpha ** (dim / (dim - 2))
    inv_freq = [1.0 / base ** (2 * i / dim) for i in range(dim // 2)]
    ang = torch.tensor([[p * f for f in inv_freq] for p in range(n)], dtype=torch.float64)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)  # (n, dim)
    logn = torch.tensor([math.log(p + 1, s) if p + 1 > s else 1.0 for p in range(n)])

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.layer_norm_epsilon) * w.double()

    def rope(x: torch.Tensor) -> torch.Tensor:  # (n, heads, dim); dim i pairs with i + dim/2
        half = dim // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos[:, None] + rot * sin[:, None]

    x = model.transformer.wte.weight[ids].double()
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for block in model.transformer.h:
        h = rms(x, block.ln_1.weight)
        q, k, v = linear(block.attn.c_attn, h).split(cfg.hidden_size, -1)
        q, k, v = (t.reshape(n, heads, dim) for t in (q, k, v))
        q = rope(q) * logn[:, None, None]
        k = rope(k)
        att = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(dim)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        o = torch.einsum("hqk,khd->qhd", att, v).reshape(n, cfg.hidden_size)
        x = x + linear(block.attn.c_proj, o)
        h = rms(x, block.ln_2.weight)
        m = linear(block.mlp.w1, h) * torch.nn.functional.silu(linear(block.mlp.w2, h))
        x = x + linear(block.mlp.c_proj, m)
    x = rms(x, model.transformer.ln_f.weight)
    return x @ model.lm_head.weight.double().t()


def test_alpha_and_logn_table_of_qwen_14b() -> None:
    cfg = QwenConfig.from_name("qwen-14b")
    table = {1: 1, 2048: 1, 2049: 3, 4096: 3, 4097: 7, 8192: 7, 8193: 15, 16384: 15}
    assert {n: ntk_alpha(cfg, n) for n in table} == table
    base = cfg.rotary_emb_base * 3 ** (128 / 126)
    assert base == pytest.approx(30527.7, abs=0.1)
    from llm.model import RopeTables

    tables = RopeTables.create(cfg, 8192)
    assert tables.logn[2047].item() == 1.0
    assert tables.logn[4095].item() == pytest.approx(1.0909, abs=1e-4)
    assert tables.logn[8191].item() == pytest.approx(1.1818, abs=1e-4)


@pytest.mark.parametrize("n, alpha", [(40, 7.0), (100, 15.0)])
def test_full_forward_matches_formulas(short_engine, n: int, alpha: float) -> None:
    ids = torch.randint(0, 151643, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    assert ntk_alpha(short_engine.config, n) == alpha
    expected = direct_logits(short_engine.model, ids, alpha)
    got = short_engine.logits(ids)
    assert (got.double() - expected).abs().max().item() <= 1e-4
    # NTK and logN matter here: the same ids with alpha 1 give clearly different logits
    assert (direct_logits(short_engine.model, ids, 1.0) - expected).abs().max().item() > 1e-2


def test_decode_keeps_prefill_alpha(short_engine) -> None:
    """Alpha is fixed at prefill from the prompt length and not updated while decoding."""
    gen = short_engine.generator
    gen.reset()
    prompt = list(range(2000, 2030))  # 30 tokens -> alpha 3; 34 tokens would give alpha 7
    alpha = ntk_alpha(short_engine.config, len(prompt))
    logits = gen.prefill(prompt)
    ids = list(prompt)
    for _ in range(5):
        token = int(logits.argmax())
        expected = direct_logits(short_engine.model, ids, alpha)[-1]
        assert (logits.double() - expected).abs().max().item() <= 1e-4
        ids.append(token)
        logits = gen.decode(token)
    assert ntk_alpha(short_engine.config, len(ids)) != alpha


def test_prefix_reuse_only_while_alpha_is_unchanged(short_engine) -> None:
    greedy = SamplingParams.greedy()
    short_engine.generator.reset()
    base = list(range(3000, 3020))  # 20 tokens: alpha 3
    first = short_engine.complete(base, max_new_tokens=3, sampling=greedy)
    assert first.usage.cached_tokens == 0
    longer = base + list(range(4000, 4020))  # 40 tokens: alpha 7 -> full re-prefill
    second = short_engine.complete(longer, max_new_tokens=3, sampling=greedy)
    assert second.usage.cached_tokens == 0
    longest = longer + [5000, 5001, 5002, 5003, 5004]  # 45 tokens: alpha 7 again -> reuse
    third = short_engine.complete(longest, max_new_tokens=3, sampling=greedy)
    assert third.usage.cached_tokens == 40
    short_engine.generator.reset()
    fresh = short_engine.complete(longest, max_new_tokens=3, sampling=greedy)
    assert fresh.token_ids == third.token_ids
