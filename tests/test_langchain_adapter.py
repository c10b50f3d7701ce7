"""QwenLLM and ChatQwen over a scripted backend: prompts, streaming, tool calls, chains, agent loops."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
)
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from pydantic import BaseModel, Field, ValidationError  # noqa: E402

from llm.langchain import ChatQwen, QwenLLM  # noqa: E402
from llm.types import Completion, SamplingParams, Usage  # noqa: E402

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SYSTEM = f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n"


class Scripted:
    """Replays queued completions and records every call (prompt, stop, settings)."""

    def __init__(self, outputs: Sequence[str], usage: Usage | None = None) -> None:
        self.outputs = list(outputs)
        self.usage = usage
        self.calls: list[dict[str, Any]] = []

    def _next(self, prompt: str, stop: Sequence[str], max_new_tokens: int, sampling: Any) -> str:
        self.calls.append(
            {
                "prompt": prompt,
                "stop": list(stop),
                "max_new_tokens": max_new_tokens,
                "sampling": sampling,
            }
        )
        text = self.outputs.pop(0)
        for s in stop:  # like a real backend: the text ends before the first stop string
            if s in text:
                text = text[: text.index(s)]
        return text

    def complete(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion:
        text = self._next(prompt, stop, max_new_tokens, sampling)
        usage = self.usage or Usage(self.count_tokens(prompt), self.count_tokens(text))
        return Completion(text=text, usage=usage)

    def stream(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        text = self._next(prompt, stop, max_new_tokens, sampling)
        for i in range(0, len(text), 4):
            yield text[i : i + 4]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


class Person(BaseModel):
    """A person."""

    name: str = Field(description="The name")
    age: int = Field(description="The age in years")


# construction and settings


def test_exactly_one_backend_is_required() -> None:
    with pytest.raises(ValidationError, match="exactly one of backend"):
        ChatQwen()
    with pytest.raises(ValidationError, match=r"\['backend', 'checkpoint_dir'\]"):
        ChatQwen(backend=Scripted([]), checkpoint_dir="/models/qwen")


def test_backend_must_implement_the_llm_protocol() -> None:
    with pytest.raises(ValidationError, match="must implement llm.types.LLM"):
        ChatQwen(backend=object())


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, None),
        ({"temperature": 0}, SamplingParams(do_sample=False, repetition_penalty=1.0)),
        (
            {"temperature": 0.005, "repetition_penalty": 1.2},
            SamplingParams(do_sample=False, repetition_penalty=1.2),
        ),
        ({"temperature": 0.7}, SamplingParams(temperature=0.7)),
        ({"top_p": 0.5, "seed": 3}, SamplingParams(top_p=0.5, seed=3)),
    ],
)
def test_sampling_settings(settings: dict[str, Any], expected: SamplingParams | None) -> None:
    backend = Scripted(["ok"])
    ChatQwen(backend=backend, **settings).invoke("hi")
    assert backend.calls[0]["sampling"] == expected


def test_per_call_settings_override_the_fields() -> None:
    backend = Scripted(["ok"])
    model = ChatQwen(backend=backend, temperature=0.9, max_tokens=100)
    model.invoke("hi", temperature=0, max_tokens=7)
    assert backend.calls[0]["sampling"].do_sample is False
    assert backend.calls[0]["max_new_tokens"] == 7


# plain chat


def test_chat_prompt_is_chatml_of_the_messages() -> None:
    backend = Scripted(["Paris."])
    model = ChatQwen(backend=backend)
    reply = model.invoke(
        [
            HumanMessage("\nCapital of France?  "),
            AIMessage("Paris."),
            HumanMessage("And of Italy?"),
        ]
    )
    assert reply.content == "Paris."
    assert backend.calls[0]["prompt"] == (
        SYSTEM
        + f"{IM_START}user\nCapital of France?{IM_END}\n"
        + f"{IM_START}assistant\nParis.{IM_END}\n"
        + f"{IM_START}user\nAnd of Italy?{IM_END}\n"
        + f"{IM_START}assistant\n"
    )


def test_system_message_replaces_the_default() -> None:
    backend = Scripted(["ok"])
    ChatQwen(backend=backend).invoke([SystemMessage("Be brief."), HumanMessage("hi")])
    assert backend.calls[0]["prompt"].startswith(f"{IM_START}system\nBe brief.{IM_END}\n")
    assert "helpful assistant" not in backend.calls[0]["prompt"]


def test_last_assistant_message_is_continued() -> None:
    backend = Scripted([" world"])
    ChatQwen(backend=backend).invoke([HumanMessage("say hello world"), AIMessage("hello")])
    assert backend.calls[0]["prompt"].endswith(f"{IM_START}assistant\nhello")


def test_media_content_is_refused_with_a_clear_error() -> None:
    image = {"type": "image", "url": "https://example.com/cat.png"}
    with pytest.raises(ValueError, match=r"messages\[0\]: ChatQwen takes text only"):
        ChatQwen(backend=Scripted(["x"])).invoke([HumanMessage([image])])


def test_stop_sequences_from_field_and_call() -> None:
    backend = Scripted(["one two", "three"])
    ChatQwen(backend=backend, stop=["END"]).invoke("hi")
    ChatQwen(backend=backend, stop=["END"]).invoke("hi", stop=["two"])
    assert backend.calls[0]["stop"] == ["END"]
    assert backend.calls[1]["stop"] == ["two"]


def test_usage_metadata_and_response_metadata() -> None:
    backend = Scripted(["ok"], usage=Usage(prompt_tokens=20, completion_tokens=3, cached_tokens=12))
    reply = ChatQwen(backend=backend, model="qwen-test").invoke("hi")
    assert reply.usage_metadata == {
        "input_tokens": 20,
        "output_tokens": 3,
        "total_tokens": 23,
        "input_token_details": {"cache_read": 12},
    }
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.response_metadata["model_name"] == "qwen-test"


def test_streaming_yields_deltas_then_a_last_chunk_with_usage() -> None:
    class Tokens(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tokens: list[str] = []

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.tokens.append(token)

    backend = Scripted(["The answer is forty-two."])
    handler = Tokens()
    chunks = list(ChatQwen(backend=backend).stream("q", config={"callbacks": [handler]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) > 3
    assert "".join(c.content for c in chunks) == "The answer is forty-two."
    assert "".join(handler.tokens) == "The answer is forty-two."
    last = chunks[-1]
    assert last.chunk_position == "last"
    prompt_tokens = backend.count_tokens(backend.calls[0]["prompt"])
    assert last.usage_metadata == {
        "input_tokens": prompt_tokens,
        "output_tokens": 4,
        "total_tokens": prompt_tokens + 4,
    }


async def test_async_invoke_and_stream() -> None:
    backend = Scripted(["async reply", "async stream"])
    model = ChatQwen(backend=backend)
    assert (await model.ainvoke("hi")).content == "async reply"
    parts = [c.content async for c in model.astream("hi")]
    assert "".join(parts) == "async stream"


# QwenLLM


def test_qwen_llm_sends_the_prompt_as_a_chatml_user_turn() -> None:
    backend = Scripted(["4"])
    llm = QwenLLM(backend=backend, system="Answer with a number.")
    assert llm.invoke("2+2?", stop=["\n"]) == "4"
    assert backend.calls[0]["prompt"] == (
        f"{IM_START}system\nAnswer with a number.{IM_END}\n"
        f"{IM_START}user\n2+2?{IM_END}\n{IM_START}assistant\n"
    )
    assert backend.calls[0]["stop"] == ["\n"]


def test_qwen_llm_raw_mode_and_streaming() -> None:
    backend = Scripted(["continued text here"])
    llm = QwenLLM(backend=backend, chatml=False, max_tokens=9)
    assert "".join(llm.stream("Once upon a time")) == "continued text here"
    assert backend.calls[0]["prompt"] == "Once upon a time"
    assert backend.calls[0]["max_new_tokens"] == 9


def test_qwen_llm_in_a_prompt_template_chain() -> None:
    backend = Scripted(["Bonjour"])
    chain = PromptTemplate.from_template("Translate to French: {text}") | QwenLLM(backend=backend)
    assert chain.invoke({"text": "Hello"}) == "Bonjour"
    assert "user\nTranslate to French: Hello<|im_end|>" in backend.calls[0]["prompt"]


def test_chat_model_in_a_chain() -> None:
    backend = Scripted(["  Bonjour !  "])
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You translate {lang}."), ("human", "{text}")]
    )
    chain = prompt | ChatQwen(backend=backend) | StrOutputParser()
    assert chain.invoke({"lang": "to French", "text": "Hello!"}) == "  Bonjour !  "
    assert backend.calls[0]["prompt"] == (
        f"{IM_START}system\nYou translate to French.{IM_END}\n"
        f"{IM_START}user\nHello!{IM_END}\n{IM_START}assistant\n"
    )


def test_chat_model_chain_batch() -> None:
    backend = Scripted(["A", "B"])
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ChatQwen(backend=backend)
    replies = chain.batch([{"q": "first"}, {"q": "second"}], config={"max_concurrency": 1})
    assert [r.content for r in replies] == ["A", "B"]
    assert ["first" in c["prompt"] for c in backend.calls] == [True, False]
