"""Next-token choice as Qwen's generation_config defines it (HF semantics).

Order: repetition penalty over every id of the prompt and the generated text, then (sampling
only) temperature, top-k (0 = off), top-p, and a multinomial draw; greedy takes the argmax
after the repetition penalty.
"""

from __future__ import annotations

import torch

from llm.types import SamplingParams


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float | torch.Tensor
) -> torch.Tensor:
    """Divide positive (multiply negative) logits of the ``seen`` ids by ``penalty``.

    ``seen`` is a boolean mask of the vocabulary (each id counts once, however often it occurs).
    ``penalty`` may be a device tensor (a CUDA graph reads it at replay time); a float 1.0
    returns ``logits`` untouched.
    """
    if not isinstance(penalty, torch.Tensor) and penalty == 1.0:
        return logits
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits (ties with the k-th kept too); ``k == 0`` keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: drop the tokens whose ascending cumulative probability is <= 1 - p.

    At least the most likely token is always kept.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[..., -1] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def candidates(
    scores: torch.Tensor, top_k: int, top_p: float, first: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids ``top_k_filter`` then ``top_p_filter`` keep, with their renormalized probabilities.

    Equal to filtering the whole vocabulary, but it looks only at the best ``first`` ids
    (every id when their probability mass is below ``top_p``) instead of sorting every logit.
    """
    vocab = scores.shape[-1]
    if top_k > 0:
        vals, ids = torch.topk(scores, min(top_k, vocab))  # descending
        probs = vals.softmax(dim=-1)
    else:
        full = scores.softmax(dim=-1)
        if top_p >= 1.0:
            return torch.arange(vocab, device=scores.device), full
        k = min(first, vocab)
        while True:
            _, ids = torch.topk(scores, k)  # descending
            probs = full[ids]
            if k == vocab or float(probs.sum()) >= top_p:
                break
            k = vocab  # a flat distribution: sort everything once
    if top_p < 1.0:
        # a token stays while the mass ranked strictly above it is below top_p
        keep = (probs.cumsum(dim=-1) - probs) < top_p
        keep[0] = True
        ids, probs = ids[keep], probs[keep]
    return ids, probs / probs.sum()


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """A seeded generator when ``params.seed`` is set, else ``None`` (torch's global RNG)."""
    if params.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(params.seed)


def sample_token(
    logits: torch.Tensor,
    seen: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> int:
    """Choose the next id from ``logits`` ``(V,)``; ``seen`` masks prompt+generated ids."""
    scores = apply_repetition_penalty(logits.float(), seen, params.repetition_penalty)
    if not params.do_sample:
        return int(torch.argmax(scores))
    scores = scores / params.temperature
    ids, probs = candidates(scores, params.top_k, params.top_p)
    return int(ids[torch.multinomial(probs, 1, generator=generator)])
