"""Tiny checkpoints have the Qwen-14B-Chat-Int4 file layout, tensor names, shapes and dtypes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from llm.config import QuantizeConfig, QwenConfig
from llm.loader import load_model
from llm.quant import GPTQLinear
from llm.testing import GENERATION_CONFIG, config_json, make_tiny_checkpoint
from llm.tokenizer import QwenTokenizer
from llm.vocab import QWEN_TIKTOKEN_SHA256, sha256_of


def tensors_of(model_dir: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype, str]]:
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(model_dir / shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                t = f.get_tensor(name)
                out[name] = (tuple(t.shape), t.dtype, shard)
    return out


def test_files_and_index(tiny_model_dir: Path) -> None:
    names = sorted(p.name for p in tiny_model_dir.iterdir())
    assert names == [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "quantize_config.json",
        "qwen.tiktoken",
        "tokenizer_config.json",
    ]
    assert sha256_of(tiny_model_dir / "qwen.tiktoken") == QWEN_TIKTOKEN_SHA256
    index = json.loads((tiny_model_dir / "model.safetensors.index.json").read_text())
    tensors = tensors_of(tiny_model_dir)
    assert set(index["weight_map"]) == set(tensors)
    assert all(index["weight_map"][n] == shard for n, (_, _, shard) in tensors.items())
    size = sum(
        torch.Size(shape).numel() * torch.empty(0, dtype=dt).element_size()
        for shape, dt, _ in tensors.values()
    )
    assert index["metadata"]["total_size"] == size
    QwenTokenizer.from_pretrained(tiny_model_dir)  # the real vocabulary loads


def test_tensor_names_shapes_dtypes(tiny_model_dir: Path) -> None:
    h, f, v, g = 64, 128, 152064, 32  # hidden, MLP inner width, vocab rows, group size
    i32, f16 = torch.int32, torch.float16
    expected = {
        "transformer.wte.weight": ((v, h), f16),
        "transformer.ln_f.weight": ((h,), f16),
        "lm_head.weight": ((v, h), f16),
    }
    for i in range(2):
        p = f"transformer.h.{i}"
        expected[f"{p}.ln_1.weight"] = ((h,), f16)
        expected[f"{p}.ln_2.weight"] = ((h,), f16)
        for name, k, n in (
            ("attn.c_attn", h, 3 * h),
            ("attn.c_proj", h, h),
            ("mlp.w1", h, f),
            ("mlp.w2", h, f),
            ("mlp.c_proj", f, h),
        ):
            expected[f"{p}.{name}.qweight"] = ((k // 8, n), i32)
            expected[f"{p}.{name}.qzeros"] = ((k // g, n // 8), i32)
            expected[f"{p}.{name}.scales"] = ((k // g, n), f16)
            expected[f"{p}.{name}.g_idx"] = ((k,), i32)
            expected[f"{p}.{name}.bias"] = ((n,), f16)
    got = {name: (shape, dt) for name, (shape, dt, _) in tensors_of(tiny_model_dir).items()}
    assert got == expected
    assert len(got) == 2 * 27 + 3


def test_json_files_as_the_real_checkpoint_writes_them(tiny_model_dir: Path) -> None:
    gen = (tiny_model_dir / "generation_config.json").read_bytes()
    assert len(gen) == 249  # the published size of Qwen-14B-Chat-Int4's file
    assert json.loads(gen) == GENERATION_CONFIG
    # the 14B's quantize_config.json (214 bytes) and config.json (1.2 kB) serialize the same way
    q = json.dumps(QuantizeConfig().to_json_dict(), indent=2)
    assert len(q) == 214
    full = json.dumps(config_json(QwenConfig.from_name("qwen-14b"), QuantizeConfig()), indent=2)
    assert len(full) == 1198  # the reconstruction the reference notes derive for "1.2 kB"
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["QWenLMHeadModel"] and cfg["vocab_size"] == 152064
    assert cfg["quantization_config"]["quant_method"] == "gptq"
    assert cfg["use_dynamic_ntk"] and cfg["use_logn_attn"] and not cfg["tie_word_embeddings"]
    quant = json.loads((tiny_model_dir / "quantize_config.json").read_text())
    assert quant["bits"] == 4 and quant["group_size"] == 32 and quant["sym"] is True


def test_symmetric_zeros_and_zero_biases(tiny_model_dir: Path) -> None:
    with safe_open(str(tiny_model_dir / "model-00001-of-00002.safetensors"), framework="pt") as f:
        assert (f.get_tensor("transformer.h.0.attn.c_attn.qzeros") == 0x77777777).all()
        assert f.get_tensor("transformer.h.0.attn.c_attn.bias").any()
        assert not f.get_tensor("transformer.h.0.mlp.w1.bias").any()


def test_variants_load(tmp_path: Path) -> None:
    d = make_tiny_checkpoint(
        tmp_path / "v",
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        kv_channels=16,
        intermediate_size=64,
        group_size=16,
        desc_act=True,
        tie_word_embeddings=True,
        num_shards=3,
        seed=3,
    )
    tensors = tensors_of(d)
    assert "lm_head.weight" not in tensors
    assert len({shard for _, _, shard in tensors.values()}) == 3
    model, ckpt = load_model(d, progress=False)
    assert ckpt.quantize.desc_act and ckpt.model.tie_word_embeddings
    assert model.lm_head.weight is model.transformer.wte.weight
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, GPTQLinear)
    assert not torch.equal(layer.g_idx, torch.sort(layer.g_idx).values)  # act-order groups
    logits = model(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 3, 152064) and torch.isfinite(logits).all()


def test_bad_override_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kv_channels"):
        make_tiny_checkpoint(tmp_path / "bad", hidden_size=48)
    with pytest.raises(ValueError, match="unknown override.*hidden_sise"):
        make_tiny_checkpoint(tmp_path / "typo", hidden_sise=48)
