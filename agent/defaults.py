"""Where the agent finds the local model when no ``llm`` is given.

The model directory is, in order: the ``model_dir`` argument (the CLI's ``--model``), the
environment variable ``QWEN_REACT_MODEL``, or ``$XDG_CACHE_HOME/qwen-react/Qwen-14B-Chat-Int4``
(``~/.cache/qwen-react/Qwen-14B-Chat-Int4`` when ``XDG_CACHE_HOME`` is unset). It must hold
the Hugging Face repository ``Qwen/Qwen-14B-Chat-Int4`` as published.
"""

from __future__ import annotations

import os
from pathlib import Path

from llm.types import LLM

MODEL_ENV = "QWEN_REACT_MODEL"
MODEL_REPO = "Qwen/Qwen-14B-Chat-Int4"
_NEEDED = ("config.json", "qwen.tiktoken")


class ModelNotFoundError(FileNotFoundError):
    """The model directory is missing or incomplete; the message says how to get the weights."""


def default_model_dir() -> Path:
    """``$QWEN_REACT_MODEL`` if set, else the cache location (not checked here)."""
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    return Path(cache).expanduser() / "qwen-react" / "Qwen-14B-Chat-Int4"


def resolve_model_dir(model_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model directory to load, checked for the files a Qwen Int4 checkpoint has."""
    path = Path(model_dir).expanduser() if model_dir is not None else default_model_dir()
    source = "model_dir" if model_dir is not None else _source()
    if not path.is_dir():
        raise ModelNotFoundError(_how_to_get(path, f"{path} does not exist ({source})"))
    missing = [name for name in _NEEDED if not (path / name).is_file()]
    if not any(path.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise ModelNotFoundError(_how_to_get(path, f"{path} ({source}) lacks {', '.join(missing)}"))
    return path


def load_default_llm(model_dir: str | os.PathLike[str] | None = None) -> LLM:
    """The local engine on the resolved model directory."""
    path = resolve_model_dir(model_dir)  # before importing torch: fail fast
    from llm.engine import load_engine

    return load_engine(path)


def _source() -> str:
    if os.environ.get(MODEL_ENV, "").strip():
        return f"from ${MODEL_ENV}"
    return f"the default location; set ${MODEL_ENV} or pass --model to use another"


def _how_to_get(path: Path, problem: str) -> str:
    return (
        f"Qwen-14B-Chat-Int4 not found: {problem}.\n"
        f"Download the checkpoint (about 10 GB) into that directory, for example:\n"
        f"    huggingface-cli download {MODEL_REPO} --local-dir {path}\n"
        f"or from ModelScope: modelscope download --model qwen/Qwen-14B-Chat-Int4 "
        f"--local_dir {path}\n"
        f"Then point ${MODEL_ENV} (or --model) at it, or pass llm= to Agent."
    )
