"""Reading a tool's description and per-argument help out of its docstring.

Google style (``Args:`` with ``name (type): help``) and Sphinx style (``:param name: help``)
are understood. Everything before the first section is the tool's description.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "returns",
    "return",
    "yields",
    "raises",
    "example",
    "examples",
    "note",
    "notes",
}
_ARG_SECTIONS = {"args", "arguments", "parameters", "params"}
_GOOGLE_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_SPHINX_OTHER = re.compile(r"^:(returns?|rtype|raises?|type)\b")


@dataclass(frozen=True)
class ParsedDoc:
    """The description (one line, whitespace collapsed) and help text per argument name."""

    description: str = ""
    args: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> ParsedDoc:
    """Split a docstring into the tool description and the help of each argument."""
    if not doc:
        return ParsedDoc()
    description: list[str] = []
    args: dict[str, list[str]] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = 0
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in _SECTIONS and indent == 0:
            section, current = header, None
            continue
        sphinx = _SPHINX_PARAM.match(stripped)
        if sphinx:
            section, current = "args", sphinx.group(1)
            args[current], arg_indent = [sphinx.group(2)], indent
            continue
        if _SPHINX_OTHER.match(stripped):
            section, current = "returns", None
        elif section is None:
            description.append(stripped)
        elif section in _ARG_SECTIONS:
            google = _GOOGLE_ARG.match(stripped)
            if google and (current is None or indent <= arg_indent):
                current, arg_indent = google.group(1), indent
                args[current] = [google.group(2)]
            elif current is not None:
                args[current].append(stripped)
    return ParsedDoc(
        description=_collapse(description),
        args={name: _collapse(parts) for name, parts in args.items()},
    )


def _collapse(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())
