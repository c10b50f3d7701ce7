"""The GPTQ int4 linear layer (AutoGPTQ "v1" checkpoint format) with a plain PyTorch path.

Layout, for ``y = x @ W + b`` with ``W`` of shape ``(K, N)`` (in, out):

* ``qweight`` int32 ``(K/8, N)``: nibble ``j`` (bits ``4j..4j+3``) of row ``r`` is ``q[8r + j]``.
* ``qzeros`` int32 ``(G, N/8)``: nibble ``j`` of column ``c`` is ``zero[8c + j] - 1``.
* ``scales`` fp16 ``(G, N)``; ``g_idx`` int32 ``(K,)``: the group of each input row.
* ``W[k, n] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])``.

``G = ceil(K / group_size)``, or 1 for ``group_size == -1``. ``g_idx`` is always honoured, so
act-order (``desc_act``) checkpoints work too. ``forward`` is a single call, so faster
kernels can replace the module wholesale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PACK = 8  # int4 values per int32 word
QUANTIZED_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj")
_SHIFTS = tuple(range(0, 32, 4))


def num_groups(in_features: int, group_size: int) -> int:
    """Number of quantization groups along the input dimension."""
    if group_size == -1:
        return 1
    return -(-in_features // group_size)


def unpack_rows(qweight: torch.Tensor) -> torch.Tensor:
    """``(K/8, N)`` int32 packed along rows -> ``(K, N)`` int32 values in ``0..15``."""
    shifts = torch.tensor(_SHIFTS, dtype=torch.int32, device=qweight.device)
    q = (qweight.unsqueeze(1) >> shifts.view(1, PACK, 1)) & 0xF  # (K/8, 8, N)
    return q.reshape(-1, qweight.shape[1])


def unpack_cols(qzeros: torch.Tensor) -> torch.Tensor:
    """``(G, N/8)`` int32 packed along columns -> ``(G, N)`` int32 values in ``0..15``."""
    shifts = torch.tensor(_SHIFTS, dtype=torch.int32, device=qzeros.device)
    q = (qzeros.unsqueeze(2) >> shifts.view(1, 1, PACK)) & 0xF  # (G, N/8, 8)
    return q.reshape(qzeros.shape[0], -1)


def dequantize(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The float weight ``(K, N)`` (in, out) of GPTQ v1 tensors."""
    q = unpack_rows(qweight)  # (K, N)
    zeros = unpack_cols(qzeros) + 1  # (G, N), stored as zero - 1
    g = g_idx.long()
    zeros_k = zeros.index_select(0, g)  # (K, N)
    scales_k = scales.index_select(0, g).to(dtype)  # (K, N)
    w = (q - zeros_k).to(dtype) * scales_k
    return w


class GPTQLinear(nn.Module):
    """A 4-bit GPTQ linear layer; ``forward`` dequantizes and multiplies."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        group_size: int = 128,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        if in_features % PACK or out_features % PACK:
            raise ValueError(
                f"GPTQLinear needs in/out features divisible by {PACK}, got {in_features}x{out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        groups = num_groups(in_features, group_size)
        kw = {"device": device}
        self.register_buffer(
            "qweight", torch.empty(in_features // PACK, out_features, dtype=torch.int32, **kw)
        )
        self.register_buffer(
            "qzeros", torch.empty(groups, out_features // PACK, dtype=torch.int32, **kw)
        )
        self.register_buffer("scales", torch.empty(groups, out_features, dtype=torch.float16, **kw))
        self.register_buffer("g_idx", torch.empty(in_features, dtype=torch.int32, **kw))
        if bias:
            self.register_buffer("bias", torch.empty(out_features, dtype=dtype, **kw))
        else:
            self.register_buffer("bias", None)

    def weight_float(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dequantized weight in ``nn.Linear`` orientation ``(out, in)``."""
        return dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, dtype).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, x.dtype)  # (K, N)
        y = x @ w
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits=4, group_size={self.group_size}, bias={self.bias is not None}"
        )


def swap_linears(
    model: nn.Module,
    group_size: int,
    *,
    suffixes: tuple[str, ...] = QUANTIZED_LINEARS,
    has_bias: Callable[[str], bool] = lambda name: True,
    dtype: torch.dtype = torch.float16,
) -> list[str]:
    """Replace the ``nn.Linear`` modules whose names end in ``suffixes`` by ``GPTQLinear``.

    The new modules are created on the device of the old weight (``meta`` when building for
    loading). ``has_bias(name)`` says whether the layer named ``name`` carries a bias.
    Returns the names of the replaced modules.
    """
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.endswith(suffixes)
    ]
    for name, linear in targets:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = GPTQLinear(
            linear.in_features,
            linear.out_features,
            group_size,
            bias=has_bias(name),
            device=linear.weight.device,
            dtype=dtype,
        )
        setattr(parent, leaf, layer)
    return [name for name, _ in targets]
