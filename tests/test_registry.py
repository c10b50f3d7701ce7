"""ToolRegistry: names, duplicates, lookup, error observations and entry-point plugins."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tools import (
    DuplicateToolError,
    PluginError,
    ToolDefinitionError,
    ToolOutput,
    ToolRegistry,
    tool,
)


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"found {query}"


class Upper:
    """A hand-written tool (no Tool class), as CodeInterpreter is."""

    name = "upper"
    name_for_human = "Upper"
    description = "Upper-case text."
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}}
    args_format = "json"

    def invoke(self, action_input: str) -> ToolOutput:
        if action_input == "explode":
            raise ValueError("broken plugin")
        return ToolOutput(text=action_input.upper())


def test_register_lookup_and_order():
    def calc(expression: str) -> str:
        """Evaluate arithmetic."""
        return expression

    reg = ToolRegistry([search, Upper()])
    reg.register(calc)  # a plain typed function is wrapped with @tool
    assert reg.names == ["search", "upper", "calc"]
    assert len(reg) == 3 and "search" in reg and "Search" in reg and "nope" not in reg
    assert reg.get("SEARCH") is search
    assert reg.call("search", '{"query": "x"}') == ToolOutput(text="found x")
    assert reg.call("upper", "abc").text == "ABC"


def test_duplicates_and_bad_names_are_refused():
    reg = ToolRegistry([search])
    with pytest.raises(DuplicateToolError, match="'search' is already registered"):
        reg.register(search)
    bad = Upper()
    bad.name = "two words"
    with pytest.raises(ToolDefinitionError, match="invalid tool name 'two words'"):
        reg.register(bad)
    with pytest.raises(TypeError, match="expected a tool"):
        reg.register(42)  # type: ignore[arg-type]


def test_unknown_tool_and_raising_invoke_become_observations():
    reg = ToolRegistry([search, Upper()])
    out = reg.call("google", "{}")
    assert out.is_error
    assert "no tool named 'google'" in out.text and "[search, upper]" in out.text
    assert "Final Answer" in out.text
    out = reg.call("upper", "explode")
    assert out.is_error and "ValueError: broken plugin" in out.text


def _install_fake_distribution(root: Path, entry_points: str, module_source: str) -> None:
    (root / "fakeplugin.py").write_text(textwrap.dedent(module_source), encoding="utf-8")
    info = root / "fakeplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("fakeplugin", None)


PLUGIN_MODULE = """
    from tools import ToolOutput, tool

    @tool
    def weather(city: str) -> str:
        '''Weather for a city.'''
        return f"sunny in {city}"

    def shout(text: str) -> str:
        '''Shout the text.'''
        return text.upper() + "!"

    class Clock:
        name = "clock"
        name_for_human = "Clock"
        description = "Tells the time."
        parameters = {"type": "object", "properties": {}}
        args_format = "json"

        def invoke(self, action_input):
            return ToolOutput(text="12:00")

    not_a_tool = 42
"""


def test_entry_point_plugins_are_discovered(plugin_path):
    _install_fake_distribution(
        plugin_path,
        """
        [qwen_react.tools]
        weather = fakeplugin:weather
        shout = fakeplugin:shout
        clock = fakeplugin:Clock
        """,
        PLUGIN_MODULE,
    )
    reg = ToolRegistry.from_entry_points()
    assert set(reg.names) >= {"weather", "shout", "clock"}
    assert reg.call("weather", "Hangzhou").text == "sunny in Hangzhou"
    assert reg.call("shout", '{"text": "hi"}').text == "HI!"
    assert reg.call("clock", "").text == "12:00"


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("bogus = fakeplugin:not_a_tool", "entry point 'bogus' = 'fakeplugin:not_a_tool'"),
        ("gone = fakeplugin_missing:thing", "'gone'.*import failed"),
    ],
    ids=["not_a_tool", "import_failure"],
)
def test_broken_plugin_raises_naming_the_entry_point(plugin_path, entry, match):
    _install_fake_distribution(plugin_path, f"[qwen_react.tools]\n{entry}\n", PLUGIN_MODULE)
    with pytest.raises(PluginError, match=match):
        ToolRegistry.from_entry_points()


def test_the_http_get_plugin_is_installed_through_the_entry_point(monkeypatch):
    monkeypatch.setenv("QWEN_REACT_HTTP_ALLOW", "example.com")
    reg = ToolRegistry.from_entry_points()
    http_get = reg.get("http_get")
    assert http_get is not None and type(http_get).__name__ == "HttpGet"
    assert "Allowed sites: example.com." in http_get.description
    assert reg.call("http_get", "https://elsewhere.test/").is_error
