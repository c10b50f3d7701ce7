"""Synthetic ReAct episodes for the demo model's narrow domain.

Each episode is a question about arithmetic, a list of numbers or calendar dates, the
Python code that answers it, and the value that code prints. The value is obtained by
running the code, so the Final Answer the model learns to write is always the observation
it was shown. Questions come from a seeded ``random.Random``: the same seed gives the same
episodes on every machine.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

TOOL_NAME = "code_interpreter"
FINAL_THOUGHT = "I now know the final answer."


@dataclass(frozen=True)
class Episode:
    """One question, the code that answers it and the value the code printed."""

    kind: str
    question: str
    thought: str
    code: str
    observation: str

    @property
    def answer(self) -> str:
        """The Final Answer: the printed value, copied."""
        return self.observation

    @property
    def action_input(self) -> str:
        """The Action Input the model writes: the code in a fenced ``py`` block."""
        return f"```py\n{self.code}\n```"

    def action_text(self) -> str:
        """The model's first turn, up to (not including) the ``Observation:`` stop word."""
        return f"Thought: {self.thought}\nAction: {TOOL_NAME}\nAction Input:\n{self.action_input}\n"

    def final_text(self) -> str:
        """The model's turn after ``Thought:``: the final answer."""
        return f" {FINAL_THOUGHT}\nFinal Answer: {self.answer}"


def run_code(code: str) -> str:
    """Execute ``code`` and return what it printed, stripped (the value the tool shows)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<episode>", "exec"), {"__name__": "__episode__"})
    return buffer.getvalue().strip()


# --- number helpers -------------------------------------------------------------------------


def _int(rng: random.Random, low: int = 2, high: int = 9999) -> int:
    """An integer whose digit count is uniform, so short and long numbers are equally common."""
    digits = rng.randint(len(str(low)), len(str(high)))
    return rng.randint(max(low, 10 ** (digits - 1)), min(high, 10**digits - 1))


def _numbers(rng: random.Random, low: int = 3, high: int = 8, top: int = 999) -> list[int]:
    return [_int(rng, 1, top) for _ in range(rng.randint(low, high))]


def _spoken_list(values: list[int] | list[str]) -> str:
    """``1, 2, 3 and 4`` or ``1, 2, 3, 4`` (both appear in questions)."""
    text = [str(v) for v in values]
    return ", ".join(text[:-1]) + " and " + text[-1]


def _date(rng: random.Random) -> date:
    return date(2000, 1, 1) + timedelta(days=rng.randint(0, 365 * 40))


# --- question kinds: each returns (question, thought, code) ----------------------------------

Question = tuple[str, str, str]


def _multiply(rng: random.Random) -> Question:
    a, b = _int(rng), _int(rng)
    question = rng.choice(
        [
            f"What is {a} * {b}?",
            f"What is {a} times {b}?",
            f"Compute {a} * {b}.",
            f"Multiply {a} by {b}.",
            f"What is the product of {a} and {b}?",
            f"Calculate {a} x {b}.",
        ]
    )
    return question, "I should multiply the two numbers with Python.", f"print({a} * {b})"


def _add(rng: random.Random) -> Question:
    a, b = _int(rng, 2, 99999), _int(rng, 2, 99999)
    question = rng.choice(
        [
            f"What is {a} + {b}?",
            f"What is {a} plus {b}?",
            f"Add {a} and {b}.",
            f"Compute {a} + {b}.",
        ]
    )
    return question, "I should add the two numbers with Python.", f"print({a} + {b})"


def _subtract(rng: random.Random) -> Question:
    a, b = _int(rng, 2, 99999), _int(rng, 2, 99999)
    question = rng.choice(
        [f"What is {a} - {b}?", f"What is {a} minus {b}?", f"Subtract {b} from {a}."]
    )
    return question, "I should subtract with Python.", f"print({a} - {b})"


def _power(rng: random.Random) -> Question:
    a, b = rng.randint(2, 99), rng.randint(2, 9)
    question = rng.choice(
        [f"What is {a} to the power of {b}?", f"What is {a} ** {b}?", f"Compute {a}^{b}."]
    )
    return question, "I should raise the number to the power with Python.", f"print({a} ** {b})"


def _remainder(rng: random.Random) -> Question:
    a, b = _int(rng, 10, 99999), rng.randint(2, 99)
    question = rng.choice(
        [
            f"What is the remainder when {a} is divided by {b}?",
            f"What is {a} mod {b}?",
            f"Compute {a} % {b}.",
        ]
    )
    return question, "I should compute the remainder with Python.", f"print({a} % {b})"


def _divide(rng: random.Random) -> Question:
    a, b = _int(rng, 10, 99999), rng.randint(2, 99)
    question = rng.choice(
        [
            f"What is {a} divided by {b}, rounded to 2 decimal places?",
            f"Divide {a} by {b} and round to 2 decimals.",
        ]
    )
    return question, "I should divide and round with Python.", f"print(round({a} / {b}, 2))"


def _percent(rng: random.Random) -> Question:
    p, n = rng.randint(1, 99), _int(rng, 10, 9999)
    question = rng.choice([f"What is {p}% of {n}?", f"Compute {p} percent of {n}."])
    return question, "I should compute the percentage with Python.", f"print({n} * {p} / 100)"


def _list_question(
    phrasings: Callable[[str, str], list[str]], thought: str, expression: str
) -> Callable[[random.Random], Question]:
    """A question about a list of numbers, answered by ``print(<expression>)``."""

    def make(rng: random.Random) -> Question:
        numbers = _numbers(rng)
        spoken = _spoken_list(numbers)
        listed = str(numbers)
        question = rng.choice(phrasings(spoken, listed))
        return question, thought, f"numbers = {listed}\nprint({expression})"

    return make


_sum = _list_question(
    lambda s, li: [
        f"Sum the numbers {s}.",
        f"What is the sum of {s}?",
        f"Add up {s}.",
        f"What is the total of {li}?",
    ],
    "I should add up the numbers with Python.",
    "sum(numbers)",
)
_mean = _list_question(
    lambda s, li: [
        f"What is the mean of {s}?",
        f"What is the average of {s}?",
        f"Compute the mean of {li}.",
    ],
    "I should compute the mean with Python.",
    "sum(numbers) / len(numbers)",
)
_max = _list_question(
    lambda s, li: [
        f"What is the largest of {s}?",
        f"What is the maximum of {li}?",
        f"Which is the biggest number among {s}?",
    ],
    "I should find the largest number with Python.",
    "max(numbers)",
)
_min = _list_question(
    lambda s, li: [
        f"What is the smallest of {s}?",
        f"What is the minimum of {li}?",
        f"Which is the smallest number among {s}?",
    ],
    "I should find the smallest number with Python.",
    "min(numbers)",
)
_sort = _list_question(
    lambda s, li: [f"Sort the numbers {s}.", f"Sort {li} in ascending order."],
    "I should sort the list with Python.",
    "sorted(numbers)",
)
_range = _list_question(
    lambda s, li: [
        f"What is the difference between the largest and smallest of {s}?",
        f"What is the range of {li}?",
    ],
    "I should subtract the smallest number from the largest with Python.",
    "max(numbers) - min(numbers)",
)


def _day_difference(rng: random.Random) -> Question:
    first, second = sorted([_date(rng), _date(rng)])
    a, b = first.isoformat(), second.isoformat()
    question = rng.choice(
        [
            f"How many days are there between {a} and {b}?",
            f"How many days are between {a} and {b}?",
            f"Count the days from {a} to {b}.",
            f"What is the number of days between {a} and {b}?",
        ]
    )
    code = (
        "from datetime import date\n"
        f'd1 = date.fromisoformat("{a}")\n'
        f'd2 = date.fromisoformat("{b}")\n'
        "print((d2 - d1).days)"
    )
    return question, "I should subtract the two dates with Python.", code


def _weekday(rng: random.Random) -> Question:
    a = _date(rng).isoformat()
    question = rng.choice(
        [f"What day of the week is {a}?", f"Which weekday was {a}?", f"What weekday is {a}?"]
    )
    code = f'from datetime import date\nprint(date.fromisoformat("{a}").strftime("%A"))'
    return question, "I should look up the weekday with Python.", code


def _add_days(rng: random.Random) -> Question:
    a, n = _date(rng).isoformat(), rng.randint(1, 999)
    question = rng.choice(
        [f"What date is {n} days after {a}?", f"What is the date {n} days after {a}?"]
    )
    code = (
        "from datetime import date, timedelta\n"
        f'print(date.fromisoformat("{a}") + timedelta(days={n}))'
    )
    return question, "I should add the days to the date with Python.", code


KINDS: dict[str, Callable[[random.Random], Question]] = {
    "multiply": _multiply,
    "add": _add,
    "subtract": _subtract,
    "power": _power,
    "remainder": _remainder,
    "divide": _divide,
    "percent": _percent,
    "sum": _sum,
    "mean": _mean,
    "max": _max,
    "min": _min,
    "sort": _sort,
    "range": _range,
    "day_difference": _day_difference,
    "weekday": _weekday,
    "add_days": _add_days,
}


def make_episode(rng: random.Random, kind: str | None = None) -> Episode:
    """One episode of ``kind`` (a random kind when None); the observation comes from running it."""
    if kind is None:
        kind = rng.choice(sorted(KINDS))
    if kind not in KINDS:
        raise ValueError(f"unknown episode kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    question, thought, code = KINDS[kind](rng)
    return Episode(kind, question, thought, code, run_code(code))


def iter_episodes(seed: int, kinds: list[str] | None = None) -> Iterator[Episode]:
    """An endless, reproducible stream of episodes (kinds drawn uniformly)."""
    rng = random.Random(seed)
    names = sorted(kinds or KINDS)
    while True:
        yield make_episode(rng, rng.choice(names))


def generate_episodes(
    n: int, seed: int, *, exclude: frozenset[str] | set[str] = frozenset()
) -> list[Episode]:
    """``n`` distinct-question episodes from ``seed``, skipping questions in ``exclude``."""
    seen = set(exclude)
    episodes: list[Episode] = []
    for episode in iter_episodes(seed):
        if episode.question in seen:
            continue
        seen.add(episode.question)
        episodes.append(episode)
        if len(episodes) == n:
            break
    return episodes


TRAIN_SEED = 1234
HELDOUT_SEED = 98765


def heldout_episodes(n: int = 50) -> list[Episode]:
    """Evaluation questions: a seed training never uses (questions are also checked distinct)."""
    return generate_episodes(n, HELDOUT_SEED)
