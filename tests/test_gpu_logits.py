"""The decode step's output-layer GEMV (``llm.kernels.logits``) against torch's fp16 linear."""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")]


@pytest.mark.parametrize("vocab, hidden", [(152064, 5120), (1001, 5120), (37, 64), (500, 256)])
def test_decode_logits_equal_the_fp16_linear(vocab: int, hidden: int) -> None:
    from llm.kernels.logits import decode_logits

    gen = torch.Generator(device="cuda").manual_seed(vocab)
    weight = (torch.randn(vocab, hidden, device="cuda", generator=gen) * 0.02).half()
    h = torch.randn(hidden, device="cuda", generator=gen).half()
    want = torch.nn.functional.linear(h.view(1, -1), weight).float()
    got = decode_logits(h, weight)
    assert got.shape == (1, vocab) and got.dtype == torch.float32
    assert torch.equal(got, got.half().float())  # rounded through fp16, as the layer's output
    # fp32 sums in another order: at most an fp16 rounding step apart
    assert torch.allclose(got, want, rtol=2e-3, atol=2e-3)
    assert (
        int(got.argmax()) == int(want.argmax()) or float(want.max() - want[0, got.argmax()]) < 2e-3
    )


def test_decode_logits_reject_what_they_cannot_run() -> None:
    from llm.kernels.logits import decode_logits, logits_supported

    weight = torch.zeros(10, 768, device="cuda").half()  # 768 is no multiple of the chunk
    assert not logits_supported(weight)
    with pytest.raises(ValueError, match="multiple of"):
        decode_logits(torch.zeros(768, device="cuda").half(), weight)
    assert not logits_supported(torch.zeros(10, 1024, device="cuda"))  # fp32
    assert not logits_supported(torch.zeros(10, 1024).half())  # CPU
