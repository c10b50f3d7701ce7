"""LangChain adapters: ``QwenLLM`` (text in, text out) and ``ChatQwen`` (chat with tool calls).

This is the only module that imports ``langchain_core`` (install the ``[langchain]`` extra).
Both classes run over any backend with the ``llm.types.LLM`` protocol: the local engine,
``OpenAICompatibleLLM`` or a test double.

``ChatQwen.bind_tools`` works the way Qwen's OpenAI-style API server does: the tools become
Qwen's ReAct instruction (attached once, to the user message of the latest finished exchange,
else to the current question), an assistant tool call is written as ``Thought`` / ``Action`` /
``Action Input``, a ``ToolMessage`` as ``Observation``, and the model's next ``Action`` /
``Action Input`` comes back as ``tool_calls``. A plain assistant reply is written as
``Thought: I now know the final answer.`` + ``Final Answer: ...`` while tools are bound.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.llms import LLM as LangChainLLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from llm import tool_calls
from llm.chatml import DEFAULT_SYSTEM, encode_messages, render_messages
from llm.types import LLM, Completion, SamplingParams, Usage
from tools.base import ToolOutput

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen-14B-Chat-Int4"
_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed")


class _QwenSettings(BaseModel):
    """Backend choice and generation settings shared by ``QwenLLM`` and ``ChatQwen``.

    Give exactly one of ``backend`` (any ``llm.types.LLM``), ``checkpoint_dir`` (the local
    engine is loaded on first use) or ``base_url`` (an OpenAI-compatible server such as vLLM).
    Sampling settings left at ``None`` use the checkpoint's generation_config; a temperature
    below 0.01 means greedy decoding, as in Qwen's API server. ``timeout`` (read timeout,
    seconds), ``max_retries`` and ``api_key`` apply to the ``base_url`` backend.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    backend: Any = Field(default=None, exclude=True)
    checkpoint_dir: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = DEFAULT_MODEL
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    max_tokens: int = Field(default=512, ge=1)
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False

    _loaded: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_backend(self) -> _QwenSettings:
        given = [
            name
            for name, value in (
                ("backend", self.backend),
                ("checkpoint_dir", self.checkpoint_dir),
                ("base_url", self.base_url),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"{type(self).__name__} needs exactly one of backend=, checkpoint_dir= or "
                f"base_url=; got {given or 'none'}"
            )
        if self.backend is not None and not isinstance(self.backend, LLM):
            raise ValueError(
                f"backend must implement llm.types.LLM (complete, stream, count_tokens); "
                f"got {type(self.backend).__name__}"
            )
        return self

    def resolved_backend(self) -> LLM:
        """The backend, loading the local engine or connecting to ``base_url`` on first use."""
        if self.backend is not None:
            return self.backend
        if self._loaded is None:
            self._loaded = self._open_backend()
        return self._loaded

    def _open_backend(self) -> LLM:
        if self.checkpoint_dir is not None:
            from llm.engine import load_engine

            return load_engine(self.checkpoint_dir)
        from llm.openai_compat import OpenAICompatibleLLM

        key = self.api_key.get_secret_value() if self.api_key is not None else None
        options: dict[str, Any] = {}
        if self.timeout is not None:
            options["read_timeout"] = self.timeout
        if self.max_retries is not None:
            options["max_retries"] = self.max_retries
        return OpenAICompatibleLLM(self.base_url, self.model, api_key=key, **options)

    def sampling(self, overrides: dict[str, Any]) -> SamplingParams | None:
        """Sampling for one call: per-call keyword arguments win over the fields."""
        values = {k: overrides.get(k, getattr(self, k)) for k in _SAMPLING_KEYS}
        if all(v is None for v in values.values()):
            return None
        temperature = values["temperature"]
        if temperature is not None and temperature < 0.01:
            penalty = values["repetition_penalty"]
            return SamplingParams(
                do_sample=False, repetition_penalty=1.0 if penalty is None else penalty
            )
        return SamplingParams(**{k: v for k, v in values.items() if v is not None})

    def max_new_tokens(self, overrides: dict[str, Any]) -> int:
        return int(overrides.get("max_tokens", self.max_tokens))

    def stops(self, stop: list[str] | None) -> list[str]:
        return list(stop if stop is not None else (self.stop or []))


class QwenLLM(_QwenSettings, LangChainLLM):
    """A LangChain ``LLM`` over a Qwen backend.

    With ``chatml=True`` (the default) the prompt is sent as one user turn of a ChatML chat,
    as Qwen's LangChain example does with ``model.chat``; with ``chatml=False`` the prompt is
    passed to the backend unchanged (for callers who write ChatML themselves).
    """

    chatml: bool = True
    system: str = DEFAULT_SYSTEM

    @property
    def _llm_type(self) -> str:
        return "qwen"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "chatml": self.chatml}

    def _prompt(self, prompt: str) -> str | list[int]:
        if not self.chatml:
            return prompt
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": prompt}]
        tokenizer = _engine_tokenizer(self.resolved_backend())
        if tokenizer is not None:
            return encode_messages(tokenizer, messages)
        return render_messages(messages)

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        completion = self.resolved_backend().complete(
            self._prompt(prompt),
            stop=self.stops(stop),
            max_new_tokens=self.max_new_tokens(kwargs),
            sampling=self.sampling(kwargs),
        )
        return completion.text

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        deltas = self.resolved_backend().stream(
            self._prompt(prompt),
            stop=self.stops(stop),
            max_new_tokens=self.max_new_tokens(kwargs),
            sampling=self.sampling(kwargs),
        )
        for delta in deltas:
            if not delta:
                continue
            chunk = GenerationChunk(text=delta)
            if run_manager is not None:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk


@dataclass
class _Request:
    """One backend call prepared from LangChain messages."""

    prompt: str | list[int]  # token ids for the local engine (injection-safe), else ChatML text
    stop: list[str]
    prefill: str = ""  # assistant text already in the prompt that the reply starts with
    tools: list[dict[str, Any]] = field(default_factory=list)
    react: bool = False  # the reply is parsed as ReAct (tools bound)


class ChatQwen(_QwenSettings, BaseChatModel):
    """A LangChain chat model over a Qwen backend, with tool calling through Qwen's ReAct format.

    Messages are rendered as ChatML. ``bind_tools`` accepts anything LangChain can turn into an
    OpenAI tool schema. ``tool_choice``: ``None``/``"auto"`` lets the model decide; ``"none"``
    sends no tools; ``"any"``/``"required"``/``True`` starts the reply with ``Action:`` so the
    model must name a tool; a tool name (or ``{"function": {"name": ...}}``) starts it with
    ``Action: <name>`` and ``Action Input:``. Forcing applies when a new assistant turn starts,
    not when the model continues after an observation.
    """

    @property
    def _llm_type(self) -> str:
        return "qwen-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "qwen"
        params["ls_model_name"] = kwargs.get("model") or self.model
        if "ls_stop" not in params and self.stop:
            params["ls_stop"] = list(self.stop)
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, functions, pydantic models or OpenAI/JSON schemas)."""
        schemas = [tool_schema(t) for t in tools]
        names = [s["name"] for s in schemas]
        choice = tool_calls.normalize_tool_choice(tool_choice, names)
        return self.bind(tools=schemas, tool_choice=choice, **kwargs)

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict
    ) -> _Request:
        tools = list(kwargs.get("tools") or [])
        choice = kwargs.get("tool_choice")
        if choice == "none":
            tools = []
        turns = tool_calls.to_turns(_plain_messages(messages), tools)
        prefill = ""
        if tools and turns[-1]["role"] == "user":
            prefill = tool_calls.forced_prefill(choice)
            if prefill:
                turns.append({"role": "assistant", "content": prefill})
        continue_last = turns[-1]["role"] == "assistant"
        tokenizer = _engine_tokenizer(self.resolved_backend())
        if tokenizer is not None:
            prompt: str | list[int] = encode_messages(tokenizer, turns, continue_last=continue_last)
        else:  # text prompts: special-token text inside messages must stay plain text
            from agent.prompt import escape_special

            safe = [{**t, "content": escape_special(t["content"])} for t in turns]
            prompt = render_messages(safe, continue_last=continue_last)
        logger.debug("ChatQwen prompt (%d tools): %r", len(tools), prompt)
        stops = self.stops(stop)
        if tools:
            stops = tool_calls.react_stops(stops)
        if continue_last and not prefill:
            prefill = turns[-1]["content"].rsplit("\n", 1)[-1]
        return _Request(prompt, stops, prefill, tools, react=bool(tools))

    def _call_backend(self, request: _Request, kwargs: dict) -> Completion:
        return self.resolved_backend().complete(
            request.prompt,
            stop=request.stop,
            max_new_tokens=self.max_new_tokens(kwargs),
            sampling=self.sampling(kwargs),
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._prepare(messages, stop, kwargs)
        completion = self._call_backend(request, kwargs)
        metadata = {"finish_reason": completion.finish_reason, "model_name": self.model}
        if completion.stop is not None:
            metadata["stop"] = completion.stop
        message = AIMessage(
            content=completion.text,
            usage_metadata=_usage_metadata(completion.usage),
            response_metadata=metadata,
        )
        if request.react:
            reply = tool_calls.parse_reply(request.prefill + completion.text, request.tools)
            message.content = reply.content
            message.tool_calls = [
                tool_call(name=c.name, args=c.args, id=c.id) for c in reply.calls if c.valid
            ]
            message.invalid_tool_calls = [
                invalid_tool_call(name=c.name, args=c.raw_args, id=c.id, error=c.error)
                for c in reply.calls
                if not c.valid
            ]
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._prepare(messages, stop, kwargs)
        backend = self.resolved_backend()
        deltas = backend.stream(
            request.prompt,
            stop=request.stop,
            max_new_tokens=self.max_new_tokens(kwargs),
            sampling=self.sampling(kwargs),
        )
        answer = tool_calls.FinalAnswerStream(request.prefill) if request.react else None
        pieces: list[str] = []
        for delta in deltas:
            pieces.append(delta)
            text = answer.push(delta) if answer is not None else delta
            if text:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        generated = "".join(pieces)
        usage = Usage(
            prompt_tokens=_prompt_tokens(backend, request.prompt),
            completion_tokens=backend.count_tokens(generated) if generated else 0,
        )
        yield self._last_chunk(request, answer, generated, usage)

    def _last_chunk(
        self,
        request: _Request,
        answer: tool_calls.FinalAnswerStream | None,
        generated: str,
        usage: Usage,
    ) -> ChatGenerationChunk:
        content, calls = "", []
        if answer is not None:
            reply = tool_calls.parse_reply(request.prefill + generated, request.tools)
            content = answer.remainder(reply)
            calls = [
                tool_call_chunk(name=c.name, args=c.raw_args, id=c.id, index=i)
                for i, c in enumerate(reply.calls)
            ]
        message = AIMessageChunk(
            content=content,
            tool_call_chunks=calls,
            usage_metadata=_usage_metadata(usage),
            response_metadata={"model_name": self.model},
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)


def _engine_tokenizer(backend: LLM) -> Any:
    """The tokenizer of the local engine, which takes token ids; None for other backends."""
    engine_module = sys.modules.get("llm.engine")  # loaded whenever an Engine exists
    if engine_module is not None and isinstance(backend, engine_module.Engine):
        return backend.tokenizer
    return None


def _prompt_tokens(backend: LLM, prompt: str | list[int]) -> int:
    return len(prompt) if isinstance(prompt, list) else backend.count_tokens(prompt)


def _usage_metadata(usage: Usage) -> UsageMetadata:
    metadata = UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
    if usage.cached_tokens:
        metadata["input_token_details"] = InputTokenDetails(cache_read=usage.cached_tokens)
    return metadata


def _plain_messages(messages: Sequence[BaseMessage]) -> list[tool_calls.Message]:
    """LangChain messages as the plain records ``tool_calls`` works on."""
    plain = []
    for index, message in enumerate(messages):
        text = _text_of(message.content, index)
        if isinstance(message, SystemMessage):
            plain.append(tool_calls.Message("system", text))
        elif isinstance(message, HumanMessage):
            plain.append(tool_calls.Message("user", text))
        elif isinstance(message, AIMessage):
            calls = [
                tool_calls.Call(c["name"], c["args"], c.get("id") or "") for c in message.tool_calls
            ]
            plain.append(tool_calls.Message("assistant", text, calls=calls))
        elif isinstance(message, ToolMessage):
            plain.append(tool_calls.Message("tool", text, tool_call_id=message.tool_call_id))
        elif isinstance(message, ChatMessage) and message.role in ("system", "user", "assistant"):
            plain.append(tool_calls.Message(message.role, text))
        else:
            raise ValueError(
                f"messages[{index}]: ChatQwen cannot render a {type(message).__name__}"
                f" (role {getattr(message, 'role', message.type)!r})"
            )
    return plain


def _text_of(content: str | list[Any], index: int) -> str:
    """The text of a message's content; tool-call blocks are skipped, media is refused."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") not in ("tool_use", "tool_call", "tool_call_chunk"):
            raise ValueError(
                f"messages[{index}]: ChatQwen takes text only, got a {block.get('type')!r} block"
            )
    return "".join(parts)


def tool_schema(tool: Any) -> dict[str, Any]:
    """The OpenAI function schema (``name``, ``description``, ``parameters``) of ``tool``.

    ``tool`` is anything LangChain accepts as a tool: a ``BaseTool``, a typed function, a
    pydantic model, a TypedDict or an OpenAI/JSON schema.
    """
    return convert_to_openai_tool(tool)["function"]


def structured_tool(
    name: str,
    description: str,
    parameters: dict[str, Any],
    run: Callable[[dict[str, Any]], ToolOutput],
) -> BaseTool:
    """A LangChain tool that calls ``run`` with the call's arguments.

    An output with ``is_error`` becomes an error ``ToolMessage`` (status ``"error"``) carrying
    its text; image files travel as the message's artifact (a list of paths).
    """

    def call(**kwargs: Any) -> tuple[str, list[str]]:
        output = run(kwargs)
        if output.is_error:
            raise ToolException(output.text)
        return output.text, [str(path) for path in output.images]

    return StructuredTool.from_function(
        func=call,
        name=name,
        description=description,
        args_schema=parameters,
        response_format="content_and_artifact",
        handle_tool_error=True,
    )
