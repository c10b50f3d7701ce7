"""The contract between the agent and anything it can call.

A tool turns the model's raw ``Action Input`` text into an observation. ``Tool`` (see
``tools.tool``) derives everything from a typed function; ``CodeInterpreter`` implements the
same protocol by hand. The agent depends only on ``ToolLike`` and ``ToolOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

ArgsFormat = Literal["json", "code"]


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call produced: the observation text plus attached image files.

    ``is_error`` marks observations that report a failure (bad arguments, an exception,
    a timeout); the text then tells the model what went wrong and what to do next.
    """

    text: str
    images: tuple[Path, ...] = ()
    is_error: bool = False


@runtime_checkable
class ToolLike(Protocol):
    """Anything the agent can call. ``name`` is the name the model writes after ``Action:``."""

    name: str
    name_for_human: str
    description: str
    parameters: dict[str, Any]
    args_format: ArgsFormat

    def invoke(self, action_input: str) -> ToolOutput:
        """Run with the model's raw Action Input; never raises for model-caused problems."""
        ...
