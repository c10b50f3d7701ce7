"""The single-token decode step on CUDA: fused Triton ops, replayed as one CUDA graph.

``fast_decode_step`` has the signature of ``llm.generate.decode_one_token`` and computes the same
logits with the fused kernels of ``llm.kernels.decode_ops`` and the int4 GEMVs. It reads the
position from a device tensor and attends over the first ``position + 1`` cache slots, so its
shapes never change. ``CudaGraphDecoder`` captures it once per (model, cache, rope tables) and
replays it; install it with ``generator.decode_step = CudaGraphDecoder()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

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
    try:
        return _fused_step(model, token, position, rope, cache)
    except BaseException:
        _clear_after_failure(model)  # a step cut short must not leave partial sums behind
        raise


def _clear_after_failure(model: torch.nn.Module) -> None:
    if not torch.cuda.is_available() or torch.cuda.is_current_stream_capturing():
        return
    try:
        clear_accumulators(model)
    except Exception:  # the step's own error is the one to surface
        log.warning("could not clear the int4 accumulators after a failed step", exc_info=True)


def clear_accumulators(model: torch.nn.Module) -> None:
    """Zero every int4 layer's decode accumulator (they are kept at zero between steps)."""
    for module in model.modules():
        if hasattr(module, "clear_accumulator"):
            module.clear_accumulator()


@dataclass(frozen=True)
class DecodeOverlap:
    """Which kernel boundaries of the decode step overlap (``llm.kernels.overlap``).

    Every boundary of a layer, measured on the H200 (graph replay, in one process, tok/s at
    1k / 2k / 7.9k context): none 310.7 / 287.6 / 215.7; the GEMVs after add + RMSNorm started
    early and mlp.c_proj after the gated pair's loop, 327 / 303 / 226 (another lend of the
    card, against 313 / 290 / 218 without); also c_attn -> attention -> attn.c_proj, 333.4 /
    308.5 / 225.9; also both projections -> add + RMSNorm, 336.5 / 310.4 / 227.4.
    """

    norm_to_gemv: bool = True  # add + RMSNorm -> c_attn, the gated pair and the logits
    c_attn_to_attention: bool = True
    attention_to_c_proj: bool = True
    gated_to_c_proj: bool = True
    c_proj_to_norm: bool = True  # attn.c_proj and mlp.c_proj -> add + RMSNorm

    def plan(self) -> dict:
        """The ``Overlap`` of each launch of a layer (``norm``: both add + RMSNorm launches)."""
        from llm.kernels.overlap import AFTER_LOOP, NEVER, Overlap

        def after(flag: bool) -> int:
            return AFTER_LOOP if flag else NEVER

        return {
            "norm": Overlap(self.c_proj_to_norm, after(self.norm_to_gemv)),
            "c_attn": Overlap(self.norm_to_gemv, after(self.c_attn_to_attention)),
            "attention": Overlap(self.c_attn_to_attention, after(self.attention_to_c_proj)),
            "attn.c_proj": Overlap(self.attention_to_c_proj, after(self.c_proj_to_norm)),
            "gated": Overlap(self.norm_to_gemv, after(self.gated_to_c_proj)),
            "mlp.c_proj": Overlap(self.gated_to_c_proj, after(self.c_proj_to_norm)),
            "logits": Overlap(self.norm_to_gemv),  # after the final add + RMSNorm
        }


DECODE_OVERLAP = DecodeOverlap()
NO_OVERLAP = DecodeOverlap(**{edge.name: False for edge in fields(DecodeOverlap)})


def _fused_step(model, token, position, rope, cache) -> torch.Tensor:
    from llm.kernels.decode_ops import add_rmsnorm, decode_attention
    from llm.kernels.linear import gated_mlp
    from llm.kernels.overlap import overlap_supported

    cfg = model.config
    tr = model.transformer
    heads, head_dim = cfg.num_attention_heads, cfg.head_dim
    eps = cfg.layer_norm_epsilon
    plan = (DECODE_OVERLAP if overlap_supported(token.device) else NO_OVERLAP).plan()
    norm = plan["norm"]
    x = tr.wte(token).reshape(-1)  # the residual stream (a new tensor), updated in place  (C,)
    first = replace(norm, early=False)  # after the embedding's torch ops: nothing to wait for
    h = add_rmsnorm(x, None, tr.h[0].ln_1.weight, eps, overlap=first)
    blocks = list(tr.h)
    for i, blk in enumerate(blocks):
        k_cache, v_cache = cache.layer(i)  # (1, S, H, D)
        qkv, summed = _project(blk.attn.c_attn, h.view(1, -1), plan["c_attn"])  # (1, 3C)
        a = decode_attention(
            qkv.view(-1),
            position,
            rope.cos,
            rope.sin,
            rope.logn,
            k_cache,
            v_cache,
            heads,
            head_dim,
            clear_qkv=summed,
            overlap=plan["attention"],
        )  # (C,); also writes this position's k/v into the cache
        o, summed = _project(blk.attn.c_proj, a.view(1, -1), plan["attn.c_proj"])
        h = add_rmsnorm(x, o.view(-1), blk.ln_2.weight, eps, summed, norm)
        m = gated_mlp(blk.mlp.w1, blk.mlp.w2, h.view(1, -1), plan["gated"])  # (1, F)
        nxt = blocks[i + 1].ln_1.weight if i + 1 < len(blocks) else tr.ln_f.weight
        o, summed = _project(blk.mlp.c_proj, m, plan["mlp.c_proj"])
        h = add_rmsnorm(x, o.view(-1), nxt, eps, summed, norm)
    return _logits(model.lm_head, h, plan["logits"])  # (1, V)


def _logits(lm_head: torch.nn.Module, h: torch.Tensor, overlap) -> torch.Tensor:
    """fp32 logits ``(1, V)``: the Triton GEMV where it runs the layer, else the layer."""
    from llm.kernels.logits import decode_logits, logits_supported

    weight = getattr(lm_head, "weight", None)
    if getattr(lm_head, "bias", None) is None and weight is not None and logits_supported(weight):
        return decode_logits(h, weight, overlap)
    return lm_head(h.view(1, -1)).float()


def _project(linear: torch.nn.Module, x: torch.Tensor, overlap) -> tuple[torch.Tensor, bool]:
    """``(output, summed)``: an ``Int4Linear``'s fp32 accumulator and True (its consumer rounds
    and clears it), else the layer's own output and False."""
    accumulate = getattr(linear, "accumulate", None)
    out = accumulate(x, overlap) if accumulate is not None else None
    return (out, True) if out is not None else (linear(x), False)


class CudaGraphDecoder:
    """A ``decode_step`` that replays ``fast_decode_step`` captured in a CUDA graph.

    The graph also makes the greedy choice on the device (repetition penalty over a device
    mask, then argmax, in one launch: ``llm.kernels.greedy``) and feeds it back as the next
    step's input, so ``greedy`` can keep one step queued ahead of the host. ``token`` and
    ``position`` may be CPU tensors (``host_inputs``): they reach the graph through one
    asynchronous pinned-memory copy.
    """

    host_inputs = True
    RING = 4  # pinned slots for chosen ids in flight to the host

    def __init__(self, step=fast_decode_step, warmup: int = 2) -> None:
        self.step = step
        self.warmup = warmup
        self._key: tuple[int, ...] | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: torch.Tensor | None = None

    def _allocate(self, device: torch.device, vocab: int) -> None:
        self._inputs = torch.zeros(2, dtype=torch.long, device=device)  # token, position
        self._staging = torch.zeros(2, dtype=torch.long).pin_memory()  # host twin of _inputs
        self._copied = torch.cuda.Event()  # the last staging -> device copy
        self._seen = torch.zeros(vocab, dtype=torch.bool, device=device)
        self._penalty = torch.ones(1, dtype=torch.float32, device=device)
        self._ring = torch.zeros(self.RING, dtype=torch.long).pin_memory()
        self._ring_ready = [torch.cuda.Event() for _ in range(self.RING)]
        from llm.kernels.greedy import GreedyChoice

        self._choose = GreedyChoice(vocab, device)

    def _step_and_choose(self, model, rope, cache) -> torch.Tensor:
        """The decode step, then the greedy choice fed back as the next step's input
        (``_inputs[0]``, also where ``greedy`` reads the choice back)."""
        logits = self.step(model, self._inputs[:1].view(1, 1), self._inputs[1:], rope, cache)
        if logits.is_cuda:
            self._choose(logits, self._seen, self._penalty, self._inputs)
        else:
            _choose_with_torch(logits, self._seen, self._penalty, self._inputs)
        return logits

    def _capture(self, model, rope, cache) -> None:
        device = cache.k.device
        self._allocate(device, model.config.vocab_size)
        # warm-up runs write position 0's cache slot: capture happens before any real decode
        # of that cache would read it back, and the real step rewrites the slot it attends to
        saved = (cache.k[:, :, 0].clone(), cache.v[:, :, 0].clone())
        clear_accumulators(model)  # they start at zero whatever came before
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self._inputs.zero_()
                self._step_and_choose(model, rope, cache)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._logits = self._step_and_choose(model, rope, cache)
        cache.k[:, :, 0].copy_(saved[0])
        cache.v[:, :, 0].copy_(saved[1])
        self._graph = graph
        self._key = self._key_of(model, rope, cache)
        log.info("captured the decode step as a CUDA graph")

    @staticmethod
    def _key_of(model, rope, cache) -> tuple[int, ...]:
        return (id(model), id(rope), id(cache), cache.k.data_ptr(), rope.cos.data_ptr())

    def _ready(self, model, rope, cache) -> None:
        if self._graph is None or self._key_of(model, rope, cache) != self._key:
            self._capture(model, rope, cache)

    def _stage(self, token: int, position: int) -> None:
        """Host values into the graph's input buffer through the pinned staging copy."""
        self._copied.synchronize()  # the previous copy has read the staging buffer
        view = self._staging.numpy()  # plain stores: no tensor dispatch per token
        view[0], view[1] = token, position
        self._inputs.copy_(self._staging, non_blocking=True)
        self._copied.record()

    def _set_inputs(self, token: torch.Tensor, position: torch.Tensor) -> None:
        if token.device.type == "cpu" and position.device.type == "cpu":
            self._stage(int(token.reshape(())), int(position.reshape(())))
        else:
            self._inputs[:1].copy_(token.reshape(1))
            self._inputs[1:].copy_(position.reshape(1))

    def __call__(self, model, token, position, rope, cache, kv_len=None) -> torch.Tensor:
        self._ready(model, rope, cache)
        self._set_inputs(token, position)
        self._graph.replay()
        return self._logits.clone()

    def greedy(
        self,
        model,
        rope,
        cache,
        token: int,
        position: int,
        steps: int,
        seen: torch.Tensor,
        repetition_penalty: float = 1.0,
    ) -> Iterator[int]:
        """Feed ``token`` at ``position``; yield the next ``steps`` greedy ids.

        Step ``j + 1`` is queued before the id of step ``j`` is read back, so the GPU runs
        steps back to back. ``seen`` marks the ids the repetition penalty applies to.
        """
        self._ready(model, rope, cache)
        self._seen.copy_(seen)
        self._penalty.fill_(repetition_penalty)
        self._stage(token, position)
        ring = self._ring.numpy()

        def queue(j: int) -> None:
            self._graph.replay()
            self._ring[j % self.RING].copy_(self._inputs[0], non_blocking=True)
            self._ring_ready[j % self.RING].record()

        queue(0)
        for j in range(steps):
            if j + 1 < steps:
                queue(j + 1)
            self._ring_ready[j % self.RING].synchronize()
            yield int(ring[j % self.RING])


def _choose_with_torch(
    logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor, inputs: torch.Tensor
) -> None:
    """What ``llm.kernels.greedy.GreedyChoice`` does, in torch ops (for logits off CUDA)."""
    from llm.sampling import apply_repetition_penalty

    choice = apply_repetition_penalty(logits, seen, penalty).argmax(-1)  # (1,)
    inputs[:1].copy_(choice)
    inputs[1:].add_(1)
    seen.index_fill_(0, choice, True)


def install(generator: object) -> None:
    """Use the graphed fast decode step in ``generator`` when it runs on CUDA."""
    if getattr(generator, "device", torch.device("cpu")).type == "cuda":
        generator.decode_step = CudaGraphDecoder()
