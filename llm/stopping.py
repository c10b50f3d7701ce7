"""Stop strings matched on decoded text, and streaming that never leaks part of a stop string.

Matching on text, not token ids, matters: a newline before "Observation:" usually merges into
the previous token, so the id sequence of "\\nObservation:" never appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StopHit:
    index: int  # where the stop string starts in the text
    stop: str


class StopStrings:
    """Find the earliest stop string in a growing text."""

    def __init__(self, stops: Sequence[str]) -> None:
        if isinstance(stops, str):
            stops = (stops,)
        for s in stops:
            if not isinstance(s, str):
                raise ValueError(f"stop strings must be str, got {s!r}")
        self.stops = tuple(dict.fromkeys(s for s in stops if s))
        self.longest = max((len(s) for s in self.stops), default=0)

    def search(self, text: str, start: int = 0) -> StopHit | None:
        """The earliest stop string starting at or after ``start`` - (longest - 1)."""
        if not self.stops:
            return None
        begin = max(0, start - self.longest + 1)
        best: StopHit | None = None
        for s in self.stops:
            i = text.find(s, begin)
            if i >= 0 and (best is None or i < best.index):
                best = StopHit(i, s)
        return best

    def cut(self, text: str) -> tuple[str, str | None]:
        """``text`` cut before its earliest stop string, and that stop (``None`` if none)."""
        hit = self.search(text)
        return (text, None) if hit is None else (text[: hit.index], hit.stop)

    def holdback(self, text: str) -> int:
        """Length of the longest end of ``text`` that could still begin a stop string."""
        for n in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0


class StopGuard:
    """Streams text that arrives in pieces, never showing part of a stop string, and ends
    where ``StopStrings.cut`` would cut the whole text.

    A stop found in the text is not final while an end of the text that starts earlier could
    still grow into a longer stop (``":"`` found in ``"O:"`` while ``"O::"`` is a stop too):
    the text before that end goes out and the rest waits for the next piece.
    """

    def __init__(self, stops: StopStrings) -> None:
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def feed(self, chunk: str) -> str:
        """The text that is now safe to show; sets ``stopped`` once a stop is final."""
        self.pending += chunk
        hit = self.stops.search(self.pending)
        safe = len(self.pending) - self.stops.holdback(self.pending)
        if hit is not None and hit.index <= safe:
            out, self.pending, self.stopped = self.pending[: hit.index], "", True
            return out
        out, self.pending = self.pending[:safe], self.pending[safe:]
        return out

    def finish(self) -> str:
        """The text held back when the stream ends, cut before any stop string in it."""
        out, _ = self.stops.cut(self.pending)
        self.pending = ""
        return out
