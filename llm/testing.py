"""Tiny random checkpoints in exactly the Qwen-14B-Chat-Int4 file layout, for tests and examples.

``make_tiny_checkpoint(path)`` writes ``config.json``, ``quantize_config.json``,
``generation_config.json``, ``tokenizer_config.json`` (serialized as the real files are),
the official ``qwen.tiktoken``, and ``model-0000N-of-0000M.safetensors`` shards with
``model.safetensors.index.json``. Weights are random fp16, the block linears GPTQ-packed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from llm.config import QWEN_SHAPES, QuantizeConfig, QwenConfig
from llm.gptq_pack import quantize_state_dict
from llm.model import QwenForCausalLM
from llm.vocab import VOCAB_FILENAME, official_vocab_path

INDEX_FILE = "model.safetensors.index.json"

GENERATION_CONFIG: dict[str, Any] = {
    "chat_format": "chatml",
    "eos_token_id": 151643,
    "pad_token_id": 151643,
    "max_window_size": 6144,
    "max_new_tokens": 512,
    "do_sample": True,
    "top_k": 0,
    "top_p": 0.8,
    "repetition_penalty": 1.1,
    "transformers_version": "4.31.0",
}
TOKENIZER_CONFIG: dict[str, Any] = {
    "model_max_length": 8192,
    "tokenizer_class": "QWenTokenizer",
    "auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]},
}
_QUANT_KEYS = ("group_size", "desc_act", "bits")


def config_json(cfg: QwenConfig, quant: QuantizeConfig) -> dict[str, Any]:
    """``config.json`` with the keys and order of the Qwen-14B-Chat-Int4 file."""
    return {
        "architectures": ["QWenLMHeadModel"],
        "attn_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_qwen.QWenConfig",
            "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel",
        },
        "bf16": False,
        "emb_dropout_prob": 0.0,
        "fp16": True,
        "fp32": False,
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "kv_channels": cfg.kv_channels,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "max_position_embeddings": cfg.max_position_embeddings,
        "model_type": "qwen",
        "no_bias": cfg.no_bias,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "onnx_safe": None,
        "quantization_config": quant.to_json_dict(with_method=True),
        "rotary_emb_base": int(cfg.rotary_emb_base)
        if float(cfg.rotary_emb_base).is_integer()
        else cfg.rotary_emb_base,
        "rotary_pct": cfg.rotary_pct,
        "scale_attn_weights": True,
        "seq_length": cfg.seq_length,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "tokenizer_class": "QWenTokenizer",
        "transformers_version": "4.32.0",
        "use_cache": True,
        "use_dynamic_ntk": cfg.use_dynamic_ntk,
        "use_flash_attn": "auto",
        "use_logn_attn": cfg.use_logn_attn,
        "vocab_size": cfg.vocab_size,
    }


def write_json(path: Path, data: dict[str, Any], *, newline: bool = False) -> None:
    """JSON with indent 2, as the checkpoint's files are written."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + ("\n" if newline else ""))


def random_float_model(cfg: QwenConfig, seed: int = 0) -> QwenForCausalLM:
    """A float Qwen model with random weights (scaled so activations stay O(1))."""
    torch.manual_seed(seed)
    model = QwenForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or "ln_f" in name:
                p.uniform_(0.8, 1.2)
            elif p.dim() == 1:
                p.normal_(0.0, 0.1)
            elif "wte" in name:
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
    return model


def save_sharded(
    directory: Path, tensors: dict[str, torch.Tensor], num_shards: int, base: str = "model"
) -> None:
    """Write ``tensors`` as ``{base}-0000N-of-0000M.safetensors`` plus the index file."""
    names = list(tensors)
    num_shards = max(1, min(num_shards, len(names)))
    per = -(-len(names) // num_shards)
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(num_shards):
        fname = f"{base}-{s + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {n: tensors[n].contiguous() for n in names[s * per : (s + 1) * per]}
        save_file(part, str(directory / fname), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    write_json(
        directory / f"{base}.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
        newline=True,
    )


def write_checkpoint(
    directory: Path,
    cfg: QwenConfig,
    quant: QuantizeConfig,
    tensors: dict[str, torch.Tensor],
    num_shards: int,
) -> None:
    """Write packed ``tensors`` and every file of the Qwen-14B-Chat-Int4 layout to ``directory``."""
    save_sharded(directory, tensors, num_shards)
    write_json(directory / "config.json", config_json(cfg, quant))
    write_json(directory / "quantize_config.json", quant.to_json_dict())
    write_json(directory / "generation_config.json", GENERATION_CONFIG)
    write_json(directory / "tokenizer_config.json", TOKENIZER_CONFIG)
    shutil.copyfile(official_vocab_path(), directory / VOCAB_FILENAME)


def make_tiny_checkpoint(path: str | Path, **overrides: Any) -> Path:
    """Write a random Int4 checkpoint in the Qwen-14B-Chat-Int4 layout to ``path``.

    Overrides: any ``QwenConfig`` field (``num_hidden_layers``, ``hidden_size``,
    ``num_attention_heads``, ``kv_channels``, ``intermediate_size``, ``seq_length``,
    ``tie_word_embeddings``, ...), ``group_size`` and ``desc_act`` (GPTQ), ``num_shards``
    (default 2) and ``seed`` (default 0).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    num_shards = int(overrides.pop("num_shards", 2))
    seed = int(overrides.pop("seed", 0))
    quant_kw = {k: overrides.pop(k) for k in _QUANT_KEYS if k in overrides}
    known = {f.name for f in dataclasses.fields(QwenConfig)} - {"quantization"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"make_tiny_checkpoint: unknown override(s) {', '.join(unknown)}; use QwenConfig "
            f"fields, {', '.join(_QUANT_KEYS)}, num_shards or seed"
        )
    quant = QuantizeConfig(**{"group_size": 32, **quant_kw})
    cfg = QwenConfig(**{**QWEN_SHAPES["tiny"], **overrides, "quantization": quant})

    model = random_float_model(cfg, seed)
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight")
    tensors = quantize_state_dict(state, quant.group_size, act_order=quant.desc_act, seed=seed)
    write_checkpoint(path, cfg, quant, tensors, num_shards)
    return path
