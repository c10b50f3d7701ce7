"""The terminal view of an agent run: each event printed as it arrives, in Qwen's ReAct words.

``EventPrinter`` writes ``Thought`` / ``Action`` / ``Action Input`` / ``Observation`` /
``Final Answer`` lines to a text stream, with colour only when that stream is a terminal (and
``NO_COLOR`` is unset). ``render_run`` drives ``Agent.stream`` through a printer and returns
the ``AgentResult``; the CLI and the examples both use it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from agent.events import (
    ActionEvent,
    AgentEvent,
    ErrorEvent,
    FinalAnswerEvent,
    ModelOutput,
    Observation,
    Thought,
)

if TYPE_CHECKING:
    from agent.agent import Agent, AgentResult

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
_RAW_PREVIEW = 400  # characters of an unparsable completion shown to the user


def use_color(stream: TextIO, requested: bool | None = None) -> bool:
    """Colour for ``stream``: ``requested`` if given, else only on a TTY without ``NO_COLOR``."""
    if requested is not None:
        return requested
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Style:
    """ANSI styling that is a no-op when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"


class EventPrinter:
    """Prints agent events to ``out`` as they arrive; ``verbose`` also shows raw model text."""

    def __init__(
        self, out: TextIO | None = None, *, color: bool | None = None, verbose: bool = False
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.color = color
        self.style = Style(use_color(self.out, color))
        self.verbose = verbose
        self._last_output = ""

    def handle(self, event: AgentEvent) -> None:
        """Print one event (the stop events of a limit are shown once, with the final message)."""
        s = self.style
        if isinstance(event, ModelOutput):
            self._last_output = event.text
            if self.verbose:
                self._line(s(f"[step {event.step}: {event.duration_s:.2f} s]", "dim"))
                self._line(s(event.text, "dim"))
        elif isinstance(event, Thought):
            self._line(f"{s('Thought:', 'cyan', 'bold')} {event.text}")
        elif isinstance(event, ActionEvent):
            self._line(f"{s('Action:', 'yellow', 'bold')} {event.tool}")
            self._labelled(s("Action Input:", "yellow", "bold"), event.tool_input)
        elif isinstance(event, Observation):
            self._observation(event)
        elif isinstance(event, ErrorEvent) and event.kind == "format":
            raw = self._last_output.strip()
            if len(raw) > _RAW_PREVIEW:
                raw = raw[:_RAW_PREVIEW] + " ..."
            self._labelled(s("Model output (not in ReAct format):", "magenta"), s(raw, "dim"))
            self._labelled(s("Observation:", "red", "bold"), event.message)
        elif isinstance(event, FinalAnswerEvent):
            if event.reason == "answer":
                self._labelled(s("Final Answer:", "green", "bold"), event.answer)
            else:
                self._labelled(s("No answer:", "yellow", "bold"), event.answer)

    def summary(self, result: AgentResult, out: TextIO | None = None) -> None:
        """One dim line: steps, tokens (and how many came from the KV cache) and seconds."""
        stream = out if out is not None else self.out
        style = Style(use_color(stream, self.color))
        u = result.usage
        text = (
            f"[{len(result.steps)} step{'s' if len(result.steps) != 1 else ''}, "
            f"{u.prompt_tokens} prompt tokens ({u.cached_tokens} cached), "
            f"{u.completion_tokens} generated, model {result.timings['llm_s']:.2f} s, "
            f"tools {result.timings['tools_s']:.2f} s, total {result.timings['total_s']:.2f} s, "
            f"finish: {result.finish_reason}]"
        )
        print(style(text, "dim"), file=stream, flush=True)

    def _observation(self, event: Observation) -> None:
        s = self.style
        label = s("Observation:", "red" if event.is_error else "blue", "bold")
        self._labelled(label, event.text.rstrip())
        for image in event.images:
            self._line(s(f"  [image: {image}]", "blue"))
        if self.verbose:
            self._line(s(f"[{event.tool}: {event.duration_s:.2f} s]", "dim"))

    def _labelled(self, label: str, text: str) -> None:
        """``label text`` on one line, or the label alone above a multi-line text."""
        if "\n" in text:
            self._line(label)
            self._line(text)
        else:
            self._line(f"{label} {text}")

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def render_run(
    agent: Agent,
    query: str,
    *,
    printer: EventPrinter | None = None,
    history: Sequence[tuple[str, str]] | None = None,
) -> AgentResult:
    """Run ``agent`` on ``query``, printing each event as it arrives; return the result."""
    from agent.agent import AgentResult

    printer = printer or EventPrinter()
    started = time.perf_counter()
    events: list[AgentEvent] = []
    for event in agent.stream(query, history=list(history) if history is not None else None):
        printer.handle(event)
        events.append(event)
    return AgentResult.from_events(events, time.perf_counter() - started)
