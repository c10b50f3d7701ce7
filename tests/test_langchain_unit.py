"""LangChain's standard unit tests for ChatQwen, with tool calling enabled."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from llm.langchain import ChatQwen  # noqa: E402
from llm.types import Completion, SamplingParams  # noqa: E402


class _SilentLLM:
    """A backend that is never asked to generate in these construction-only tests."""

    def complete(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion:
        raise AssertionError("the standard unit tests do not generate")

    def stream(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        raise AssertionError("the standard unit tests do not generate")

    def count_tokens(self, text: str) -> int:
        return len(text)


class TestChatQwenStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatQwen]:
        return ChatQwen

    @property
    def chat_model_params(self) -> dict:
        return {"backend": _SilentLLM(), "model": "Qwen-14B-Chat-Int4"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True


def test_tool_calling_is_really_enabled() -> None:
    """The suite above runs its tool tests only if bind_tools is ChatQwen's own."""
    suite = TestChatQwenStandard()
    assert suite.has_tool_calling and suite.has_tool_choice
    from langchain_core.language_models import BaseChatModel

    assert ChatQwen.bind_tools is not BaseChatModel.bind_tools
