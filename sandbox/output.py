"""Bounded text buffers (head and tail kept, the middle counted) and ANSI stripping."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor escape sequences."""
    return _ANSI.sub("", text)


def elision_marker(count: int) -> str:
    """The line that replaces ``count`` elided characters."""
    return f"\n[... {count} characters elided ...]\n"


class BoundedText:
    """Accumulates text but keeps only the first ``head`` and last ``tail`` characters.

    Memory stays O(head + tail) however much is appended; ``getvalue()`` shows the elided
    middle as one marker line with its character count.
    """

    def __init__(self, head: int, tail: int) -> None:
        if head < 0 or tail < 0:
            raise ValueError(f"head and tail must be >= 0, got head={head}, tail={tail}")
        self.head_limit, self.tail_limit = head, tail
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self._total = 0

    def append(self, text: str) -> None:
        """Add text; characters beyond the head go to the rolling tail."""
        self._total += len(text)
        room = self.head_limit - self._head_len
        if room > 0:
            piece = text[:room]
            self._head.append(piece)
            self._head_len += len(piece)
            text = text[room:]
        if text and self.tail_limit:
            self._tail = (self._tail + text[-self.tail_limit :])[-self.tail_limit :]

    @property
    def total(self) -> int:
        """Characters appended so far."""
        return self._total

    @property
    def elided(self) -> int:
        """Characters dropped from the middle."""
        return self._total - self._head_len - len(self._tail)

    def getvalue(self) -> str:
        head = "".join(self._head)
        if self.elided:
            return head + elision_marker(self.elided) + self._tail
        return head + self._tail

    def __len__(self) -> int:
        return self._total


def truncate(text: str, head: int, tail: int) -> str:
    """``text`` bounded the way BoundedText bounds it."""
    buf = BoundedText(head, tail)
    buf.append(text)
    return buf.getvalue()
