"""Stop strings on streamed text: ``StopGuard`` ends where ``StopStrings.cut`` cuts the whole."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm.stopping import StopGuard, StopStrings


def _stream(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    """What a guard shows for ``pieces``, and whether it stopped before the stream ended."""
    guard = StopGuard(StopStrings(stops))
    out = ""
    for piece in pieces:
        out += guard.feed(piece)
        if guard.stopped:
            return out, True
    return out + guard.finish(), False


def test_cut_before_the_earliest_stop() -> None:
    stops = StopStrings(["Observation:", ":"])
    assert stops.cut("Thought: x\nObservation: y") == ("Thought", ":")
    assert stops.cut("no stop here") == ("no stop here", None)


def test_guard_holds_back_a_possible_stop_start() -> None:
    guard = StopGuard(StopStrings(["Observation:"]))
    assert guard.feed("Action: x\nObser") == "Action: x\n"
    assert guard.feed("vation: 42") == ""
    assert guard.stopped


def test_guard_releases_a_held_tail_that_did_not_become_a_stop() -> None:
    assert _stream(["a Obs", "cure"], ["Observation:"]) == ("a Obscure", False)


def test_guard_waits_for_a_longer_stop_that_starts_earlier() -> None:
    # ":" is complete after "O:", but "O::" starting one place earlier may still complete
    assert _stream(["O:", ":"], [":", "O::"]) == ("", True)
    assert _stream(["O:", "a"], [":", "O::"]) == ("O", True)
    assert _stream(["xO:"], [":", "O::"]) == ("xO", False)  # ends while waiting: cut at ":"


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="abO:\n", max_size=30),
    st.lists(st.integers(min_value=0, max_value=30), max_size=6),
    st.lists(st.text(alphabet="abO:\n", min_size=1, max_size=4), max_size=3),
)
@example(text="O::", cuts=[2], stops=[":", "O::"])
def test_property_guard_equals_cut_of_whole_text(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    out, _ = _stream(pieces, stops)
    assert out == StopStrings(stops).cut(text)[0]
