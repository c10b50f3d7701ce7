"""The single-token decode step on CUDA: fused Triton ops, replayed as one CUDA graph.

``fast_decode_step`` has the signature of ``llm.generate.decode_one_token`` and computes the same
logits with the fused kernels of ``llm.kernels.decode_ops`` and the int4 GEMVs. It reads the
position from a device tensor and attends over the first ``position + 1`` cache slots, so its
shapes never change. ``CudaGraphDecoder`` captures it once per (model, cache, rope tables) and
replays it; install it with ``generator.decode_step = CudaGraphDecoder()``.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def fast_decode_step(
    model: torch.nn.Module,
    token: torch.Tensor,
    position: torch.Tensor,
    rope: object,
    cache: object,
    kv_len: int | None = None,
) -> torch.Tensor:
    """One decode step, batch 1: ``token`` ``(1, 1)`` at ``position`` ``(1,)`` -> logits ``(1, V)``."""
    from llm.kernels.decode_ops import add_rmsnorm, decode_attention
    from llm.kernels.linear import gated_mlp

    cfg = model.config
    tr = model.transformer
    heads, head_dim = cfg.num_attention_heads, cfg.head_dim
    eps = cfg.layer_norm_epsilon
    x = tr.wte(token).reshape(-1).clone()  # the residual stream, updated in place  (C,)
    h = add_rmsnorm(x, None, tr.h[0].ln_1.weight, eps)
    blocks = list(tr.h)
    for i, blk in enumerate(blocks):
        k_cache, v_cache = cache.layer(i)  # (1, S, H, D)
        qkv = blk.attn.c_attn(h.view(1, -1)).view(-1)  # (3C,)
        a = decode_attention(
            qkv, position, rope.cos, rope.sin, rope.logn, k_cache, v_cache, heads, head_dim
        )  # (C,); also writes this position's k/v into the cache
        h = add_rmsnorm(x, blk.attn.c_proj(a.view(1, -1)).view(-1), blk.ln_2.weight, eps)
        m = gated_mlp(blk.mlp.w1, blk.mlp.w2, h.view(1, -1))  # w1 * silu(w2), (1, F)
        nxt = blocks[i + 1].ln_1.weight if i + 1 < len(blocks) else tr.ln_f.weight
        h = add_rmsnorm(x, blk.mlp.c_proj(m).view(-1), nxt, eps)
    return model.lm_head(h.view(1, -1)).float()  # (1, V)


class CudaGraphDecoder:
    """A ``decode_step`` that replays ``fast_decode_step`` captured in a CUDA graph.

    ``token`` and ``position`` may be CPU tensors (``host_inputs``): they then reach the graph's
    input buffer through one asynchronous copy from pinned memory, which costs the host far less
    than making two device tensors per token.
    """

    host_inputs = True

    def __init__(self, step=fast_decode_step, warmup: int = 2) -> None:
        self.step = step
        self.warmup = warmup
        self._key: tuple[int, ...] | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: torch.Tensor | None = None  # device (2,): token, position
        self._staging: torch.Tensor | None = None  # pinned host twin of _inputs
        self._copied: torch.cuda.Event | None = None  # the last staging -> device copy
        self._logits: torch.Tensor | None = None

    def _capture(self, model, rope, cache) -> None:
        device = cache.k.device
        self._inputs = torch.zeros(2, dtype=torch.long, device=device)
        self._staging = torch.zeros(2, dtype=torch.long).pin_memory()
        self._copied = torch.cuda.Event()
        token, position = self._inputs[:1].view(1, 1), self._inputs[1:]
        # warm-up runs write position 0's cache slot: capture happens before any real decode
        # of that cache would read it back, and the real step rewrites the slot it attends to
        saved = (cache.k[:, :, 0].clone(), cache.v[:, :, 0].clone())
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.step(model, token, position, rope, cache)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._logits = self.step(model, token, position, rope, cache)
        cache.k[:, :, 0].copy_(saved[0])
        cache.v[:, :, 0].copy_(saved[1])
        self._graph = graph
        self._key = (id(model), id(rope), id(cache), cache.k.data_ptr(), rope.cos.data_ptr())
        log.info("captured the decode step as a CUDA graph")

    def _set_inputs(self, token: torch.Tensor, position: torch.Tensor) -> None:
        if token.device.type == "cpu" and position.device.type == "cpu":
            self._copied.synchronize()  # the previous copy has read the staging buffer
            view = self._staging.numpy()  # plain stores: no tensor dispatch per token
            view[0] = int(token.reshape(()))
            view[1] = int(position.reshape(()))
            self._inputs.copy_(self._staging, non_blocking=True)
            self._copied.record()
        else:
            self._inputs[:1].copy_(token.reshape(1))
            self._inputs[1:].copy_(position.reshape(1))

    def __call__(self, model, token, position, rope, cache, kv_len=None) -> torch.Tensor:
        key = (id(model), id(rope), id(cache), cache.k.data_ptr(), rope.cos.data_ptr())
        if self._graph is None or key != self._key:
            self._capture(model, rope, cache)
        self._set_inputs(token, position)
        self._graph.replay()
        return self._logits.clone()


def install(generator: object) -> None:
    """Use the graphed fast decode step in ``generator`` when it runs on CUDA."""
    if getattr(generator, "device", torch.device("cpu")).type == "cuda":
        generator.decode_step = CudaGraphDecoder()
