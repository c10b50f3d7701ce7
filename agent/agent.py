"""The ReAct loop: ``Agent.stream`` yields typed events, ``run`` drains it, ``chat`` keeps history.

Each step sends Qwen's ReAct prompt (``agent.prompt``) to the LLM with the stop words
``"Observation:"``, parses the completion (``agent.parser``) and either runs the tool, appending
its observation, or ends with the final answer. Everything the model gets wrong (bad format,
unknown tool, bad arguments, a failing tool) goes back to it as an observation; ``max_steps``
and the context window always end the run with a clear final message. The prompt, including
the tokens still to be generated, stays within ``max_window_size``: older chat turns are
dropped first, and each observation is capped at ``max_observation_tokens``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.events import (
    ActionEvent,
    AgentEvent,
    ErrorEvent,
    FinalAnswerEvent,
    FinishReason,
    ModelOutput,
    Observation,
    Thought,
)
from agent.parser import Action, FinalAnswer, parse_react
from agent.prompt import (
    STOP_WORDS,
    History,
    PromptFamily,
    build_prompt,
    check_family,
    react_instruction,
    scratchpad_text,
    transcript,
)
from llm.chatml import DEFAULT_SYSTEM
from llm.types import LLM, SamplingParams, Usage
from tools.base import ToolLike
from tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

# Qwen's react_demo.py decodes with top_k=1: greedy, with the checkpoint's repetition penalty.
REACT_SAMPLING = SamplingParams(do_sample=False, repetition_penalty=1.1)
_MIN_NEW_TOKENS = 16  # below this the model cannot write even a short step
_TRUNCATION_NOTE = "\n[... observation truncated: showing {shown} of {total} tokens]"


@dataclass(frozen=True)
class Step:
    """One model call and what followed it."""

    index: int
    model_output: str
    thought: str = ""
    tool: str | None = None
    tool_input: str | None = None
    observation: str | None = None
    is_error: bool = False
    usage: Usage = field(default_factory=Usage)
    llm_s: float = 0.0
    tool_s: float = 0.0


@dataclass(frozen=True)
class AgentResult:
    """The outcome of one run: the answer, its steps, token usage and timings (seconds)."""

    answer: str
    finish_reason: FinishReason
    steps: list[Step]
    usage: Usage
    timings: dict[str, float]
    transcript: str = ""
    events: list[AgentEvent] = field(default_factory=list, repr=False)

    @classmethod
    def from_events(cls, events: Sequence[AgentEvent], total_s: float) -> AgentResult:
        """Summarise a finished event stream."""
        final = events[-1]
        if not isinstance(final, FinalAnswerEvent):
            raise ValueError("an agent event stream must end with a FinalAnswerEvent")
        steps = _steps(events)
        usage = Usage(
            prompt_tokens=sum(s.usage.prompt_tokens for s in steps),
            completion_tokens=sum(s.usage.completion_tokens for s in steps),
            cached_tokens=sum(s.usage.cached_tokens for s in steps),
        )
        timings = {
            "total_s": total_s,
            "llm_s": sum(s.llm_s for s in steps),
            "tools_s": sum(s.tool_s for s in steps),
        }
        return cls(
            answer=final.answer,
            finish_reason=final.reason,
            steps=steps,
            usage=usage,
            timings=timings,
            transcript=final.transcript,
            events=list(events),
        )


class Agent:
    """A ReAct agent over an ``LLM`` and a set of tools.

    ``llm=None`` loads the local engine from the default model location (see
    ``agent.defaults``). ``family`` picks Qwen's prompt form: ``"completion"`` (default; the
    assistant turn stays open, so the engine reuses its KV cache) or ``"chat"``.
    """

    def __init__(
        self,
        llm: LLM | None = None,
        tools: ToolRegistry | Iterable[ToolLike | Any] = (),
        max_steps: int = 8,
        *,
        family: PromptFamily = "completion",
        system: str = DEFAULT_SYSTEM,
        max_window_size: int = 6144,
        max_new_tokens: int = 512,
        max_observation_tokens: int = 1024,
        sampling: SamplingParams | None = REACT_SAMPLING,
        model_dir: str | None = None,
    ) -> None:
        _check_positive(max_steps=max_steps, max_new_tokens=max_new_tokens)
        _check_positive(max_window_size=max_window_size)
        _check_positive(max_observation_tokens=max_observation_tokens)
        self.family = check_family(family)
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        if llm is None:
            from agent.defaults import load_default_llm

            llm = load_default_llm(model_dir)
        _check_llm(llm)
        self.llm = llm
        self.max_steps = max_steps
        self.system = system
        self.max_window_size = max_window_size
        self.max_new_tokens = max_new_tokens
        self.max_observation_tokens = max_observation_tokens
        self.sampling = sampling
        self.history: list[tuple[str, str]] = []

    @property
    def instruction(self) -> str:
        """The ReAct instruction for the current tools (empty without tools)."""
        tools = list(self.tools)
        return react_instruction(tools, self.family) if tools else ""

    # ----------------------------------------------------------------- public API

    def run(self, query: str, *, history: History | None = None) -> AgentResult:
        """Answer ``query`` (after ``history``, a list of ``(query, response)`` pairs)."""
        start = time.perf_counter()
        events = list(self.stream(query, history=history))
        return AgentResult.from_events(events, time.perf_counter() - start)

    def chat(self, query: str) -> AgentResult:
        """Answer ``query`` in the ongoing conversation and remember the turn."""
        result = self.run(query, history=self.history)
        self.history.append((query, result.transcript or result.answer))
        return result

    def reset(self) -> None:
        """Forget the conversation."""
        self.history.clear()

    def stream(self, query: str, *, history: History | None = None) -> Iterator[AgentEvent]:
        """The run as it happens: model outputs, thoughts, actions, observations, the answer."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        instruction = self.instruction
        kept = self._fit_history(query, list(history or ()), instruction)
        steps: list[tuple[str, str]] = []
        for index in range(1, self.max_steps + 1):
            prompt = build_prompt(
                query,
                instruction=instruction,
                history=kept,
                steps=steps,
                family=self.family,
                system=self.system,
            )
            room = self.max_window_size - self.llm.count_tokens(prompt)
            if room < _MIN_NEW_TOKENS:
                yield from self._stop(index, steps, "context_window")
                return
            started = time.perf_counter()
            completion = self.llm.complete(
                prompt,
                stop=STOP_WORDS,
                max_new_tokens=min(self.max_new_tokens, room),
                sampling=self.sampling,
            )
            yield ModelOutput(
                step=index,
                text=completion.text,
                usage=completion.usage,
                duration_s=time.perf_counter() - started,
                finish_reason=completion.finish_reason,
            )
            if not instruction:  # no tools: a plain chat answer
                answer = completion.text.strip()
                yield FinalAnswerEvent(index, answer, transcript=answer)
                return
            step = parse_react(completion.text)
            if isinstance(step, (Action, FinalAnswer)) and step.thought:
                yield Thought(index, step.thought)
            if isinstance(step, FinalAnswer):
                final_log = step.log.lstrip("\n") if not steps else step.log
                yield FinalAnswerEvent(
                    index,
                    step.answer,
                    step.thought,
                    transcript=transcript(steps, final_log, self.family),
                )
                return
            if isinstance(step, Action):
                yield ActionEvent(index, step.tool, step.tool_input)
                observation = yield from self._call_tool(index, step)
                steps.append((step.log, observation))
            else:
                yield ErrorEvent(index, step.message)
                steps.append((self._cap(step.log)[0], step.message))
        yield from self._stop(self.max_steps, steps, "max_steps")

    # ----------------------------------------------------------------- helpers

    def _call_tool(self, index: int, action: Action) -> Iterator[AgentEvent]:
        started = time.perf_counter()
        output = self.tools.call(action.tool, action.tool_input)
        elapsed = time.perf_counter() - started
        text, truncated = self._cap(output.text)
        resolved = self.tools.get(action.tool)
        yield Observation(
            step=index,
            tool=resolved.name if resolved is not None else action.tool,
            text=text,
            is_error=output.is_error,
            images=tuple(output.images),
            duration_s=elapsed,
            truncated=truncated,
        )
        return text

    def _stop(
        self, index: int, steps: list[tuple[str, str]], reason: FinishReason
    ) -> Iterator[AgentEvent]:
        if reason == "max_steps":
            message = (
                f"Stopped after {self.max_steps} steps (max_steps) without a final answer. "
                "Ask again with a simpler question, or allow more steps."
            )
        else:
            message = (
                f"Stopped: the conversation reached the context window ({self.max_window_size} "
                "tokens, max_window_size) before a final answer. Start a new conversation or "
                "ask for less output from the tools."
            )
        logger.info("agent run stopped at step %d: %s", index, reason)
        yield ErrorEvent(index, message, kind=reason)
        text = scratchpad_text(steps, self.family).removesuffix("\nThought:").lstrip("\n")
        yield FinalAnswerEvent(index, message, reason=reason, transcript=text)

    def _fit_history(
        self, query: str, history: list[tuple[str, str]], instruction: str
    ) -> list[tuple[str, str]]:
        """The newest history turns whose prompt leaves room for ``max_new_tokens``."""
        while history:
            prompt = build_prompt(
                query,
                instruction=instruction,
                history=history,
                family=self.family,
                system=self.system,
            )
            if self.llm.count_tokens(prompt) + self.max_new_tokens <= self.max_window_size:
                break
            history = history[1:]
        return history

    def _cap(self, text: str) -> tuple[str, bool]:
        """``text`` cut to ``max_observation_tokens`` (with a note saying so)."""
        total = self.llm.count_tokens(text)
        if total <= self.max_observation_tokens:
            return text, False
        budget = max(self.max_observation_tokens - 24, 1)  # room for the note
        lo, hi = 0, len(text)
        while lo < hi:  # the longest prefix within budget
            mid = (lo + hi + 1) // 2
            if self.llm.count_tokens(text[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        shown = self.llm.count_tokens(text[:lo])
        return text[:lo] + _TRUNCATION_NOTE.format(shown=shown, total=total), True


def _steps(events: Sequence[AgentEvent]) -> list[Step]:
    by_index: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, ModelOutput):
            by_index[event.step] = {
                "index": event.step,
                "model_output": event.text,
                "usage": event.usage,
                "llm_s": event.duration_s,
            }
            continue
        record = by_index.get(event.step)
        if record is None:
            continue
        if isinstance(event, Thought):
            record["thought"] = event.text
        elif isinstance(event, ActionEvent):
            record.update(tool=event.tool, tool_input=event.tool_input)
        elif isinstance(event, Observation):
            record.update(
                tool=event.tool,
                observation=event.text,
                is_error=event.is_error,
                tool_s=event.duration_s,
            )
        elif isinstance(event, ErrorEvent) and event.kind == "format":
            record.update(observation=event.message, is_error=True)
    return [Step(**record) for record in by_index.values()]


def _check_llm(llm: object) -> None:
    missing = [m for m in ("complete", "count_tokens") if not callable(getattr(llm, m, None))]
    if missing:
        raise TypeError(
            f"llm must implement llm.types.LLM (complete, stream, count_tokens); "
            f"{type(llm).__name__} lacks {', '.join(missing)}"
        )


def _check_positive(**settings: int) -> None:
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
