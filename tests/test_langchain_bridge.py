"""Tools across the LangChain boundary, both directions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import ToolMessage  # noqa: E402
from langchain_core.tools import BaseTool, tool  # noqa: E402

from tools.base import ToolLike, ToolOutput  # noqa: E402
from tools.langchain_bridge import from_langchain, to_langchain  # noqa: E402


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Repeat the text in capitals."""
    return text.upper()


@tool
def broken(x: int) -> int:
    """Always fails."""
    raise RuntimeError(f"disk full while handling {x}")


@tool
def lookup(key: str, default: str = "none") -> dict:
    """Look a key up."""
    return {"key": key, "value": "值", "default": default}


@dataclass
class RecordingTool:
    """A hand-written ToolLike that records the Action Inputs it receives."""

    name: str = "echo"
    name_for_human: str = "Echo"
    description: str = "Echoes its input."
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"message": {"type": "string"}, "times": {"type": "integer"}},
            "required": ["message"],
        }
    )
    args_format: str = "json"
    output: ToolOutput | None = None
    inputs: list[str] = field(default_factory=list)

    def invoke(self, action_input: str) -> ToolOutput:
        self.inputs.append(action_input)
        return self.output or ToolOutput(f"echo:{action_input}")


# LangChain tool -> our ToolLike


def test_from_langchain_describes_the_tool_for_the_prompt() -> None:
    wrapped = from_langchain(add)
    assert isinstance(wrapped, ToolLike)
    assert (wrapped.name, wrapped.name_for_human, wrapped.args_format) == ("add", "add", "json")
    assert wrapped.description == "Add two integers."
    assert wrapped.parameters["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert sorted(wrapped.parameters["required"]) == ["a", "b"]


@pytest.mark.parametrize(
    "action_input", ['{"a": 2, "b": 40}', "{a: 2, 'b': 40,}", ' {"a":2,"b":40}\n']
)
def test_from_langchain_reads_json_and_json5_inputs(action_input: str) -> None:
    out = from_langchain(add).invoke(action_input)
    assert out == ToolOutput("42")


def test_from_langchain_plain_text_for_a_single_string_argument() -> None:
    assert from_langchain(shout).invoke("hello there").text == "HELLO THERE"
    assert from_langchain(shout).invoke('{"text": "json too"}').text == "JSON TOO"


def test_from_langchain_bad_input_is_an_error_observation_naming_the_fields() -> None:
    out = from_langchain(add).invoke("two and forty")
    assert out.is_error
    assert out.text.startswith("Error calling add: could not read the Action Input")
    assert "not valid JSON" in out.text
    assert '"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}' in out.text


def test_from_langchain_non_object_json_is_an_error_observation() -> None:
    out = from_langchain(add).invoke("[1, 2]")
    assert out.is_error and 'must be a JSON object with the keys "a", "b"' in out.text


def test_from_langchain_validation_error_is_an_error_observation() -> None:
    out = from_langchain(add).invoke('{"a": "many", "b": 1}')
    assert out.is_error
    assert out.text.startswith("Error calling add: invalid arguments: a: Input should be")


def test_from_langchain_exception_in_the_tool_is_an_error_observation() -> None:
    out = from_langchain(broken).invoke('{"x": 7}')
    assert out.is_error
    assert out.text.startswith(
        "Error calling broken: the tool raised RuntimeError: disk full while handling 7."
    )


def test_from_langchain_structured_results_become_json_text() -> None:
    out = from_langchain(lookup).invoke('{"key": "k"}')
    assert json.loads(out.text) == {"key": "k", "value": "值", "default": "none"}
    assert "值" in out.text  # not \\u-escaped


# our ToolLike -> LangChain tool


def test_to_langchain_keeps_name_description_and_schema() -> None:
    ours = RecordingTool()
    lc = to_langchain(ours)
    assert isinstance(lc, BaseTool)
    assert (lc.name, lc.description) == ("echo", "Echoes its input.")
    from llm.langchain import tool_schema

    assert tool_schema(lc)["parameters"]["properties"] == ours.parameters["properties"]


def test_to_langchain_passes_arguments_as_json_action_input() -> None:
    ours = RecordingTool()
    result = to_langchain(ours).invoke({"message": "你好", "times": 2})
    assert json.loads(ours.inputs[-1]) == {"message": "你好", "times": 2}
    assert "你好" in ours.inputs[-1]
    assert result == "echo:" + ours.inputs[-1]


def test_to_langchain_tool_call_gives_a_tool_message_with_image_artifact(tmp_path: Path) -> None:
    image = tmp_path / "plot.png"
    ours = RecordingTool(output=ToolOutput("drawn", images=(image,)))
    call = {"name": "echo", "args": {"message": "draw"}, "id": "call_1", "type": "tool_call"}
    message = to_langchain(ours).invoke(call)
    assert isinstance(message, ToolMessage)
    assert (message.content, message.tool_call_id, message.status) == ("drawn", "call_1", "success")
    assert message.artifact == [str(image)]


def test_to_langchain_error_output_becomes_an_error_tool_message() -> None:
    ours = RecordingTool(output=ToolOutput("NameError: x is not defined", is_error=True))
    call = {"name": "echo", "args": {"message": "x"}, "id": "call_2", "type": "tool_call"}
    message = to_langchain(ours).invoke(call)
    assert message.status == "error"
    assert message.content == "NameError: x is not defined"


def test_to_langchain_code_tool_receives_the_raw_code() -> None:
    ours = RecordingTool(
        name="code_interpreter",
        args_format="code",
        parameters={"type": "object", "properties": {"code": {"type": "string"}}},
    )
    to_langchain(ours).invoke({"code": "print(1 + 1)\nx = {'a': 1}"})
    assert ours.inputs[-1] == "print(1 + 1)\nx = {'a': 1}"


def test_round_trip_through_langchain_and_back() -> None:
    ours = RecordingTool()
    back = from_langchain(to_langchain(ours))
    assert back.name == "echo"
    out = back.invoke('{"message": "hi", "times": 3}')
    assert json.loads(ours.inputs[-1]) == {"message": "hi", "times": 3}
    assert out.text == "echo:" + ours.inputs[-1] and not out.is_error


def test_our_agent_runs_a_langchain_tool() -> None:
    from agent import Agent
    from llm.scripted import ScriptedLLM

    llm = ScriptedLLM(
        [
            'Thought: I should add.\nAction: add\nAction Input: {"a": 2, "b": 40}\nObservation:',
            " I now know the final answer.\nFinal Answer: 42",
        ]
    )
    result = Agent(llm=llm, tools=[from_langchain(add)]).run("What is 2 + 40?")
    assert result.answer == "42"
    assert "add: Call this tool to interact with the add API" in llm.prompts[0]
    assert llm.prompts[1].endswith('Action Input: {"a": 2, "b": 40}\nObservation: 42\nThought:')
