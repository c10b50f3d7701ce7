"""Chat messages with tool calls <-> Qwen's ReAct text, as Qwen's OpenAI-style API server maps them.

An assistant tool call becomes ``Thought: ...`` / ``Action: name`` / ``Action Input: {json}``,
its result ``Observation: ...``; the tool instruction is attached once, to the user message of
the latest finished exchange, else to the current question. Going back, the model's
``Action`` / ``Action Input`` becomes a tool call and its ``Final Answer`` the reply text.
The instruction comes from ``agent.prompt``, the parsing from ``agent.parser`` and the
arguments from ``tools.arguments``, so the chat adapters and the agent read one format. Nothing here imports LangChain.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.arguments import ArgumentError, parse_action_input

OBSERVATION_STOPS = ("Observation:", "Observation:\n")
FINAL_ANSWER = "Final Answer:"
_FINAL_THOUGHT = "Thought: I now know the final answer."


@dataclass
class Call:
    """A tool call made by the assistant earlier in the conversation."""

    name: str
    args: dict[str, Any]
    id: str = ""


@dataclass
class Message:
    """One chat message; ``role`` is system, user, assistant or tool."""

    role: str
    content: str
    calls: list[Call] = field(default_factory=list)
    tool_call_id: str | None = None


@dataclass
class ParsedCall:
    """A tool call read from the model's reply; ``args`` is None when ``raw_args`` was unusable."""

    name: str
    raw_args: str
    args: dict[str, Any] | None
    id: str
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.args is not None


@dataclass
class Reply:
    """The model's reply: ``content`` is the thought (with a call) or the final answer."""

    content: str
    calls: list[ParsedCall] = field(default_factory=list)
    final: bool = False


def normalize_tool_choice(
    choice: str | bool | dict[str, Any] | None, names: Sequence[str]
) -> str | None:
    """``None`` (model decides), ``"none"``, ``"any"`` or one tool name."""
    if choice is None or choice is False or choice == "auto":
        return None
    if choice == "none":
        return "none"
    if choice is True or choice in ("any", "required"):
        return names[0] if len(names) == 1 else "any"
    if isinstance(choice, dict):
        choice = (choice.get("function") or choice).get("name")
    if isinstance(choice, str) and choice in names:
        return choice
    raise ValueError(
        f"tool_choice {choice!r} is not 'auto', 'none', 'any', 'required' or a bound tool "
        f"name; the bound tools are {list(names)}"
    )


def forced_prefill(choice: str | None) -> str:
    """The start of the assistant turn that makes the model call a tool (``""``: no forcing)."""
    if choice is None or choice == "none":
        return ""
    if choice == "any":
        return "Action:"
    return f"Action: {choice}\nAction Input:"


def react_stops(stops: Sequence[str]) -> list[str]:
    """The caller's stop strings, their newline-stripped variants and the Observation stops."""
    out: list[str] = []
    for stop in [*stops, *(s.lstrip("\n") for s in stops), *OBSERVATION_STOPS]:
        if stop and stop not in out:
            out.append(stop)
    return out


def to_turns(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """ChatML turns (``role``/``content`` dicts) for ``llm.chatml.render_messages``.

    ``tools`` are OpenAI function schemas (``name``, ``description``, ``parameters``). When the
    last message is a tool result the last turn is an open assistant turn ending in
    ``"\\nThought:"``, for the model to continue.
    """
    builder = _TurnBuilder(final_answers=bool(tools))
    for index, message in enumerate(messages):
        builder.add(message, index)
    turns = builder.finish()
    if tools:
        _attach_instruction(turns, tool_instruction(tools))
    return turns


class _TurnBuilder:
    """Folds messages into ChatML turns; tool results join their assistant turn."""

    def __init__(self, final_answers: bool) -> None:
        self.final_answers = final_answers
        self.system: list[str] = []
        self.turns: list[dict[str, str]] = []
        self.pending: list[Call] = []  # calls of the open assistant turn not yet written

    def add(self, message: Message, index: int) -> None:
        if message.role == "system":
            self.system.append(message.content.strip())
        elif message.role == "user":
            self._close()
            self.turns.append({"role": "user", "content": _clean(message.content)})
        elif message.role == "assistant":
            self._add_assistant(message)
        elif message.role == "tool":
            self._add_observation(message, index)
        else:
            raise ValueError(f"messages[{index}]: unknown role {message.role!r}")

    def finish(self) -> list[dict[str, str]]:
        ends_with_observation = bool(self.turns) and self.turns[-1].get("open") == "observation"
        if ends_with_observation:
            self.turns[-1]["content"] += "\nThought:"
        else:
            self._close()
        head = [{"role": "system", "content": "\n\n".join(self.system)}] if self.system else []
        return head + [{"role": t["role"], "content": t["content"]} for t in self.turns]

    def _add_assistant(self, message: Message) -> None:
        text = _assistant_text(message, self.final_answers)
        last = self.turns[-1] if self.turns else None
        if last is not None and last["role"] == "assistant" and last.get("open") == "observation":
            last["content"] += ("\n" + text) if text else ""
            last["open"] = "assistant"
        else:
            self._close()
            self.turns.append({"role": "assistant", "content": text, "open": "assistant"})
        self.pending = list(message.calls)

    def _add_observation(self, message: Message, index: int) -> None:
        last = self.turns[-1] if self.turns else None
        if last is None or last["role"] != "assistant" or "open" not in last:
            raise ValueError(
                f"messages[{index}]: a tool result must follow the assistant message that "
                "made the tool call"
            )
        call = self._take_call(message.tool_call_id)
        if call is not None:
            last["content"] += _action_lines(call, lead=bool(last["content"]))
        last["content"] += f"\nObservation: {message.content.strip()}"
        last["open"] = "observation"

    def _take_call(self, call_id: str | None) -> Call | None:
        for i, call in enumerate(self.pending):
            if call.id == call_id:
                return self.pending.pop(i)
        return self.pending.pop(0) if self.pending else None

    def _close(self) -> None:
        if self.turns and "open" in self.turns[-1]:
            last = self.turns[-1]
            for call in self.pending:
                last["content"] += _action_lines(call, lead=bool(last["content"]))
            last["content"] = _clean(last["content"])
            del last["open"]
        self.pending = []


def _assistant_text(message: Message, final_answers: bool) -> str:
    text = _clean(message.content)
    if message.calls:
        if not text or text.startswith("Thought:"):
            return text
        return f"Thought: {text}"
    if final_answers and text and FINAL_ANSWER not in text:
        return f"{_FINAL_THOUGHT}\n{FINAL_ANSWER} {text}"
    return text


def _action_lines(call: Call, lead: bool) -> str:
    args = json.dumps(call.args, ensure_ascii=False)
    return ("\n" if lead else "") + f"Action: {call.name}\nAction Input: {args}"


def _clean(text: str) -> str:
    # Qwen strips every query and response this way; unstripped text differs from training data.
    return text.lstrip("\n").rstrip()


def _attach_instruction(turns: list[dict[str, str]], instruction: str) -> None:
    users = [i for i, t in enumerate(turns) if t["role"] == "user"]
    answered = [i for i in users if any(t["role"] == "assistant" for t in turns[i + 1 :])]
    if answered:
        target = answered[-1]
    elif users:
        target = users[-1]
    else:
        at = 1 if turns and turns[0]["role"] == "system" else 0
        turns.insert(at, {"role": "user", "content": instruction})
        return
    turns[target]["content"] = f"{instruction}\n\nQuestion: {turns[target]['content']}"


def tool_instruction(tools: Sequence[dict[str, Any]]) -> str:
    """Qwen's ReAct instruction listing ``tools`` (OpenAI function schemas)."""
    from agent.prompt import react_instruction

    return react_instruction([SchemaTool.from_schema(t) for t in tools])


@dataclass(frozen=True)
class SchemaTool:
    """A tool known only by its schema: enough to describe it in the prompt, not to run it."""

    name: str
    name_for_human: str
    description: str
    parameters: dict[str, Any]
    args_format: str = "json"

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> SchemaTool:
        parameters = schema.get("parameters") or {"type": "object", "properties": {}}
        name = schema["name"]
        return cls(name, name, schema.get("description", ""), parameters)

    def invoke(self, action_input: str) -> Any:
        raise NotImplementedError(f"tool {self.name!r} runs outside the model adapter")


def parse_reply(text: str, tools: Sequence[dict[str, Any]]) -> Reply:
    """Read one ReAct completion (``Thought: ...`` onwards) as a reply with optional tool call."""
    from agent.parser import Action, FinalAnswer, parse_react

    step = parse_react(text)
    if isinstance(step, FinalAnswer):
        return Reply(step.answer.strip(), final=True)
    if isinstance(step, Action):
        call = _parsed_call(step.tool, step.tool_input, tools)
        return Reply(_strip_thought(step.thought), [call])
    return Reply(_strip_thought(step.log or text))


def _strip_thought(text: str) -> str:
    text = text.strip()
    return text[len("Thought:") :].strip() if text.startswith("Thought:") else text


def _parsed_call(name: str, raw: str, tools: Sequence[dict[str, Any]]) -> ParsedCall:
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    raw = raw.strip()
    schema = _schema_of(name, tools) or {}
    try:
        args = parse_action_input(raw, schema.get("parameters") or {})
    except ArgumentError as exc:
        return ParsedCall(name, raw, None, call_id, str(exc))
    return ParsedCall(name, json.dumps(args, ensure_ascii=False), args, call_id)


def _schema_of(name: str, tools: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return next((t for t in tools if t.get("name") == name), None)


class FinalAnswerStream:
    """Passes on only the Final Answer of a ReAct reply while it streams."""

    def __init__(self, prefix: str = "") -> None:
        self.text = prefix
        self.sent = ""

    def push(self, delta: str) -> str:
        """Add generated text; returns the newly visible part of the final answer."""
        self.text += delta
        start = self.text.find(FINAL_ANSWER)
        if start < 0 or "Action:" in self.text[:start]:
            return ""
        answer = self.text[start + len(FINAL_ANSWER) :].lstrip()
        new = answer[len(self.sent) :]
        self.sent = answer
        return new

    def remainder(self, reply: Reply) -> str:
        """What is left to send once the whole reply is parsed."""
        if not self.sent:
            return reply.content
        return reply.content[len(self.sent) :] if reply.content.startswith(self.sent) else ""
