"""Sampling against straightforward implementations of HF's processors, and seeded reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from llm.sampling import (
    apply_repetition_penalty,
    candidates,
    sample_token,
    top_k_filter,
    top_p_filter,
)
from llm.types import SamplingParams


def plain_repetition_penalty(logits: list[float], ids: list[int], p: float) -> list[float]:
    out = list(logits)
    for i in set(ids):
        out[i] = out[i] / p if out[i] > 0 else out[i] * p
    return out


def plain_top_k(logits: list[float], k: int) -> set[int]:
    kth = sorted(logits, reverse=True)[k - 1]
    return {i for i, v in enumerate(logits) if v >= kth}


def plain_top_p(logits: list[float], p: float) -> set[int]:
    """HF TopP: ascending order, drop while the cumulative probability is <= 1 - p."""
    m = max(logits)
    e = [math.exp(v - m) for v in logits]
    z = sum(e)
    order = sorted(range(len(logits)), key=lambda i: logits[i])
    kept, cum = set(), 0.0
    for rank, i in enumerate(order):
        cum += e[i] / z
        if cum > 1 - p or rank == len(order) - 1:
            kept.add(i)
    return kept


def test_repetition_penalty() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=gen)
    ids = [3, 3, 7, 10, 49, 0]
    seen = torch.zeros(50, dtype=torch.bool)
    seen[ids] = True
    got = apply_repetition_penalty(logits, seen, 1.3)
    assert got.tolist() == pytest.approx(plain_repetition_penalty(logits.tolist(), ids, 1.3))


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k(k: int) -> None:
    logits = torch.randn(100, generator=torch.Generator().manual_seed(k))
    kept = set(torch.nonzero(torch.isfinite(top_k_filter(logits, k))).flatten().tolist())
    assert kept == plain_top_k(logits.tolist(), k)
    assert torch.equal(top_k_filter(logits, 0), logits)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8, 0.95])
def test_top_p(p: float) -> None:
    logits = torch.randn(300, generator=torch.Generator().manual_seed(int(p * 100))) * 2
    kept = set(torch.nonzero(torch.isfinite(top_p_filter(logits, p))).flatten().tolist())
    assert kept == plain_top_p(logits.double().tolist(), p)


@pytest.mark.parametrize("k, p", [(0, 0.8), (0, 0.3), (10, 0.8), (0, 1.0), (40, 0.5)])
def test_candidate_path_equals_filtering_the_whole_vocabulary(k: int, p: float) -> None:
    logits = torch.randn(152064, generator=torch.Generator().manual_seed(k)) * 4
    expected = top_p_filter(top_k_filter(logits, k), p).softmax(-1)
    ids, probs = candidates(logits, k, p)
    got = torch.zeros_like(expected)
    got[ids] = probs
    assert set(ids.tolist()) == set(torch.nonzero(expected).flatten().tolist())
    assert torch.allclose(got, expected, atol=1e-6)


def test_greedy_is_argmax_after_penalty() -> None:
    logits = torch.tensor([1.0, 3.0, 2.9, -1.0])
    seen = torch.tensor([False, True, False, False])
    assert sample_token(logits, seen, SamplingParams(do_sample=False, repetition_penalty=1.0)) == 1
    assert sample_token(logits, seen, SamplingParams(do_sample=False, repetition_penalty=1.1)) == 2


def test_seeded_sampling_is_reproducible(tiny_engine) -> None:
    params = SamplingParams(seed=1234, top_p=0.95)
    ids = list(range(100, 120))
    a = tiny_engine.complete(ids, max_new_tokens=8, sampling=params)
    b = tiny_engine.complete(ids, max_new_tokens=8, sampling=params)
    c = tiny_engine.complete(ids, max_new_tokens=8, sampling=SamplingParams(seed=99, top_p=0.95))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_sampling_frequencies_follow_the_distribution() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    seen = torch.zeros(4, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    params = SamplingParams(top_p=1.0, repetition_penalty=1.0)
    counts = torch.zeros(4)
    for _ in range(2000):
        counts[sample_token(logits, seen, params, gen)] += 1
    assert torch.allclose(counts / 2000, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.04)
    # top_p 0.8 keeps {0.5, 0.3}: the rest is never drawn
    params = SamplingParams(top_p=0.8, repetition_penalty=1.0)
    drawn = {sample_token(logits, seen, params, gen) for _ in range(300)}
    assert drawn == {0, 1}


@pytest.mark.parametrize(
    "kwargs", [{"temperature": 0}, {"top_p": 0}, {"top_k": -1}, {"repetition_penalty": 0}]
)
def test_bad_sampling_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_engine_rejects_a_non_params_object(tiny_engine) -> None:
    with pytest.raises(TypeError, match="SamplingParams"):
        tiny_engine.complete("hi", sampling={"top_p": 0.5})
