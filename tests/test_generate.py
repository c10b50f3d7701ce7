"""Cached decoding equals the full forward; prefix reuse is exact; stop strings on decoded text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm.engine import load_engine
from llm.generate import Generator, decode_one_token
from llm.sampling import sample_token
from llm.stopping import StopStrings
from llm.types import SamplingParams

GREEDY = SamplingParams.greedy()


@pytest.fixture()
def engine(tiny_model_dir: Path):
    return load_engine(tiny_model_dir, device="cpu", progress=False, max_seq_len=256)


@pytest.mark.parametrize("slice_kv", [True, False])
def test_incremental_decode_equals_full_forward(engine, slice_kv: bool) -> None:
    gen = Generator(
        engine.model, max_len=128, device=engine.device, dtype=engine.dtype, slice_kv=slice_kv
    )
    ids = list(range(500, 530))
    logits = gen.prefill(ids)
    for _ in range(8):
        full = engine.logits(ids)[-1]
        assert (logits - full).abs().max().item() <= 1e-4
        token = int(logits.argmax())
        ids.append(token)
        logits = gen.decode(token)


def test_prefix_reuse_equals_fresh_engine(engine, tiny_model_dir: Path) -> None:
    prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi"
    first = engine.complete(prompt, max_new_tokens=6, sampling=GREEDY)
    assert first.usage.cached_tokens == 0
    follow = prompt + first.text + "\nObservation: 42\nThought:"
    second = engine.complete(follow, max_new_tokens=6, sampling=GREEDY)
    n_prompt = engine.count_tokens(prompt)
    assert second.usage.cached_tokens >= n_prompt
    assert second.usage.prompt_tokens == engine.count_tokens(follow)
    fresh = load_engine(tiny_model_dir, device="cpu", progress=False, max_seq_len=256)
    again = fresh.complete(follow, max_new_tokens=6, sampling=GREEDY)
    assert again.usage.cached_tokens == 0
    assert again.token_ids == second.token_ids and again.text == second.text


def test_repeating_a_prompt_reuses_all_but_one_token(engine) -> None:
    ids = list(range(700, 720))
    a = engine.complete(ids, max_new_tokens=4, sampling=GREEDY)
    b = engine.complete(ids, max_new_tokens=4, sampling=GREEDY)
    assert b.usage.cached_tokens == 19 and a.token_ids == b.token_ids
    shorter = engine.complete(ids[:10], max_new_tokens=4, sampling=GREEDY)
    assert shorter.usage.cached_tokens == 9


def test_max_new_tokens_and_length_finish(engine) -> None:
    c = engine.complete(list(range(100, 110)), max_new_tokens=5, sampling=GREEDY)
    stops = {151643, 151644, 151645}
    if not stops & set(c.token_ids):
        assert c.finish_reason == "length" and len(c.token_ids) == 5
    assert c.usage.completion_tokens == len(c.token_ids) <= 5


def test_window_limits(engine) -> None:
    with pytest.raises(ValueError, match="context window holds 256"):
        engine.complete(list(range(1000, 1300)), max_new_tokens=1)
    c = engine.complete(list(range(1000, 1250)), max_new_tokens=50, sampling=GREEDY)
    # the cache fills up with 250 + 6 ids; the 7th id is sampled from the last logits
    assert len(c.token_ids) <= 7
    if c.finish_reason == "length":
        assert len(c.token_ids) == 7


def test_stop_string_after_merged_newline(engine, monkeypatch) -> None:
    """'\\nObservation:' is not a token sequence here: the newline merged into '"}\\n'."""
    tok = engine.tokenizer
    script = 'Thought: look it up\nAction: search\nAction Input: {"q": "x"}\nObservation: fake'
    ids = tok.encode(script)
    obs = tok.encode("Observation:")
    assert 198 not in ids[ids.index(obs[0]) - 1 : ids.index(obs[0])]  # no lone "\n" before it
    fed: list[int] = []

    def scripted(prompt_ids, **kwargs):
        for t in ids:
            fed.append(t)
            yield t

    monkeypatch.setattr(engine.generator, "generate", scripted)
    c = engine.complete("question", stop=["Observation:"], max_new_tokens=100)
    assert c.text == 'Thought: look it up\nAction: search\nAction Input: {"q": "x"}\n'
    assert c.finish_reason == "stop" and c.stop == "Observation:"
    assert fed[-1] == ids[ids.index(obs[0]) + len(obs) - 1]  # stopped at once, not after
    deltas = list(engine.stream("question", stop=["Observation:"], max_new_tokens=100))
    assert "".join(deltas) == c.text
    assert all("Obs" not in d for d in deltas)


def test_stop_string_on_real_generation(engine) -> None:
    full = engine.complete(list(range(300, 320)), max_new_tokens=12, sampling=GREEDY)
    assert len(full.text) > 6
    stop = full.text[3:6]
    cut = engine.complete(list(range(300, 320)), stop=[stop], max_new_tokens=12, sampling=GREEDY)
    assert cut.finish_reason == "stop" and cut.stop == stop
    assert cut.text == full.text[: full.text.index(stop)]


def test_special_tokens_always_stop(engine, monkeypatch) -> None:
    tok = engine.tokenizer
    ids = tok.encode("Final Answer: 4") + [tok.im_end_id, *tok.encode("more")]
    monkeypatch.setattr(engine.generator, "generate", lambda prompt_ids, **kw: (t for t in ids))
    c = engine.complete("q", max_new_tokens=50)
    assert c.text == "Final Answer: 4" and c.stop == "<|im_end|>" and c.finish_reason == "stop"
    assert c.token_ids[-1] == tok.im_end_id


def test_streaming_deltas_concatenate_to_the_completion(engine) -> None:
    ids = list(range(900, 915))
    deltas = list(engine.stream(ids, max_new_tokens=10, sampling=GREEDY))
    c = engine.complete(ids, max_new_tokens=10, sampling=GREEDY)
    assert "".join(deltas) == c.text


def test_stop_strings_holdback() -> None:
    s = StopStrings(["Observation:", "\nStop"])
    assert s.holdback("abc Obser") == 5
    assert s.holdback("abc\n") == 1
    assert s.holdback("abc") == 0
    assert s.search("x Observation: y").index == 2
    assert s.search("a\nStop Observation:").stop == "\nStop"
    with pytest.raises(ValueError):
        StopStrings([3])


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_max_new_tokens(engine, bad: int) -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be positive"):
        engine.complete("hi", max_new_tokens=bad)


def test_empty_prompt(engine) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.complete("")
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.logits([])


def test_out_of_vocabulary_ids(engine) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.complete([1, 2, 152064])


def test_cache_tensors_are_static(engine) -> None:
    engine.complete(list(range(10, 20)), max_new_tokens=3, sampling=GREEDY)
    cache = engine.generator.cache
    k_ptr, cos_ptr = cache.k.data_ptr(), engine.generator.rope.cos.data_ptr()
    engine.complete(list(range(10, 300 - 60)), max_new_tokens=3, sampling=GREEDY)
    assert engine.generator.cache.k.data_ptr() == k_ptr
    assert engine.generator.rope.cos.data_ptr() == cos_ptr
    assert cache.k.shape == (2, 1, 256, 4, 16)
    assert torch.isfinite(cache.k).all()


class ChoosingStep:
    """A decode step that also offers ``greedy`` (as the CUDA-graph step does), built here on
    the plain PyTorch step so the generator's use of it can be checked on the CPU."""

    def __call__(self, model, token, position, rope, cache, kv_len=None):
        return decode_one_token(model, token, position, rope, cache, kv_len)

    def greedy(self, model, rope, cache, token, position, steps, seen, repetition_penalty=1.0):
        params = SamplingParams(do_sample=False, repetition_penalty=repetition_penalty)
        seen = seen.clone()
        for j in range(steps):
            tok = torch.tensor([[token]])
            pos = torch.tensor([position + j])
            logits = decode_one_token(model, tok, pos, rope, cache, position + j + 1)[0]
            token = sample_token(logits, seen, params)
            seen[token] = True
            yield token


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_continue_equals_generate(engine, penalty: float) -> None:
    ids = list(range(900, 920))
    params = SamplingParams(do_sample=False, repetition_penalty=penalty)
    want = list(engine.generator.generate(ids, max_new_tokens=12, sampling=params))
    gen = Generator(engine.model, max_len=64, device=engine.device, dtype=engine.dtype)
    first = int(sample_token(gen.prefill(ids), _mask(ids), params))
    seen = _mask(ids)
    rest = list(gen.greedy_continue(first, 11, seen, penalty))
    assert [first, *rest] == want
    assert gen.cached_ids == ids + [first, *rest[:-1]]  # the last id is chosen, not fed


def test_greedy_continue_stops_at_a_full_window(engine) -> None:
    gen = Generator(engine.model, max_len=24, device=engine.device, dtype=engine.dtype)
    gen.prefill(list(range(900, 920)))
    assert len(list(gen.greedy_continue(5, 100))) == 4
    assert len(gen.cached_ids) == 24 and gen.window_full()


def test_generate_uses_a_step_that_chooses_ahead(engine) -> None:
    ids = list(range(900, 920))
    plain = list(engine.generator.generate(ids, max_new_tokens=10, sampling=GREEDY))
    gen = Generator(engine.model, max_len=64, device=engine.device, dtype=engine.dtype)
    gen.decode_step = ChoosingStep()
    assert list(gen.generate(ids, max_new_tokens=10, sampling=GREEDY)) == plain
    stop = plain[4]
    cut = list(gen.generate(ids, max_new_tokens=10, sampling=GREEDY, stop_ids=frozenset({stop})))
    assert cut == plain[: plain.index(stop) + 1]
    assert gen.cached_ids == ids + cut[:-1]


def _mask(ids: list[int]) -> torch.Tensor:
    seen = torch.zeros(152064, dtype=torch.bool)
    seen[ids] = True
    return seen


def test_a_failing_fused_step_surfaces_its_own_error(engine, monkeypatch) -> None:
    """The fused step's clean-up after a failure must not replace the error (on a machine
    without CUDA, asking whether a stream is capturing raises one of its own)."""
    import llm.cuda_graph as cuda_graph

    def broken(*args, **kwargs):
        raise ValueError("step failed")

    monkeypatch.setattr(cuda_graph, "_fused_step", broken)
    token, position = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="step failed"):
        cuda_graph.fast_decode_step(engine.model, token, position, None, None)


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_graph_choice_applies_the_sampling_penalty_and_feeds_itself_back(penalty: float) -> None:
    """The step the decode graph captures: the greedy choice (the sampler's repetition penalty
    over a device mask) becomes the next step's token, and the position advances."""
    from llm.cuda_graph import CudaGraphDecoder

    logits = torch.tensor([[2.0, 2.5, -1.0, 2.4]])
    seen = torch.tensor([False, True, False, False])
    decoder = CudaGraphDecoder(step=lambda *args: logits)
    decoder._inputs = torch.tensor([7, 41])
    decoder._seen = seen.clone()
    decoder._penalty = torch.tensor([penalty])
    decoder._step_and_choose(None, None, None)
    expected = sample_token(
        logits, seen, SamplingParams(do_sample=False, repetition_penalty=penalty)
    )
    assert decoder._inputs.tolist() == [expected, 42]
    assert expected == (1 if penalty == 1.0 else 3)
    assert decoder._seen[expected] and decoder._seen[1]
