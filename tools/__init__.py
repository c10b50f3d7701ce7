"""Tools the agent can call: ``Tool``/``@tool``, ``ToolRegistry`` and the built-in tools.

``CodeInterpreter`` (and ``HttpGet``) load lazily, so importing ``tools`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tools.arguments import ArgumentError, parse_action_input
from tools.base import ToolLike, ToolOutput
from tools.registry import DuplicateToolError, PluginError, ToolRegistry
from tools.tool import Tool, ToolDefinitionError, tool

if TYPE_CHECKING:
    from tools.code_interpreter import CodeInterpreter
    from tools.http import HttpGet

_LAZY = {"CodeInterpreter": "tools.code_interpreter", "HttpGet": "tools.http"}

__all__ = [
    "ArgumentError",
    "CodeInterpreter",
    "DuplicateToolError",
    "HttpGet",
    "PluginError",
    "Tool",
    "ToolDefinitionError",
    "ToolLike",
    "ToolOutput",
    "ToolRegistry",
    "parse_action_input",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tools' has no attribute {name!r}")
