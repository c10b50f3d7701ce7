"""The typed steps an agent run yields, in order.

One model call gives a ``ModelOutput``, then a ``Thought`` (when the model wrote one), then an
``ActionEvent`` and its ``Observation``, or a ``FinalAnswerEvent``, or an ``ErrorEvent`` for a
completion that could not be used. Every run ends with exactly one ``FinalAnswerEvent``; its
``reason`` says whether the model answered or a limit stopped the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llm.types import Usage

FinishReason = Literal["answer", "max_steps", "context_window"]


@dataclass(frozen=True)
class ModelOutput:
    """The raw text of one model call, its token usage and how long it took."""

    step: int
    text: str
    usage: Usage
    duration_s: float
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Thought:
    step: int
    text: str


@dataclass(frozen=True)
class ActionEvent:
    """The model asked to call ``tool`` with the raw ``tool_input`` text."""

    step: int
    tool: str
    tool_input: str


@dataclass(frozen=True)
class Observation:
    """What the tool call produced (as the model will read it, after the length cap)."""

    step: int
    tool: str
    text: str
    is_error: bool = False
    images: tuple[Path, ...] = ()
    duration_s: float = 0.0
    truncated: bool = False


@dataclass(frozen=True)
class ErrorEvent:
    """A completion the agent could not use; ``message`` is what the model is told."""

    step: int
    message: str
    kind: Literal["format", "context_window", "max_steps"] = "format"


@dataclass(frozen=True)
class FinalAnswerEvent:
    """The end of the run: the answer, or a message saying which limit stopped the run.

    ``transcript`` is the whole assistant text of the turn (steps, observations and the
    answer), as it is kept in the chat history.
    """

    step: int
    answer: str
    thought: str = ""
    reason: FinishReason = "answer"
    transcript: str = field(default="", repr=False)


AgentEvent = ModelOutput | Thought | ActionEvent | Observation | ErrorEvent | FinalAnswerEvent
