"""The decode graph's fused greedy choice (``llm.kernels.greedy``) against the torch ops."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llm.sampling import apply_repetition_penalty

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")]


def _scenarios(vocab: int, gen: torch.Generator):
    """(logits, seen) pairs: random, a tie across blocks, a seen id that would otherwise win."""
    for case in ("random", "tie", "penalised winner", "all negative"):
        logits = torch.randn(1, vocab, generator=gen) * 4
        seen = torch.rand(vocab, generator=gen) < 0.1
        if case == "tie":
            logits[0, [vocab - 2, 9, 5000 % vocab]] = 90.0  # the first of equal maxima wins
        elif case == "penalised winner":
            logits[0, 11] = 60.0
            seen[11] = True
        elif case == "all negative":
            logits = -logits.abs() - 1
        yield case, logits.cuda(), seen.cuda()


@pytest.mark.parametrize("vocab", [152064, 4096, 4097, 100])
@pytest.mark.parametrize("penalty", [1.0, 1.3, 80.0])
def test_greedy_choice_equals_penalty_then_argmax(vocab: int, penalty: float) -> None:
    from llm.kernels.greedy import GreedyChoice

    choose = GreedyChoice(vocab, torch.device("cuda"))
    pen = torch.tensor([penalty], device="cuda")
    for case, logits, seen in _scenarios(vocab, torch.Generator().manual_seed(vocab)):
        want = int(apply_repetition_penalty(logits, seen, pen).argmax(-1))
        inputs = torch.tensor([3, 41], device="cuda")
        mask = seen.clone()
        choose(logits, mask, pen, inputs)
        assert inputs.tolist() == [want, 42], (case, penalty)
        expected = seen.clone()
        expected[want] = True
        assert torch.equal(mask, expected), case
        assert int(choose.counter) == 0  # ready for the next call


def test_greedy_choice_rejects_other_sizes_and_dtypes() -> None:
    from llm.kernels.greedy import GreedyChoice

    choose = GreedyChoice(1000, torch.device("cuda"))
    seen = torch.zeros(1000, dtype=torch.bool, device="cuda")
    pen = torch.ones(1, device="cuda")
    inputs = torch.zeros(2, dtype=torch.long, device="cuda")
    with pytest.raises(ValueError, match="1000 ids"):
        choose(torch.zeros(1, 999, device="cuda"), seen, pen, inputs)
    with pytest.raises(ValueError, match="fp32"):
        choose(torch.zeros(1, 1000, device="cuda").half(), seen, pen, inputs)
