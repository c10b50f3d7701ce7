"""Value types shared by every LLM backend: sampling settings, completions, the backend protocol."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen; the defaults are Qwen-14B-Chat's generation_config.json.

    ``do_sample=False`` is greedy decoding. ``top_k=0`` disables top-k. ``repetition_penalty``
    applies to every id of the prompt and of the generated text, as Qwen's reference does.
    """

    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 0
    repetition_penalty: float = 1.1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k!r}")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(
                f"repetition_penalty must be a positive number, got {self.repetition_penalty!r}"
            )

    @classmethod
    def greedy(cls) -> SamplingParams:
        """Deterministic decoding: always the most likely token, no repetition penalty."""
        return cls(do_sample=False, repetition_penalty=1.0)


@dataclass(frozen=True)
class Usage:
    """Token counts of one call; ``cached_tokens`` were served from the reused KV cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """The result of one ``complete`` call. ``text`` excludes the stop string that ended it."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    stop: str | None = None  # the stop string (or special token text) that ended generation


@runtime_checkable
class LLM(Protocol):
    """What the agent needs from a language model: raw-text completion with stop strings.

    The local engine and ``OpenAICompatibleLLM`` both implement it; so does any test double.
    The prompt is the full ChatML text (special tokens written as text).
    """

    def complete(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion: ...

    def stream(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...
