"""The engine's logits equal transformers' Qwen2ForCausalLM built from the same Int4 weights.

Qwen2's block math equals Qwen v1's below ``seq_length`` (no NTK, no logN there): RMSNorm,
q/k/v with bias, o_proj without, rotate-half rotary with base 10000, SiLU-gated MLP. The
weights are dequantized here from the shard files with the published GPTQ v1 formula, without
the engine's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

transformers = pytest.importorskip("transformers")


def read_checkpoint(model_dir: Path) -> dict[str, torch.Tensor]:
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(model_dir / shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                out[name] = f.get_tensor(name)
    return out


def nibbles(words: torch.Tensor) -> torch.Tensor:
    """int32 words -> their 8 nibbles, low to high, on a new last axis."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    return torch.stack([(w >> (4 * j)) & 0xF for j in range(8)], dim=-1)


def dequant(t: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """nn.Linear weight (out, in): W[k, n] = scale[g, n] * (q[k, n] - (qzero[g, n] + 1))."""
    qweight, qzeros = t[f"{prefix}.qweight"], t[f"{prefix}.qzeros"]
    scales, g_idx = t[f"{prefix}.scales"].double(), t[f"{prefix}.g_idx"].long()
    k8, n = qweight.shape
    q = nibbles(qweight).permute(0, 2, 1).reshape(k8 * 8, n)  # row 8r+j <- nibble j of row r
    z = nibbles(qzeros).reshape(qzeros.shape[0], n) + 1  # column 8c+j <- nibble j of column c
    w = scales[g_idx] * (q - z[g_idx])  # (K, N)
    return w.t().float()


def qwen2_from_checkpoint(model_dir: Path) -> torch.nn.Module:
    cfg = json.loads((model_dir / "config.json").read_text())
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    conf = transformers.Qwen2Config(
        vocab_size=cfg["vocab_size"],
        hidden_size=hidden,
        intermediate_size=cfg["intermediate_size"] // 2,
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=cfg["kv_channels"],
        rms_norm_eps=cfg["layer_norm_epsilon"],
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg["rotary_emb_base"])},
        max_position_embeddings=cfg["seq_length"],
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_dropout=0.0,
    )
    conf._attn_implementation = "eager"
    ref = transformers.Qwen2ForCausalLM(conf).float().eval()
    t = read_checkpoint(model_dir)
    sd: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": t["transformer.wte.weight"].float(),
        "model.norm.weight": t["transformer.ln_f.weight"].float(),
        "lm_head.weight": t["lm_head.weight"].float(),
    }
    for i in range(cfg["num_hidden_layers"]):
        src, dst = f"transformer.h.{i}", f"model.layers.{i}"
        qkv = dequant(t, f"{src}.attn.c_attn")
        bias = t[f"{src}.attn.c_attn.bias"].float()
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{dst}.self_attn.{name}.weight"] = qkv[j * hidden : (j + 1) * hidden]
            sd[f"{dst}.self_attn.{name}.bias"] = bias[j * hidden : (j + 1) * hidden]
        sd[f"{dst}.self_attn.o_proj.weight"] = dequant(t, f"{src}.attn.c_proj")
        sd[f"{dst}.mlp.gate_proj.weight"] = dequant(t, f"{src}.mlp.w2")  # SiLU branch
        sd[f"{dst}.mlp.up_proj.weight"] = dequant(t, f"{src}.mlp.w1")
        sd[f"{dst}.mlp.down_proj.weight"] = dequant(t, f"{src}.mlp.c_proj")
        sd[f"{dst}.input_layernorm.weight"] = t[f"{src}.ln_1.weight"].float()
        sd[f"{dst}.post_attention_layernorm.weight"] = t[f"{src}.ln_2.weight"].float()
        for name in ("attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj"):
            assert not t[f"{src}.{name}.bias"].any(), "only c_attn carries a real bias"
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected
    assert all("rotary" in m for m in missing), missing
    return ref


def test_logits_equal_transformers_qwen2(tiny_engine, tiny_model_dir: Path) -> None:
    ref = qwen2_from_checkpoint(tiny_model_dir)
    ids = torch.randint(0, 151643, (64,), generator=torch.Generator().manual_seed(7)).tolist()
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0].float()
    got = tiny_engine.logits(ids)
    assert got.shape == (64, 152064) and got.dtype == torch.float32
    assert expected.abs().max() > 1.0  # a real signal, not all zeros
    assert (got - expected).abs().max().item() <= 1e-4


def test_cached_prefill_equals_reference(tiny_model_dir: Path) -> None:
    """The generation path (static cache, last-position logits) agrees with the reference too."""
    from llm.engine import load_engine

    engine = load_engine(tiny_model_dir, device="cpu", progress=False)
    ref = qwen2_from_checkpoint(tiny_model_dir)
    ids = list(range(1000, 1064))
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0, -1]
    got = engine.generator.prefill(ids)
    assert (got - expected).abs().max().item() <= 1e-4
