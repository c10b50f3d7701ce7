"""The CUDA fast path (int4 kernels, fused decode step, CUDA graph) against the CPU reference."""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CUDA and Triton")]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


# "wide": heads of 128 and group 128, shapes the paired GEMV kernel takes (the engine's path at
# the real model's shapes), where "tiny" runs the masked kernel
WIDE = dict(
    hidden_size=256, num_attention_heads=2, kv_channels=128, intermediate_size=1024, group_size=128
)


@pytest.fixture(scope="module", params=["tiny", "wide"])
def engines(request, tiny_model_dir, tmp_path_factory):
    from llm.engine import load_engine
    from llm.testing import make_tiny_checkpoint

    path = tiny_model_dir
    if request.param == "wide":
        path = make_tiny_checkpoint(
            tmp_path_factory.mktemp("wide-qwen"), num_hidden_layers=2, **WIDE
        )
    cpu = load_engine(path, device="cpu", progress=False)
    gpu = load_engine(path, device="cuda", progress=False, max_seq_len=4096)
    return cpu, gpu


def test_every_int4_layer_is_swapped(engines) -> None:
    from llm.cuda_graph import CudaGraphDecoder
    from llm.kernels import Int4Linear
    from llm.quant import GPTQLinear

    _, gpu = engines
    kinds = [type(m) for m in gpu.model.modules()]
    assert Int4Linear in kinds and GPTQLinear not in kinds
    assert isinstance(gpu.generator.decode_step, CudaGraphDecoder)


def test_full_forward_logits_match_cpu(engines) -> None:
    cpu, gpu = engines
    ids = cpu.tokenizer.encode("Thought: I should use the code interpreter.\nAction:")
    assert rel(gpu.logits(ids), cpu.logits(ids)) < 1e-2


@pytest.mark.parametrize("prompt_len", [5, 40, 300])
def test_graphed_decode_matches_cpu_reference(engines, prompt_len: int) -> None:
    cpu, gpu = engines
    g = torch.Generator().manual_seed(prompt_len)
    ids = torch.randint(0, 150000, (prompt_len + 6,), generator=g).tolist()
    results = []
    for eng in (cpu, gpu):
        eng.generator.reset()
        steps = [eng.generator.prefill(ids[:prompt_len])]
        steps += [eng.generator.decode(t) for t in ids[prompt_len:]]
        results.append(torch.stack([s.float().cpu() for s in steps]))
    ref, fast = results
    for i in range(ref.shape[0]):
        assert rel(fast[i], ref[i]) < 1e-2, i
    assert (fast.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.8


def test_eager_fast_step_equals_model_step(engines) -> None:
    from llm.cuda_graph import fast_decode_step
    from llm.generate import decode_one_token

    _, gpu = engines
    gen = gpu.generator
    gen.reset()
    ids = list(range(1000, 1050))
    gen.prefill(ids)
    cache, rope = gen.cache, gen.rope
    tok = torch.tensor([[777]], device="cuda")
    pos = torch.tensor([len(ids)], device="cuda")
    with torch.inference_mode():
        fast = fast_decode_step(gpu.model, tok, pos, rope, cache)
        again = fast_decode_step(gpu.model, tok, pos, rope, cache)
        ref = decode_one_token(gpu.model, tok, pos, rope, cache, len(ids) + 1)
    assert rel(fast, ref) < 1e-2
    # the projections' fp32 accumulators were cleared by their consumers: a second step with
    # the same inputs adds nothing left over from the first
    assert rel(again, fast) < 1e-4
    sums = [
        m._accumulator for m in gpu.model.modules() if getattr(m, "_accumulator", None) is not None
    ]
    assert len(sums) == 3 * len(gpu.model.transformer.h)  # c_attn, attn.c_proj, mlp.c_proj
    assert not any(bool(s.any()) for s in sums)


def test_a_failed_step_leaves_no_partial_sums(engines, monkeypatch) -> None:
    import llm.kernels.decode_ops as decode_ops
    from llm.cuda_graph import fast_decode_step

    _, gpu = engines
    gen = gpu.generator
    gen.reset()
    gen.prefill(list(range(2000, 2010)))

    def broken(*args, **kwargs):
        raise RuntimeError("attention failed")

    monkeypatch.setattr(decode_ops, "decode_attention", broken)
    tok, pos = torch.tensor([[5]], device="cuda"), torch.tensor([10], device="cuda")
    with pytest.raises(RuntimeError, match="attention failed"), torch.inference_mode():
        fast_decode_step(gpu.model, tok, pos, gen.rope, gen.cache)  # c_attn had accumulated
    sums = [
        m._accumulator for m in gpu.model.modules() if getattr(m, "_accumulator", None) is not None
    ]
    assert sums and not any(bool(s.any()) for s in sums)


def test_engine_generates_after_acceleration(engines) -> None:
    _, gpu = engines
    out = gpu.complete("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", max_new_tokens=8)
    assert len(out.token_ids) >= 1


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_on_the_device_equals_the_host_choice(engines, penalty: float) -> None:
    from llm.sampling import sample_token
    from llm.types import SamplingParams

    _, gpu = engines
    gen = gpu.generator
    params = SamplingParams(do_sample=False, repetition_penalty=penalty)
    ids = list(range(2000, 2040))
    mask = torch.zeros(gpu.model.config.vocab_size, dtype=torch.bool, device="cuda")
    mask[ids] = True
    gen.reset()
    first = sample_token(gen.prefill(ids), mask, params)
    ahead = list(gen.greedy_continue(first, 24, mask.clone(), penalty))
    assert gen.cached_ids == ids + [first, *ahead[:-1]]
    gen.reset()
    gen.prefill(ids)
    seen, token, host = mask.clone(), first, []
    seen[first] = True
    for _ in range(24):
        token = sample_token(gen.decode(token), seen, params)
        seen[token] = True
        host.append(token)
    assert ahead == host


@pytest.mark.parametrize("edges", ["default", "some"])
def test_overlapped_launches_change_no_result(engines, monkeypatch, edges: str) -> None:
    """Kernels started before their predecessors end (programmatic dependent launch) wait for
    what they read: the step's logits and the greedy ids are those of plain launches."""
    import llm.cuda_graph as cuda_graph
    from llm.cuda_graph import CudaGraphDecoder, DecodeOverlap, fast_decode_step

    _, gpu = engines
    gen = gpu.generator
    ids = list(range(3000, 3100))
    tok, pos = torch.tensor([[777]], device="cuda"), torch.tensor([len(ids)], device="cuda")
    plans = {"plain": cuda_graph.NO_OVERLAP, "default": DecodeOverlap()}
    # some boundaries overlapped, the others plain (c_attn -> attention, gated -> mlp.c_proj)
    plans["some"] = DecodeOverlap(True, False, True, False, True)
    logits, greedy = {}, {}
    for name in ("plain", edges):
        monkeypatch.setattr(cuda_graph, "DECODE_OVERLAP", plans[name])
        gen.reset()
        gen.prefill(ids)
        with torch.inference_mode():
            logits[name] = fast_decode_step(gpu.model, tok, pos, gen.rope, gen.cache)
        gen.decode_step = CudaGraphDecoder()
        gen.reset()
        first = int(gen.prefill(ids).argmax())
        greedy[name] = list(gen.greedy_continue(first, 24))
    gen.decode_step = CudaGraphDecoder()
    assert rel(logits[edges], logits["plain"]) < 1e-3  # split-K sums arrive in any order
    assert greedy[edges] == greedy["plain"]
