"""Qwen (v1) decoder: RMSNorm, fused QKV attention with rotary, dynamic NTK and logN, SiLU MLP.

Built from plain ``nn.Linear`` so it trains in float; the loader swaps the five block linears
for int4 layers. Module names equal the checkpoint's tensor names (``transformer.h.0.attn.c_attn``).

The forward takes token ids ``(B, T)`` and their positions ``(T,)`` as a tensor. Rotary cos/sin
and logN factors come from ``RopeTables`` (computed once per prefill for the dynamic-NTK alpha)
and are gathered by position; cache writes use ``index_copy_`` and the attention mask is derived
from positions, so a single-token decode step has fixed shapes when ``kv_len`` is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llm.config import QwenConfig
from llm.kv_cache import KVCache


def ntk_alpha(config: QwenConfig, length: int) -> float:
    """Dynamic-NTK alpha for a prefill of ``length`` tokens (1 up to ``seq_length``)."""
    if not config.use_dynamic_ntk or length <= 0:
        return 1.0
    context_value = math.log2(length / config.seq_length) + 1
    return float(max(2 ** math.ceil(context_value) - 1, 1))


@dataclass
class RopeTables:
    """Per-position tables: rotary ``cos``/``sin`` ``(S, D)`` and logN factors ``(S,)``, fp32."""

    cos: torch.Tensor
    sin: torch.Tensor
    logn: torch.Tensor
    key_positions: torch.Tensor  # arange(S), the positions of the cache slots
    alpha: float

    @classmethod
    def create(
        cls,
        config: QwenConfig,
        length: int,
        alpha: float = 1.0,
        *,
        use_logn: bool | None = None,
        device: torch.device | str | None = None,
    ) -> RopeTables:
        dim = config.head_dim
        empty = torch.empty(length, dim, dtype=torch.float32, device=device)
        positions = torch.arange(length, device=device)
        tables = cls(
            empty, torch.empty_like(empty), torch.ones(length, device=device), positions, 0.0
        )
        tables.set_alpha(config, alpha)
        use_logn = config.use_logn_attn if use_logn is None else use_logn
        if use_logn:
            p = positions.double() + 1  # log_{seq_length}(p + 1) from position seq_length on
            factors = torch.log(p) / math.log(config.seq_length)
            tables.logn.copy_(torch.where(p > config.seq_length, factors, 1.0).float())
        return tables

    @property
    def length(self) -> int:
        return self.cos.shape[0]

    def set_alpha(self, config: QwenConfig, alpha: float) -> None:
        """Recompute cos/sin in place (same storage) for a new NTK alpha."""
        dim = config.head_dim
        base = config.rotary_emb_base * alpha ** (dim / (dim - 2))
        device = self.cos.device
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=device).float() / dim))
        freqs = torch.outer(torch.arange(self.length, device=device).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # (S, D)
        self.cos.copy_(emb.cos())
        self.sin.copy_(emb.sin())
        self.alpha = alpha


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, T, H, D)`` in fp32 with ``cos``/``sin`` ``(T, D)``; cast back."""
    xf = x.float()
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, D)
    return (xf * cos + rotate_half(xf) * sin).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, config: QwenConfig) -> None:
        super().__init__()
        self.n_head = config.num_attention_heads
        self.head_dim = config.head_dim
        self.hidden = config.hidden_size
        self.c_attn = nn.Linear(self.hidden, 3 * self.hidden, bias=True)
        self.c_proj = nn.Linear(self.hidden, self.hidden, bias=not config.no_bias)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        rope: RopeTables,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        kv_len: int | None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.hidden, dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim)  # (B, T, H, D)
        k = k.view(B, T, self.n_head, self.head_dim)
        v = v.view(B, T, self.n_head, self.head_dim)
        cos, sin = rope.cos[positions], rope.sin[positions]  # (T, D)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        q = q * rope.logn[positions].to(q.dtype).view(1, T, 1, 1)

        if cache is None:
            keys, values, key_pos = k, v, positions
        else:
            k_cache, v_cache = cache  # (B, S, H, D)
            k_cache.index_copy_(1, positions, k)
            v_cache.index_copy_(1, positions, v)
            if kv_len is None:  # fixed shapes: attend over every slot, the mask hides the rest
                keys, values, key_pos = k_cache, v_cache, rope.key_positions
            else:
                keys, values = k_cache[:, :kv_len], v_cache[:, :kv_len]
                key_pos = rope.key_positions[:kv_len]
        mask = key_pos[None, :] <= positions[:, None]  # (T, S) causal by position
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),  # (B, H, T, D)
            keys.transpose(1, 2),  # (B, H, S, D)
            values.transpose(1, 2),
            attn_mask=mask[None, None],
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, H*D)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: QwenConfig) -> None:
        super().__init__()
        bias = not config.no_bias
        self.w1 = nn.Linear(config.hidden_size, config.mlp_hidden, bias=bias)
        self.w2 = nn.Linear(config.hidden_size, config.mlp_hidden, bias=bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))  # SiLU on w2, as Qwen v1


class Block(nn.Module):
    def __init__(self, config: QwenConfig) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.ln_2 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        rope: RopeTables,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        kv_len: int | None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), positions, rope, cache, kv_len)
        return x + self.mlp(self.ln_2(x))


class QwenTransformer(nn.Module):
    def __init__(self, config: QwenConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.h = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.ln_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)


class QwenForCausalLM(nn.Module):
    """Qwen v1 language model; ``state_dict`` names match the checkpoint's tensor names."""

    def __init__(self, config: QwenConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = QwenTransformer(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with the output layer (``tie_word_embeddings``)."""
        self.lm_head.weight = self.transformer.wte.weight

    def rope_tables(self, length: int, device: torch.device | str | None = None) -> RopeTables:
        """Tables for a fresh prefill of ``length`` tokens (NTK and logN only at inference)."""
        alpha = 1.0 if self.training else ntk_alpha(self.config, length)
        return RopeTables.create(
            self.config,
            length,
            alpha,
            use_logn=self.config.use_logn_attn and not self.training,
            device=device,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        rope: RopeTables | None = None,
        cache: KVCache | None = None,
        *,
        kv_len: int | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``) for ``input_ids`` ``(B, T)``.

        Without ``cache`` this is one causal pass over ``input_ids`` at ``positions``
        (default ``0..T-1``). With ``cache`` the new keys/values are written at ``positions``
        and attention covers the cache up to ``kv_len`` (every slot when ``None``).
        """
        device = input_ids.device
        T = input_ids.shape[1]
        if positions is None:
            positions = torch.arange(T, device=device)
        if rope is None:
            rope = self.rope_tables(T, device=device)
        x = self.transformer.wte(input_ids)  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, positions, rope, cache.layer(i) if cache is not None else None, kv_len)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.transformer.ln_f(x))
