"""What ChatQwen supports, as LangChain's standard test suites ask it."""

from __future__ import annotations

from llm.langchain import ChatQwen


class ChatQwenSuiteSettings:
    """Mixin for ``ChatModelUnitTests`` / ``ChatModelIntegrationTests``: ChatQwen's features."""

    @property
    def chat_model_class(self) -> type[ChatQwen]:
        return ChatQwen

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
