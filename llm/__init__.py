"""The model side of qwen-react: tokenizer, ChatML, the local Int4 engine and remote backends.

Heavy modules (torch) load lazily, so ``from llm import SamplingParams`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm.types import LLM, Completion, SamplingParams, Usage

if TYPE_CHECKING:
    from llm.engine import Engine, load_engine
    from llm.tokenizer import QwenTokenizer

_LAZY = {
    "QwenTokenizer": "llm.tokenizer",
    "load_engine": "llm.engine",
    "Engine": "llm.engine",
}

__all__ = ["LLM", "Completion", "Engine", "QwenTokenizer", "SamplingParams", "Usage", "load_engine"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llm' has no attribute {name!r}")
