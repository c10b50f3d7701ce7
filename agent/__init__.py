"""The ReAct agent: Qwen's prompt, the step parser, the loop and its typed events."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent.events import (
    ActionEvent,
    AgentEvent,
    ErrorEvent,
    FinalAnswerEvent,
    ModelOutput,
    Observation,
    Thought,
)
from agent.parser import Action, FinalAnswer, ParseError, parse_react

if TYPE_CHECKING:
    from agent.agent import Agent, AgentResult, Step

_LAZY = {"Agent": "agent.agent", "AgentResult": "agent.agent", "Step": "agent.agent"}

__all__ = [
    "Action",
    "ActionEvent",
    "Agent",
    "AgentEvent",
    "AgentResult",
    "ErrorEvent",
    "FinalAnswer",
    "FinalAnswerEvent",
    "ModelOutput",
    "Observation",
    "ParseError",
    "Step",
    "Thought",
    "parse_react",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
