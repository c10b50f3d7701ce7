"""Qwen's ReAct prompt, in the two forms Qwen's own examples use.

``"completion"`` (the default; Qwen's ``react_demo.py`` / ``openai_api.py``): the instruction
says "APIs", the assistant turn is left open, and each step appends
``"\\nObservation: {obs}\\nThought:"`` to it, so a local engine only prefills the new tokens.
``"chat"`` (Qwen's ``react_prompt.md``): the instruction says "tools", and the whole
scratchpad is re-sent inside the user message (``prompt + "\\n" + output + "\\nObservation: "
+ obs``); the model answers in a fresh assistant turn.

Where the instruction sits (both forms, Qwen's rule): with no history it is prepended to the
current question; with history it is prepended to the *previous* turn's question and the
current question is sent plain. Queries and past responses are ``lstrip("\\n").rstrip()``-ed,
as Qwen's reference does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from llm.chatml import DEFAULT_SYSTEM, render_messages
from tools.base import ToolLike

PromptFamily = Literal["completion", "chat"]
FAMILIES: tuple[PromptFamily, ...] = ("completion", "chat")

# Qwen's templates, verbatim (reference: QwenLM/Qwen openai_api.py, react_demo.py,
# examples/react_prompt.md).
TOOL_DESC = (
    "{name_for_model}: Call this tool to interact with the {name_for_human} API. "
    "What is the {name_for_human} API useful for? {description_for_model} "
    "Parameters: {parameters}"
)
JSON_ARGS_HINT = " Format the arguments as a JSON object."
CODE_ARGS_HINT = (
    " Enclose the code within triple backticks (`) at the beginning and end of the code."
)

REACT_INSTRUCTION = """Answer the following questions as best you can. You have access to the following APIs:

{tools_text}

Use the following format:

Question: the input question you must answer
Thought: you should always think about what to do
Action: the action to take, should be one of [{tools_name_text}]
Action Input: the input to the action
Observation: the result of the action
... (this Thought/Action/Action Input/Observation can be repeated zero or more times)
Thought: I now know the final answer
Final Answer: the final answer to the original input question

Begin!"""

REACT_PROMPT_CHAT = """Answer the following questions as best you can. You have access to the following tools:

{tool_descs}

Use the following format:

Question: the input question you must answer
Thought: you should always think about what to do
Action: the action to take, should be one of [{tool_names}]
Action Input: the input to the action
Observation: the result of the action
... (this Thought/Action/Action Input/Observation can be repeated zero or more times)
Thought: I now know the final answer
Final Answer: the final answer to the original input question

Begin!"""

OBSERVATION_PREFIX = "\nObservation:"
# Text that a text prompt would turn into ChatML control tokens.
_SPECIAL = re.compile(r"<\|(im_start|im_end|endoftext|extra_\d+)\|>")
STOP_WORDS = ("Observation:", "Observation:\n")

History = Sequence[tuple[str, str]]
Scratchpad = Sequence[tuple[str, str]]  # (model text kept for the step, observation)


def check_family(family: str) -> PromptFamily:
    if family not in FAMILIES:
        raise ValueError(f"prompt family must be one of {FAMILIES}, got {family!r}")
    return family  # type: ignore[return-value]


def tool_description(tool: ToolLike) -> str:
    """One tool in Qwen's TOOL_DESC form, with the hint for its argument format."""
    text = TOOL_DESC.format(
        name_for_model=tool.name,
        name_for_human=tool.name_for_human,
        description_for_model=tool.description,
        parameters=json.dumps(tool.parameters, ensure_ascii=False),
    )
    return text + (CODE_ARGS_HINT if tool.args_format == "code" else JSON_ARGS_HINT)


def react_instruction(tools: Sequence[ToolLike], family: PromptFamily = "completion") -> str:
    """The instruction block listing ``tools`` (no ``Question:`` line)."""
    descriptions = "\n\n".join(tool_description(t) for t in tools)
    names = [t.name for t in tools]
    if check_family(family) == "completion":
        return REACT_INSTRUCTION.format(tools_text=descriptions, tools_name_text=", ".join(names))
    return REACT_PROMPT_CHAT.format(tool_descs=descriptions, tool_names=",".join(names))


def with_question(instruction: str, query: str) -> str:
    """The instruction followed by the question, as Qwen joins them."""
    return f"{instruction}\n\nQuestion: {query}"


def scratchpad_text(steps: Scratchpad, family: PromptFamily = "completion") -> str:
    """The steps so far, written the way the family appends them."""
    steps = [(escape_special(log), escape_special(obs)) for log, obs in steps]
    if check_family(family) == "completion":
        return "".join(f"{log}{OBSERVATION_PREFIX} {obs}\nThought:" for log, obs in steps)
    return "".join(f"\n{log}{OBSERVATION_PREFIX} {obs}" for log, obs in steps)


def transcript(steps: Scratchpad, final_log: str, family: PromptFamily = "completion") -> str:
    """The whole assistant text of a finished turn, as it is kept in the chat history."""
    if check_family(family) == "completion":
        return scratchpad_text(steps, family) + final_log
    parts = [f"{log}{OBSERVATION_PREFIX} {obs}" for log, obs in steps] + [final_log]
    return "\n".join(parts)


def build_prompt(
    query: str,
    *,
    instruction: str,
    history: History = (),
    steps: Scratchpad = (),
    family: PromptFamily = "completion",
    system: str = DEFAULT_SYSTEM,
) -> str:
    """The ChatML text to send for the next step of ``query``."""
    turns = [(q, r) for q, r in history] + [(query, "")]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for index, (user, response) in enumerate(turns):
        if instruction and (len(turns) == 1 or index == len(turns) - 2):
            user = with_question(instruction, user)
        messages.append({"role": "user", "content": _tidy(user)})
        if index < len(turns) - 1:
            messages.append({"role": "assistant", "content": _tidy(response)})
    if check_family(family) == "completion":
        messages.append({"role": "assistant", "content": scratchpad_text(steps, family)})
        return render_messages(messages, continue_last=True)
    messages[-1]["content"] += scratchpad_text(steps, family)
    return render_messages(messages)


def escape_special(text: str) -> str:
    """``text`` with special-token text (``<|im_end|>`` ...) made plain by a zero-width space.

    The prompt is sent as text and special-token text in it becomes control tokens; user
    input, tool output and past responses must not be able to end a turn or open a new one.
    """
    return _SPECIAL.sub(lambda m: f"<\u200b|{m.group(1)}|>", text)


def _tidy(text: str) -> str:
    return escape_special(text.lstrip("\n").rstrip())
