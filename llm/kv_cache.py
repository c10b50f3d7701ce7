"""The preallocated key/value cache: one static buffer per tensor, written in place."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    """Keys and values of every layer, ``(layers, B, max_len, heads, head_dim)`` each."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(
        cls,
        layers: int,
        batch: int,
        max_len: int,
        heads: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        shape = (layers, batch, max_len, heads, head_dim)
        return cls(
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros(shape, device=device, dtype=dtype),
        )

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``(B, max_len, heads, head_dim)`` of layer ``i``'s keys and values."""
        return self.k[i], self.v[i]
