"""Prefill and decode on a static KV cache, with reuse of the longest common prompt prefix.

``Generator`` owns the cache and the rotary tables. Each call prefills only the tokens after
the prefix it shares with what the cache already holds, unless the dynamic-NTK alpha of the new
prompt differs from the cached one (then the keys' rotation would differ: re-prefill all).
``decode_step`` is the single-token forward; it has fixed shapes when ``slice_kv`` is off, so
an accelerator can capture it and assign a replacement with the same signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch

from llm.kv_cache import KVCache
from llm.model import QwenForCausalLM, RopeTables, ntk_alpha
from llm.sampling import make_generator, sample_token
from llm.types import SamplingParams

log = logging.getLogger(__name__)

DecodeStep = Callable[..., torch.Tensor]


def prefill(
    model: QwenForCausalLM,
    ids: torch.Tensor,
    positions: torch.Tensor,
    rope: RopeTables,
    cache: KVCache,
    kv_len: int | None,
) -> torch.Tensor:
    """Write ``ids`` ``(1, T)`` at ``positions`` into the cache; logits of the last one ``(1, V)``."""
    return model(ids, positions, rope, cache, kv_len=kv_len, last_only=True)[:, -1]


def decode_one_token(
    model: QwenForCausalLM,
    token: torch.Tensor,
    position: torch.Tensor,
    rope: RopeTables,
    cache: KVCache,
    kv_len: int | None = None,
) -> torch.Tensor:
    """One step: ``token`` ``(1, 1)`` at ``position`` ``(1,)`` -> next-token logits ``(1, V)``."""
    return model(token, position, rope, cache, kv_len=kv_len)[:, -1]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Generator:
    """Token generation for one sequence at a time, keeping the KV cache between calls."""

    def __init__(
        self,
        model: QwenForCausalLM,
        *,
        max_len: int,
        device: torch.device,
        dtype: torch.dtype,
        slice_kv: bool | None = None,
    ) -> None:
        self.model = model
        self.config = model.config
        self.max_len = max_len
        self.device = device
        self.dtype = dtype
        self.slice_kv = device.type == "cpu" if slice_kv is None else slice_kv
        self.decode_step: DecodeStep = decode_one_token
        self.cache: KVCache | None = None
        self.rope: RopeTables | None = None
        self.cached_ids: list[int] = []  # ids whose keys/values are in the cache, in order
        self.last_cached_tokens = 0

    def _ensure_buffers(self) -> tuple[KVCache, RopeTables]:
        if self.cache is None or self.rope is None:
            cfg = self.config
            self.cache = KVCache.allocate(
                cfg.num_hidden_layers,
                1,
                self.max_len,
                cfg.num_attention_heads,
                cfg.head_dim,
                device=self.device,
                dtype=self.dtype,
            )
            self.rope = RopeTables.create(cfg, self.max_len, 1.0, device=self.device)
        return self.cache, self.rope

    def reset(self) -> None:
        """Forget the cached prefix (the buffers stay allocated)."""
        self.cached_ids = []

    @torch.inference_mode()
    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        """Bring the cache to ``ids``, reusing the common prefix; next-token logits ``(V,)``."""
        n = len(ids)
        if n == 0:
            raise ValueError("the prompt is empty: nothing to condition on")
        if n >= self.max_len:
            raise ValueError(
                f"the prompt has {n} tokens; the context window holds {self.max_len} "
                "(prompt plus at least one generated token)"
            )
        cache, rope = self._ensure_buffers()
        alpha = ntk_alpha(self.config, n)
        reuse = 0
        if self.cached_ids and rope.alpha == alpha:
            reuse = min(common_prefix_len(self.cached_ids, ids), n - 1)
        elif rope.alpha != alpha:
            log.debug("dynamic NTK alpha %s -> %s: re-prefilling %d tokens", rope.alpha, alpha, n)
            rope.set_alpha(self.config, alpha)
        self.cached_ids = list(ids[:reuse])
        new = torch.tensor([list(ids[reuse:])], dtype=torch.long, device=self.device)  # (1, T)
        positions = torch.arange(reuse, n, device=self.device)
        # prefill is never graph-captured: attend over the n filled slots only
        logits = prefill(self.model, new, positions, rope, cache, n)
        self.cached_ids = list(ids)
        self.last_cached_tokens = reuse
        return logits[0]

    @torch.inference_mode()
    def decode(self, token: int) -> torch.Tensor:
        """Feed ``token`` at the next position; next-token logits ``(V,)``."""
        cache, rope = self._ensure_buffers()
        p = len(self.cached_ids)
        if p >= self.max_len:
            raise ValueError(f"the context window of {self.max_len} tokens is full")
        # a step that takes host inputs copies them itself (one copy instead of two)
        where = "cpu" if getattr(self.decode_step, "host_inputs", False) else self.device
        tok = torch.tensor([[token]], dtype=torch.long, device=where)  # (1, 1)
        pos = torch.tensor([p], dtype=torch.long, device=where)  # (1,)
        kv_len = p + 1 if self.slice_kv else None
        logits = self.decode_step(self.model, tok, pos, rope, cache, kv_len)
        self.cached_ids.append(token)
        return logits[0]

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_new_tokens: int,
        sampling: SamplingParams,
        stop_ids: frozenset[int] = frozenset(),
    ) -> Iterator[int]:
        """Yield generated ids; ends after a stop id, ``max_new_tokens`` or a full window.

        The consumer may stop early (stop strings); the cache then holds exactly the ids fed.
        """
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        logits = self.prefill(prompt_ids)
        vocab = logits.shape[-1]
        seen = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        seen[torch.tensor(list(prompt_ids), dtype=torch.long, device=self.device)] = True
        generator = make_generator(sampling, self.device)
        greedy_ahead = not sampling.do_sample and hasattr(self.decode_step, "greedy")
        for i in range(max_new_tokens):
            token = sample_token(logits, seen, sampling, generator)
            yield token
            last = i == max_new_tokens - 1
            if token in stop_ids or last or len(self.cached_ids) >= self.max_len:
                return
            seen[token] = True
            if greedy_ahead:
                rest = self.greedy_continue(
                    token, max_new_tokens - 1 - i, seen, sampling.repetition_penalty
                )
                for token in rest:
                    yield token
                    if token in stop_ids:
                        return
                return
            logits = self.decode(token)

    @torch.inference_mode()
    def greedy_continue(
        self,
        token: int,
        max_tokens: int,
        seen: torch.Tensor | None = None,
        repetition_penalty: float = 1.0,
    ) -> Iterator[int]:
        """Feed ``token``, then yield up to ``max_tokens`` greedy ids, feeding each in turn.

        Stops early when the window is full. ``seen`` (a boolean mask of the vocabulary, updated
        in place on the host path) marks the ids the repetition penalty applies to. A decode
        step that chooses on the device (``decode_step.greedy``) keeps one step queued ahead
        of the host, so the GPU never waits for the host between tokens; the step queued after
        the consumer stops writes only a cache slot past ``cached_ids``.
        """
        steps = min(max_tokens, self.max_len - len(self.cached_ids))
        if steps <= 0:
            return
        if seen is None:
            seen = torch.zeros(self.config.vocab_size, dtype=torch.bool, device=self.device)
        seen[token] = True
        if hasattr(self.decode_step, "greedy"):
            cache, rope = self._ensure_buffers()
            chosen = self.decode_step.greedy(
                self.model, rope, cache, token, len(self.cached_ids), steps, seen,
                repetition_penalty,
            )  # fmt: skip
            for nxt in chosen:
                self.cached_ids.append(token)
                yield nxt
                token = nxt
            return
        penalty = SamplingParams(do_sample=False, repetition_penalty=repetition_penalty)
        for _ in range(steps):
            logits = self.decode(token)
            token = sample_token(logits, seen, penalty)
            seen[token] = True
            yield token

    def window_full(self) -> bool:
        return len(self.cached_ids) >= self.max_len
