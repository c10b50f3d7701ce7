"""The demo model's shape and the Int4 rounding shared by training and quantization.

The shape fits the 40 MB budget: the fp16 embedding (152064 x 96, tied with the output
layer) is 29 MB, the Int4 blocks about 1 MB. Training sees the same symmetric 4-bit
rounding (per group of input rows, zero point 8) that ``quantize.py`` writes, so the
checkpoint computes what the trained model computed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

DEMO_CONFIG: dict[str, Any] = {
    "hidden_size": 96,
    "num_attention_heads": 6,
    "kv_channels": 16,
    "num_hidden_layers": 8,
    "intermediate_size": 512,  # Qwen convention: the MLP's inner width is half of this
    "vocab_size": 152064,
    "seq_length": 2048,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
GROUP_SIZE = 32
QUANTIZED_SUFFIXES = ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj")


def int4_quantize(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 4-bit rounding of a (out, in) weight in groups of ``group_size`` input rows.

    Returns ``(q, scales)``: q (out, in) integers in 0..15 with zero point 8, and fp16 scales
    (out, in // group_size). The dequantized weight is ``(q - 8) * scale``.
    """
    out_f, in_f = weight.shape
    if in_f % group_size:
        raise ValueError(f"in_features {in_f} is not a multiple of group_size {group_size}")
    w = weight.detach().float().reshape(out_f, in_f // group_size, group_size)  # (N, G, g)
    amax = w.abs().amax(dim=-1).clamp_min(1e-8)  # (N, G)
    scales = (amax / 7).half()
    q = torch.clamp(torch.round(w / scales.float().unsqueeze(-1)), -8, 7) + 8  # (N, G, g)
    return q.reshape(out_f, in_f).to(torch.int32), scales


def int4_dequantize(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Float (out, in) weight from ``int4_quantize``'s output."""
    out_f, in_f = q.shape
    groups = scales.shape[1]
    w = (q.float() - 8).reshape(out_f, groups, in_f // groups) * scales.float().unsqueeze(-1)
    return w.reshape(out_f, in_f)


class _FakeInt4(nn.Module):
    """Forward with the Int4-rounded weight, backward straight through to the float weight."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rounded = int4_dequantize(*int4_quantize(weight, self.group_size)).to(weight.dtype)
        return weight + (rounded - weight).detach()


def quantized_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers the checkpoint stores as Int4, by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.endswith(QUANTIZED_SUFFIXES)
    }


def fake_quant_linears(model: nn.Module, group_size: int = GROUP_SIZE) -> None:
    """From now on train ``model`` through Int4-rounded block weights."""
    for module in quantized_linears(model).values():
        parametrize.register_parametrization(module, "weight", _FakeInt4(group_size))


def build_train_model(config: dict[str, Any]) -> nn.Module:
    """A freshly initialised float Qwen model (tied embeddings) of shape ``config``."""
    from llm.config import QwenConfig
    from llm.model import QwenForCausalLM

    model = QwenForCausalLM(QwenConfig(**config))
    std = 0.02
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(
                    1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0
                )
            elif name.endswith(("attn.c_proj.weight", "mlp.c_proj.weight")):
                p.normal_(0.0, std / (2 * model.config.num_hidden_layers) ** 0.5)
            else:
                p.normal_(0.0, std)
    return model.train()


def hidden_states(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The final-norm hidden states ``(B, T, H)`` of a causal pass over ``ids`` ``(B, T)``."""
    T = ids.shape[1]
    positions = torch.arange(T, device=ids.device)
    rope = model.rope_tables(T, device=ids.device)
    x = model.transformer.wte(ids)  # (B, T, H)
    for block in model.transformer.h:
        x = block(x, positions, rope, None, None)
    return model.transformer.ln_f(x)
