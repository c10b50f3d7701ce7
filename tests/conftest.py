"""Shared fixtures: one tiny Int4 checkpoint in the real Qwen-14B-Chat-Int4 layout per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Int4 checkpoint (hidden 64, 4 heads, group 32, 2 shards, vocab 152064)."""
    from llm.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-qwen"), num_hidden_layers=2)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path):
    """The tiny checkpoint loaded on CPU in float32 (shared: call ``generator.reset()`` if needed)."""
    from llm.engine import load_engine

    return load_engine(tiny_model_dir, device="cpu", progress=False)
