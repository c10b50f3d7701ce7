"""The JSON schema of a tool's arguments, as the model sees it in the prompt.

Pydantic's schema is made compact: ``title`` entries are dropped (they repeat the names) and
references to nested models and enums are written inline, so each parameter reads on its own.
Recursive models keep their ``$ref`` and the needed ``$defs``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_REF_PREFIX = "#/$defs/"
_VALUE_KEYS = frozenset({"default", "enum", "const", "examples"})  # data, not sub-schemas


def model_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The compact JSON schema (``type: object``) of a pydantic argument model."""
    raw = model.model_json_schema()
    defs: dict[str, Any] = raw.pop("$defs", {})
    kept: set[str] = set()
    cleaned = _clean(raw, defs, expanding=(), kept=kept)
    if cleaned.get("additionalProperties") is False:
        del cleaned["additionalProperties"]  # enforced by validation; noise in the prompt
    schema = {"type": "object", "properties": cleaned.pop("properties", {})}
    schema.update(cleaned)
    if kept:
        schema["$defs"] = {name: _clean(defs[name], defs, (name,), kept) for name in sorted(kept)}
    return schema


def _clean(node: Any, defs: dict[str, Any], expanding: tuple[str, ...], kept: set[str]) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs, expanding, kept) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        name = ref[len(_REF_PREFIX) :]
        if name in expanding or name not in defs:
            kept.add(name)
            return {key: value for key, value in node.items() if key != "title"}
        inlined = _clean(defs[name], defs, (*expanding, name), kept)
        siblings = {k: v for k, v in node.items() if k not in ("$ref", "title")}
        return {**inlined, **_clean(siblings, defs, expanding, kept)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _VALUE_KEYS:
            out[key] = value
        elif key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _clean(sub, defs, expanding, kept) for name, sub in value.items()}
        else:
            out[key] = _clean(value, defs, expanding, kept)
    return out
