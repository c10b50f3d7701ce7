"""``ScriptedLLM``: an ``LLM`` that replays queued completions, for tests and demos.

It behaves like the local engine where the agent can tell: the returned text is cut at the
first stop string or ChatML marker (which is not included), ``max_new_tokens`` truncates it
(``finish_reason="length"``), tokens are counted with Qwen's tokenizer, and ``usage`` reports
how many prompt tokens a prefix-reusing KV cache would have served (the longest common prefix
with the previous prompt plus its completion).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from llm.tokenizer import ENDOFTEXT, IM_END, IM_START, QwenTokenizer
from llm.types import Completion, SamplingParams, Usage

_MARKERS = (IM_END, IM_START, ENDOFTEXT)


class ScriptExhaustedError(RuntimeError):
    """``complete`` was called more often than completions were queued."""


@dataclass(frozen=True)
class Call:
    """One recorded call: the prompt and the settings it came with."""

    prompt: str
    stop: tuple[str, ...]
    max_new_tokens: int
    sampling: SamplingParams | None


class ScriptedLLM:
    """Replays ``outputs`` in order, one per ``complete`` (or ``stream``) call."""

    def __init__(
        self, outputs: Iterable[str] = (), *, tokenizer: QwenTokenizer | None = None
    ) -> None:
        self.tokenizer = tokenizer or QwenTokenizer.default()
        self._queue: deque[str] = deque()
        self.calls: list[Call] = []
        self._cache: list[int] = []  # what an engine's KV cache would hold after the last call
        self.enqueue(*outputs)

    def enqueue(self, *outputs: str) -> None:
        """Queue more completions (raw model text, stop strings and all)."""
        for text in outputs:
            if not isinstance(text, str):
                raise TypeError(f"scripted outputs must be str, got {type(text).__name__}")
            self._queue.append(text)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    @property
    def prompts(self) -> list[str]:
        return [call.prompt for call in self.calls]

    def complete(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion:
        """The next queued completion, cut at the first stop string as an engine would."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not self._queue:
            raise ScriptExhaustedError(
                f"ScriptedLLM: no queued completion left for call {len(self.calls) + 1}"
            )
        self.calls.append(Call(prompt, tuple(stop), max_new_tokens, sampling))
        raw = self._queue.popleft()
        text, stopped_by = _cut(raw, (*stop, *_MARKERS))
        ids = self.tokenizer.encode(text, allowed_special=set())
        finish = "stop"
        if len(ids) > max_new_tokens:
            ids = ids[:max_new_tokens]
            text, stopped_by, finish = self.tokenizer.decode(ids), None, "length"
        prompt_ids = self.tokenizer.encode(prompt)
        usage = Usage(
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(ids),
            cached_tokens=_common_prefix(prompt_ids, self._cache),
        )
        self._cache = prompt_ids + ids
        return Completion(
            text=text, token_ids=ids, finish_reason=finish, usage=usage, stop=stopped_by
        )

    def stream(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        """The next completion as text deltas, one per token."""
        completion = self.complete(
            prompt, stop=stop, max_new_tokens=max_new_tokens, sampling=sampling
        )
        decoder = self.tokenizer.stream_decoder()
        for token_id in completion.token_ids:
            piece = decoder.push(token_id)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))


def _cut(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop string, and that stop string (None if none occurs)."""
    best, which = len(text), None
    for stop in stops:
        if not stop:
            continue
        pos = text.find(stop)
        if pos != -1 and (
            pos < best or (pos == best and which is not None and len(stop) > len(which))
        ):
            best, which = pos, stop
    return text[:best], which


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
