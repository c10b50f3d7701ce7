"""ScriptedLLM behaves like an engine where the agent can tell."""

from __future__ import annotations

import pytest

from llm.scripted import ScriptedLLM, ScriptExhaustedError
from llm.tokenizer import QwenTokenizer
from llm.types import LLM


@pytest.fixture(scope="module")
def tokenizer():
    return QwenTokenizer.default()


def test_is_an_llm(tokenizer):
    assert isinstance(ScriptedLLM(tokenizer=tokenizer), LLM)


def test_stop_strings_and_chatml_markers(tokenizer):
    llm = ScriptedLLM(
        ["Action: a\nAction Input: x\nObservation: fake", "answer<|im_end|>junk", "plain"],
        tokenizer=tokenizer,
    )
    first = llm.complete("p", stop=["Observation:", "Observation:\n"])
    assert first.text == "Action: a\nAction Input: x\n" and first.stop == "Observation:"
    second = llm.complete("p")
    assert second.text == "answer" and second.stop == "<|im_end|>"
    third = llm.complete("p", stop=["zzz"])
    assert third.text == "plain" and third.stop is None and third.finish_reason == "stop"
    assert third.token_ids == tokenizer.encode("plain")


def test_max_new_tokens_truncates(tokenizer):
    llm = ScriptedLLM(["one two three four five six"], tokenizer=tokenizer)
    out = llm.complete("p", max_new_tokens=3)
    assert out.finish_reason == "length" and len(out.token_ids) == 3
    assert out.text == tokenizer.decode(tokenizer.encode("one two three four five six")[:3])


def test_usage_counts_a_reusable_prefix(tokenizer):
    llm = ScriptedLLM([" world", "!"], tokenizer=tokenizer)
    a = llm.complete("<|im_start|>user\nhello")
    assert a.usage.cached_tokens == 0
    assert a.usage.prompt_tokens == len(tokenizer.encode("<|im_start|>user\nhello"))
    b = llm.complete("<|im_start|>user\nhello world and more")
    assert b.usage.cached_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert llm.prompts == ["<|im_start|>user\nhello", "<|im_start|>user\nhello world and more"]


def test_stream_and_exhaustion(tokenizer):
    llm = ScriptedLLM(["你好，世界 Observation: x"], tokenizer=tokenizer)
    assert "".join(llm.stream("p", stop=["Observation:"])) == "你好，世界 "
    with pytest.raises(ScriptExhaustedError, match="call 2"):
        llm.complete("p")
    with pytest.raises(TypeError):
        llm.enqueue(3)  # type: ignore[arg-type]
