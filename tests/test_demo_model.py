"""The demo model: its episode generator, its checkpoint through load_engine, its success rate."""

from __future__ import annotations

import random
from datetime import date

import pytest

from llm.demo.data import (
    KINDS,
    TRAIN_SEED,
    generate_episodes,
    heldout_episodes,
    make_episode,
    run_code,
)


def test_same_seed_same_episodes():
    assert generate_episodes(30, seed=5) == generate_episodes(30, seed=5)
    assert generate_episodes(30, seed=5) != generate_episodes(30, seed=6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_answers_with_the_printed_value(kind):
    episode = make_episode(random.Random(kind), kind)
    assert episode.kind == kind
    assert episode.answer == run_code(episode.code) != ""
    assert episode.action_text().startswith("Thought: ")
    assert "\nAction: code_interpreter\nAction Input:\n```py\n" in episode.action_text()
    assert episode.action_text().endswith("\n```\n")
    assert episode.final_text() == f" I now know the final answer.\nFinal Answer: {episode.answer}"


def _listed(code: str) -> list[int]:
    return [int(x) for x in code.split("[", 1)[1].split("]", 1)[0].split(", ")]


def test_known_answers():
    """Spot checks against values computed independently of the generator's code."""
    rng = random.Random(0)
    for _ in range(200):
        e = make_episode(rng)
        if e.kind == "sum":
            assert int(e.answer) == sum(_listed(e.code))
        elif e.kind == "max":
            assert int(e.answer) == max(_listed(e.code))
        elif e.kind == "day_difference":
            first, second = (date.fromisoformat(s) for s in e.code.split('"')[1::2])
            assert int(e.answer) == (second - first).days >= 0


def test_heldout_questions_are_distinct_and_unseen_in_training():
    heldout = heldout_episodes(50)
    assert len({e.question for e in heldout}) == 50
    exclude = {e.question for e in heldout}
    training = generate_episodes(3000, TRAIN_SEED, exclude=exclude)
    assert not exclude & {e.question for e in training}


def test_run_code_reports_what_was_printed():
    assert run_code("print(6 * 7)\n") == "42"
    with pytest.raises(ZeroDivisionError):
        run_code("print(1 / 0)")


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="cube_root"):
        make_episode(random.Random(0), "cube_root")
