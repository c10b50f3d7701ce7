"""LangChain's standard unit tests for ChatQwen, with tool calling enabled."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from llm.langchain import ChatQwen  # noqa: E402
from llm.scripted import ScriptedLLM  # noqa: E402
from tests.langchain_standard import ChatQwenSuiteSettings  # noqa: E402


class TestChatQwenStandard(ChatQwenSuiteSettings, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict:
        # Nothing is queued: these construction-only tests never generate.
        return {"backend": ScriptedLLM(), "model": "Qwen-14B-Chat-Int4"}


def test_tool_calling_is_really_enabled() -> None:
    """The suite above runs its tool tests only if bind_tools is ChatQwen's own."""
    suite = TestChatQwenStandard()
    assert suite.has_tool_calling and suite.has_tool_choice
    from langchain_core.language_models import BaseChatModel

    assert ChatQwen.bind_tools is not BaseChatModel.bind_tools
