"""Reading one ReAct step out of a model completion.

``parse_react`` takes the text the model wrote after the prompt (which may start with
"Thought:" or, after an observation, with the thought itself) and returns what the model
asked for: an ``Action``, a ``FinalAnswer`` or a ``ParseError`` that explains the problem. It
never raises on model text. It tolerates what Qwen actually writes: a missing "Thought:",
full-width colons, bold keywords, fenced code, text after the answer, an "Observation:" the
model invented itself, and both an Action and a Final Answer (whichever comes first wins;
anything after an invented observation is ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ChatML and end-of-text markers: the model's turn is over where one appears.
_END_MARKERS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
_KEYWORD = re.compile(
    r"^[ \t]*(?:\*\*)?[ \t]*(Thought|Action[ \t]*Input|Action|Observation|Final[ \t]*Answer|Question)"
    r"[ \t]*(?:\*\*)?[ \t]*[:：][ \t]*(?:\*\*)?[ \t]?",
    re.IGNORECASE,
)
_INLINE_ANSWER = re.compile(r"Final[ \t]*Answer[ \t]*[:：]", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_WRAPPING_FENCE = re.compile(r"^\s*```[A-Za-z]*[ \t]*\n(.*?)\n[ \t]*```\s*$", re.DOTALL)
_NAME_JUNK = "`'\"*[]()<>{}.,;:：。 \t"


@dataclass(frozen=True)
class Action:
    """Call ``tool`` with the raw ``tool_input`` text. ``log`` is the model text to keep."""

    tool: str
    tool_input: str
    thought: str = ""
    log: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class FinalAnswer:
    """The model's answer to the question. ``log`` is the model text to keep."""

    answer: str
    thought: str = ""
    log: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class ParseError:
    """The completion is not a usable ReAct step; ``message`` tells the model how to fix it."""

    message: str
    log: str = field(default="", compare=False, repr=False)


ReactStep = Action | FinalAnswer | ParseError


@dataclass(frozen=True)
class _Segment:
    keyword: str  # normalised: thought, action, action input, observation, final answer, question
    line_start: int  # where the keyword's line starts in the text
    value_start: int  # where the value after the colon starts
    value_end: int = -1  # where the next keyword line starts (or the end of the text)


def parse_react(text: str) -> ReactStep:
    """The step the model asked for in one completion; never raises."""
    if not isinstance(text, str):
        return ParseError(f"expected the model's text, got {type(text).__name__}")
    text = _unwrap(_cut_at_end_marker(text))
    if not text.strip():
        return ParseError(
            "The reply was empty. Continue with 'Thought:', then either 'Action:' and "
            "'Action Input:', or 'Final Answer:'."
        )
    segments = _segments(text)
    if not any(s.keyword in ("action", "final answer") for s in segments):
        segments = _segments(text, track_fences=False)  # an unclosed fence hid the keywords
    for index, seg in enumerate(segments):
        if seg.keyword == "final answer":
            return _final_answer(text, segments, index)
        if seg.keyword == "action":
            return _action(text, segments, index)
        if seg.keyword == "observation":
            break  # an observation the model wrote before choosing anything
    log = text[: _first(segments, "observation", len(text))].rstrip()
    inline = _INLINE_ANSWER.search(log)
    if inline and log[inline.end() :].strip():  # "Thought: ... Final Answer: ..." on one line
        return FinalAnswer(
            answer=log[inline.end() :].strip(),
            thought=_strip_keyword(log[: inline.start()]),
            log=log,
        )
    return ParseError(
        "The reply has no 'Action:' and no 'Final Answer:'. To use a tool, write "
        "'Action: <tool name>' and then 'Action Input: <arguments>'; to answer, write "
        "'Final Answer: <answer>'.",
        log=log,
    )


def _action(text: str, segments: list[_Segment], index: int) -> ReactStep:
    seg = segments[index]
    value = text[seg.value_start : seg.value_end]
    first_line, _, rest = value.partition("\n")
    name = first_line.strip().strip(_NAME_JUNK)
    nxt = segments[index + 1] if index + 1 < len(segments) else None
    if nxt is not None and nxt.keyword == "action input":
        tool_input = text[nxt.value_start : nxt.value_end]
        log_end = nxt.value_end
    else:
        tool_input, log_end = rest, seg.value_end  # input on the lines under "Action:", if any
    thought = _thought(text, segments, index)
    log = text[:log_end].rstrip()
    if not name:
        return ParseError(
            "'Action:' must be followed by the name of one tool on the same line.", log=log
        )
    return Action(tool=name, tool_input=tool_input.strip(), thought=thought, log=log)


def _final_answer(text: str, segments: list[_Segment], index: int) -> ReactStep:
    seg = segments[index]
    answer = text[seg.value_start : seg.value_end].strip()
    log = text[: seg.value_end].rstrip()
    if not answer:
        return ParseError("'Final Answer:' must be followed by the answer.", log=log)
    return FinalAnswer(answer=answer, thought=_thought(text, segments, index), log=log)


def _thought(text: str, segments: list[_Segment], index: int) -> str:
    """The last Thought before segment ``index``, else the text before the first keyword."""
    for seg in reversed(segments[:index]):
        if seg.keyword == "thought":
            return text[seg.value_start : seg.value_end].strip()
    head_end = segments[0].line_start if segments else len(text)
    return text[:head_end].strip()


def _segments(text: str, track_fences: bool = True) -> list[_Segment]:
    """Keyword lines (outside fenced blocks), each with the span of its value."""
    found: list[_Segment] = []
    in_fence: str | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        fence = _FENCE_LINE.match(line)
        match = None if in_fence else _KEYWORD.match(line)
        if match:
            found.append(_Segment(_normalise(match.group(1)), pos, pos + match.end()))
            fence = _FENCE_LINE.match(line[match.end() :])
        if fence and track_fences:
            marker = fence.group(1)[0] * 3
            closes = in_fence is not None and fence.group(1).startswith(in_fence)
            opens_and_closes = in_fence is None and line.count(marker) >= 2
            if closes:
                in_fence = None
            elif in_fence is None and not opens_and_closes:
                in_fence = marker
        pos += len(line)
    ends = [seg.line_start for seg in found[1:]] + [len(text)]
    return [
        _Segment(s.keyword, s.line_start, min(s.value_start, end), end)
        for s, end in zip(found, ends)
    ]


def _normalise(keyword: str) -> str:
    squashed = "".join(keyword.lower().split())
    return {"finalanswer": "final answer", "actioninput": "action input"}.get(squashed, squashed)


def _strip_keyword(text: str) -> str:
    match = _KEYWORD.match(text)
    return text[match.end() :].strip() if match else text.strip()


def _first(segments: list[_Segment], keyword: str, default: int) -> int:
    return next((s.line_start for s in segments if s.keyword == keyword), default)


def _cut_at_end_marker(text: str) -> str:
    cut = len(text)
    for marker in _END_MARKERS:
        pos = text.find(marker)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut]


def _unwrap(text: str) -> str:
    """The inside of a fence that wraps the whole completion, if the inside holds keywords."""
    match = _WRAPPING_FENCE.match(text)
    if match and any(_KEYWORD.match(line) for line in match.group(1).splitlines()):
        return match.group(1)
    return text
