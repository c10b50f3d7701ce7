"""Turning the model's ``Action Input`` text into keyword arguments.

Qwen writes a JSON object most of the time. It also writes near-JSON (single quotes,
trailing commas, unquoted keys), which ``json5`` reads without evaluating anything, and for
one-argument tools sometimes a bare string or a fenced block of code. Anything else raises
``ArgumentError`` whose message tells the model how to write the input.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json5

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})[^\n`]*\n(.*?)\n?\s*\1\s*$", re.DOTALL)
_MISSING = object()


class ArgumentError(ValueError):
    """The Action Input could not be read as the tool's arguments (a model-caused error)."""


def strip_fences(text: str) -> str:
    """The content of a fenced block (```lang ... ```) wrapping the whole text, else the text."""
    match = _FENCE.match(text)
    return match.group(2) if match else text


def parse_action_input(text: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments from ``text`` for a tool whose JSON schema is ``parameters``.

    A JSON (or json5) object gives the arguments. For a tool with a single argument (or a
    single required one), any other JSON value, or text that is not JSON at all, becomes that
    argument; a string argument takes the text as written.
    """
    properties: dict[str, Any] = parameters.get("properties") or {}
    required: list[str] = list(parameters.get("required") or [])
    body = strip_fences(text.strip()).strip()
    if not body:
        if required:
            raise ArgumentError(
                f"the Action Input is empty, but {_names(required)} "
                f"{'is' if len(required) == 1 else 'are'} required"
            )
        return {}
    value, error = _loads(body)
    target = _single_target(properties, required)
    if isinstance(value, dict) and (
        target is None or set(value) <= set(properties) or not _is_object(properties[target])
    ):
        return dict(value)
    if target is None:
        if value is _MISSING:
            raise ArgumentError(f"the Action Input is not valid JSON ({error})")
        raise ArgumentError(
            f"the Action Input must be a JSON object with the keys {_names(properties)}, "
            f"got a JSON {type(value).__name__}"
        )
    if value is _MISSING or (_is_string(properties[target]) and not isinstance(value, str)):
        return {target: body}
    return {target: value}


def _loads(body: str) -> tuple[Any, str]:
    try:
        return json.loads(body), ""
    except ValueError:
        pass
    try:
        return json5.loads(body), ""
    except (ValueError, RecursionError) as exc:
        return _MISSING, _first_line(str(exc))


def _single_target(properties: dict[str, Any], required: list[str]) -> str | None:
    if len(properties) == 1:
        return next(iter(properties))
    if len(required) == 1 and required[0] in properties:
        return required[0]
    return None


def _is_string(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string"


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object"


def _names(names: Any) -> str:
    return ", ".join(f'"{n}"' for n in names) or "(none)"


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "parse error"
    return line[:200]
