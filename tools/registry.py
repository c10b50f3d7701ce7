"""``ToolRegistry``: the tools one agent can call, looked up by the name the model writes.

Names are checked when a tool is added and duplicates are refused. Plugins installed in the
environment are found through the entry-point group ``qwen_react.tools``; an entry point may
name a tool object, a typed function (made into a tool with ``@tool``) or a tool class, which
is instantiated without arguments.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tools.base import ToolLike, ToolOutput
from tools.tool import Tool, check_tool_name

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qwen_react.tools"


class DuplicateToolError(ValueError):
    """Two tools share one name."""


class PluginError(RuntimeError):
    """An entry point of ``qwen_react.tools`` could not be loaded as a tool."""


class ToolRegistry:
    """An ordered set of tools with unique, valid names."""

    def __init__(self, tools: Iterable[ToolLike | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, ToolLike] = {}
        for item in tools:
            self.register(item)

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> ToolRegistry:
        """A registry holding every plugin tool installed under the entry-point ``group``."""
        registry = cls()
        registry.load_plugins(group)
        return registry

    def register(self, item: ToolLike | Callable[..., Any]) -> ToolLike:
        """Add a tool (or a typed function, wrapped with ``@tool``); returns what was added."""
        added = as_tool(item)
        name = check_tool_name(added.name)
        if name in self._tools:
            raise DuplicateToolError(
                f"a tool named {name!r} is already registered ({self._tools[name]!r}); "
                "tool names must be unique"
            )
        self._tools[name] = added
        return added

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[ToolLike]:
        """Register every tool of the entry-point ``group``; a broken plugin raises ``PluginError``."""
        added = []
        for point in sorted(entry_points(group=group), key=lambda p: p.name):
            plugin = _load_entry_point(point, group)
            added.append(self.register(plugin))
            logger.info("loaded tool plugin %s from %s", plugin.name, point.value)
        return added

    def get(self, name: str) -> ToolLike | None:
        """The tool called ``name``: exact match first, then ignoring case."""
        found = self._tools.get(name)
        if found is not None:
            return found
        folded = name.casefold()
        matches = [t for n, t in self._tools.items() if n.casefold() == folded]
        return matches[0] if len(matches) == 1 else None

    def call(self, name: str, action_input: str) -> ToolOutput:
        """Run a tool for the model; unknown names and tool failures become error observations."""
        found = self.get(name)
        if found is None:
            return ToolOutput(
                text=(
                    f"Error: there is no tool named {name!r}. The Action must be exactly one of "
                    f"[{', '.join(self.names)}]; to answer without a tool, write "
                    "'Final Answer: ' followed by the answer."
                ),
                is_error=True,
            )
        try:
            return found.invoke(action_input)
        except Exception as exc:
            logger.warning("tool %s raised from invoke", found.name, exc_info=True)
            return ToolOutput(
                text=(
                    f"Error calling {found.name}: {type(exc).__name__}: {exc}. "
                    "Check the Action Input and try again, or answer without this tool."
                ),
                is_error=True,
            )

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[ToolLike]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names})"


def as_tool(item: ToolLike | Callable[..., Any]) -> ToolLike:
    """``item`` if it already is a tool, else a ``Tool`` built from the typed function."""
    if isinstance(item, ToolLike) and not inspect.isclass(item):
        return item
    if inspect.isfunction(item) or inspect.ismethod(item):
        return Tool.from_function(item)
    raise TypeError(
        f"expected a tool (name, description, parameters, invoke) or a typed function, got {item!r}"
    )


def _load_entry_point(point: EntryPoint, group: str) -> ToolLike:
    where = f"entry point {point.name!r} = {point.value!r} in group {group!r}"
    try:
        obj = point.load()
    except Exception as exc:
        raise PluginError(f"{where}: import failed: {type(exc).__name__}: {exc}") from exc
    try:
        if inspect.isclass(obj):
            obj = obj()
        return as_tool(obj)
    except Exception as exc:
        raise PluginError(f"{where}: not a usable tool: {type(exc).__name__}: {exc}") from exc
