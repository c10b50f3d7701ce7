"""The agent on the local engine with a tiny random checkpoint.

The random model writes nonsense; what is checked is the wiring: the default model location,
the stop words reaching the engine, the loop ending within its limits, and the engine reusing
its KV cache for the prompt prefix that each ReAct step extends.
"""

from __future__ import annotations

from typing import Any

from agent import Agent, ErrorEvent, FinalAnswerEvent, ModelOutput
from agent.defaults import MODEL_ENV
from llm.types import Completion
from tools import tool


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


class Recording:
    """Passes calls to an engine and records the prompt and stop words of each."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls: list[tuple[str, tuple[str, ...], Completion]] = []

    def complete(self, prompt: str, **kwargs: Any) -> Completion:
        out = self.engine.complete(prompt, **kwargs)
        self.calls.append((prompt, tuple(kwargs.get("stop", ())), out))
        return out

    def stream(self, prompt, **kwargs):
        return self.engine.stream(prompt, **kwargs)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)


def test_default_model_location_loads_the_local_engine(tiny_model_dir, monkeypatch):
    monkeypatch.setenv(MODEL_ENV, str(tiny_model_dir))
    agent = Agent(tools=[search], max_steps=2, max_new_tokens=8)
    result = agent.run("What is 2+2?")
    assert type(agent.llm).__name__ == "Engine"
    assert result.finish_reason in ("answer", "max_steps")
    assert 1 <= len(result.steps) <= 2
    assert result.usage.prompt_tokens > 0 and result.timings["llm_s"] > 0


def test_loop_runs_on_the_engine_with_stop_words_and_cache_reuse(tiny_engine):
    llm = Recording(tiny_engine)
    agent = Agent(llm, [search], max_steps=3, max_new_tokens=12)
    events = list(agent.stream("搜索一下谁是周杰伦"))

    outputs = [e for e in events if isinstance(e, ModelOutput)]
    assert isinstance(events[-1], FinalAnswerEvent)
    assert 1 <= len(outputs) <= 3 and len(llm.calls) == len(outputs)
    for prompt, stop, completion in llm.calls:
        assert stop == ("Observation:", "Observation:\n")
        assert "Observation:" not in completion.text  # the engine cut at the stop word
        assert completion.usage.completion_tokens <= 12
        assert prompt.endswith(("<|im_start|>assistant\n", "\nThought:"))
    assert len(llm.calls) >= 2  # a random model does not write a well-formed final answer
    # Each later prompt extends the previous one, so the engine serves it from its cache.
    for (prev_prompt, _, prev_out), (prompt, _, out) in zip(llm.calls, llm.calls[1:]):
        assert prompt.startswith(prev_prompt)
        assert out.usage.cached_tokens >= prev_out.usage.prompt_tokens - 1
        assert out.usage.cached_tokens < out.usage.prompt_tokens
    usage = [c.usage for _, _, c in llm.calls]
    print("prompt/cached tokens per step:", [(u.prompt_tokens, u.cached_tokens) for u in usage])


def test_format_errors_from_a_random_model_end_cleanly(tiny_engine):
    agent = Agent(tiny_engine, [search], max_steps=2, max_new_tokens=6, family="chat")
    result = agent.run("hello")
    assert result.finish_reason in ("answer", "max_steps")
    if result.finish_reason == "max_steps":
        assert "max_steps" in result.answer
        assert any(isinstance(e, ErrorEvent) for e in result.events)
