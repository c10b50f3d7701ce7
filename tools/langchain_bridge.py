"""Tools across the LangChain boundary: LangChain tools for our ``Agent``, our tools for LangChain.

``from_langchain(lc_tool)`` wraps any LangChain tool (``BaseTool``, ``@tool`` function) as a
``ToolLike``: the model's Action Input is read as JSON5 and handed to the tool; a bad input or
an exception inside the tool becomes an error observation the model can act on.
``to_langchain(tool)`` turns any ``ToolLike`` (``Tool``, ``CodeInterpreter``, ...) into a
LangChain tool whose error outputs become error ``ToolMessage``s and whose images travel as
the message artifact. LangChain itself is reached only through ``llm.langchain``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tools.arguments import ArgumentError, parse_action_input
from tools.base import ArgsFormat, ToolLike, ToolOutput
from tools.tool import to_output

logger = logging.getLogger(__name__)


@dataclass
class LangChainTool:
    """A LangChain tool seen through the ``ToolLike`` protocol."""

    tool: Any = field(repr=False)
    name: str
    name_for_human: str
    description: str
    parameters: dict[str, Any]
    args_format: ArgsFormat = "json"

    def invoke(self, action_input: str) -> ToolOutput:
        """Run the tool with the model's Action Input; problems come back as error outputs."""
        try:
            args = parse_action_input(action_input, self.parameters)
        except ArgumentError as exc:
            return self._error(f"could not read the Action Input: {exc}. {self._hint()}")
        try:
            result = self.tool.invoke(args)
        except ValidationError as exc:
            return self._error(f"invalid arguments: {_first_errors(exc)}. {self._hint()}")
        except Exception as exc:  # a failing tool is the model's problem to solve, not a crash
            logger.warning("LangChain tool %s raised", self.name, exc_info=True)
            return self._error(
                f"the tool raised {type(exc).__name__}: {exc}. Check the arguments and try "
                "again, or answer without this tool."
            )
        content = getattr(result, "content", None)  # tools may return a ToolMessage
        return ToolOutput(content) if isinstance(content, str) else to_output(result)

    def _hint(self) -> str:
        schema = json.dumps(self.parameters, ensure_ascii=False)
        return f"Write the Action Input as a JSON object matching this schema: {schema}"

    def _error(self, message: str) -> ToolOutput:
        return ToolOutput(f"Error calling {self.name}: {message}", is_error=True)


def from_langchain(lc_tool: Any) -> LangChainTool:
    """Wrap a LangChain tool (a ``BaseTool`` or a ``@tool`` function) for our ``Agent``."""
    from llm.langchain import tool_schema

    schema = tool_schema(lc_tool)
    parameters = schema.get("parameters") or {"type": "object", "properties": {}}
    name = schema["name"]
    return LangChainTool(lc_tool, name, name, schema.get("description", ""), parameters)


def to_langchain(tool: ToolLike) -> Any:
    """A LangChain ``BaseTool`` that runs ``tool`` (any ``ToolLike``)."""
    from llm.langchain import structured_tool

    parameters = tool.parameters or {"type": "object", "properties": {}}

    def run(kwargs: dict[str, Any]) -> ToolOutput:
        return tool.invoke(_action_input(tool, kwargs))

    return structured_tool(tool.name, tool.description, parameters, run)


def _action_input(tool: ToolLike, kwargs: dict[str, Any]) -> str:
    """The Action Input text the tool expects for these call arguments."""
    if tool.args_format != "code":
        return json.dumps(kwargs, ensure_ascii=False)
    if len(kwargs) == 1:
        (value,) = kwargs.values()
        return str(value)
    if "code" in kwargs:
        return str(kwargs["code"])
    raise ValueError(
        f"tool {tool.name!r} takes code; call it with one argument (the code), got {sorted(kwargs)}"
    )


def _first_errors(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
    ]
    return "; ".join(parts[:3])
