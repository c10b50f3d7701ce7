"""The Engine's public API: load defaults, complete/stream/chat/chat_stream, logits, count_tokens."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from llm import Completion, load_engine
from llm.chatml import make_context
from llm.types import LLM, SamplingParams

GREEDY = SamplingParams.greedy()


def test_load_defaults(tiny_engine) -> None:
    assert tiny_engine.device == torch.device("cpu") and tiny_engine.dtype == torch.float32
    assert tiny_engine.config.num_hidden_layers == 2
    assert tiny_engine.generation_config.top_p == 0.8
    assert tiny_engine.tokenizer.im_end_id == 151645
    assert isinstance(tiny_engine, LLM)
    assert not any(p.requires_grad for p in tiny_engine.model.parameters())


def test_complete_returns_a_completion(tiny_engine) -> None:
    c = tiny_engine.complete("<|im_start|>user\nhi<|im_end|>\n", max_new_tokens=4, sampling=GREEDY)
    assert isinstance(c, Completion)
    assert c.finish_reason in ("stop", "length")
    assert c.usage.prompt_tokens == tiny_engine.count_tokens("<|im_start|>user\nhi<|im_end|>\n")
    assert c.usage.completion_tokens == len(c.token_ids) >= 1


def test_special_token_text_in_the_prompt_is_parsed(tiny_engine) -> None:
    assert tiny_engine.count_tokens("<|im_start|>") == 1
    assert tiny_engine.count_tokens("你好") == 1


def test_sampling_none_uses_generation_config(tiny_engine, monkeypatch) -> None:
    seen = {}

    def spy(prompt_ids, *, max_new_tokens, sampling, stop_ids):
        seen["sampling"] = sampling
        yield 151645

    monkeypatch.setattr(tiny_engine.generator, "generate", spy)
    tiny_engine.complete("x", max_new_tokens=3)
    assert seen["sampling"] == SamplingParams(top_p=0.8, top_k=0, repetition_penalty=1.1)


def test_chat_follows_qwen_semantics(tiny_engine, monkeypatch) -> None:
    tok = tiny_engine.tokenizer
    reply = tok.encode("\n Hello there! ") + [tok.im_end_id]
    prompts = []

    def scripted(prompt_ids, **kwargs):
        prompts.append(list(prompt_ids))
        yield from reply

    monkeypatch.setattr(tiny_engine.generator, "generate", scripted)
    response, history = tiny_engine.chat("你好")
    assert response == "Hello there!"
    assert history == [("你好", "Hello there!")]
    assert prompts[0] == make_context(tok, "你好")[1]
    response2, history2 = tiny_engine.chat("again", history=history, system="Be brief.")
    assert prompts[1] == make_context(tok, "again", history=history, system="Be brief.")[1]
    assert history2 == [*history, ("again", response2)] and history == [("你好", "Hello there!")]
    deltas = list(tiny_engine.chat_stream("你好"))
    assert "".join(deltas) == "Hello there! " and deltas[0] != ""


def test_real_chat_round_trip(tiny_engine) -> None:
    response, history = tiny_engine.chat("hi", sampling=GREEDY, max_new_tokens=5)
    assert isinstance(response, str) and history == [("hi", response)]
    streamed = "".join(tiny_engine.chat_stream("hi", sampling=GREEDY, max_new_tokens=5))
    assert streamed.strip() == response


def test_logits(tiny_engine) -> None:
    ids = [151644, 872, 198, 108386]
    out = tiny_engine.logits(ids)
    assert out.shape == (4, 152064) and out.dtype == torch.float32
    # no cache involved: the same call twice gives identical logits
    assert torch.equal(out, tiny_engine.logits(ids))
    # causal: a prefix's logits do not depend on what follows
    assert torch.allclose(tiny_engine.logits(ids[:2]), out[:2], atol=1e-5)


def test_stream_and_complete_agree(tiny_engine) -> None:
    deltas = list(tiny_engine.stream("abc", max_new_tokens=6, sampling=GREEDY))
    assert "".join(deltas) == tiny_engine.complete("abc", max_new_tokens=6, sampling=GREEDY).text


def test_accelerate_missing_kernels_logs_a_warning(monkeypatch, caplog) -> None:
    from llm import engine as engine_mod

    monkeypatch.setitem(sys.modules, "llm.kernels", None)  # import fails
    model = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="llm.engine"):
        assert engine_mod._accelerate(model) is model
    assert "CUDA kernels unavailable" in caplog.text


def test_load_engine_explicit_dtype_and_window(tiny_model_dir: Path) -> None:
    e = load_engine(
        tiny_model_dir, device="cpu", dtype=torch.bfloat16, progress=False, max_seq_len=64
    )
    assert e.model.transformer.wte.weight.dtype == torch.bfloat16
    assert e.model.transformer.h[0].attn.c_attn.scales.dtype == torch.float16
    c = e.complete([1, 2, 3], max_new_tokens=3, sampling=GREEDY)
    assert len(c.token_ids) >= 1
    assert e.generator.cache.k.dtype == torch.bfloat16 and e.generator.max_len == 64


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model directory not found"):
        load_engine(tmp_path / "absent", device="cpu")
