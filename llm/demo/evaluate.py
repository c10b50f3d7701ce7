"""The demo model's success rate on held-out questions, through the real agent and tools.

Each question runs through ``Agent`` with the checkpoint loaded by ``load_engine`` and the real
``CodeInterpreter``. An episode succeeds when the model's text was parsed into at least one
``code_interpreter`` call and the final answer equals the value the question's code prints.

    python -m llm.demo.evaluate --n 50
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm.demo import demo_model_dir
from llm.demo.data import TOOL_NAME, Episode, heldout_episodes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeOutcome:
    """One held-out question and what the agent did with it."""

    question: str
    expected: str
    answer: str
    tool_calls: int
    seconds: float

    @property
    def success(self) -> bool:
        return self.tool_calls >= 1 and self.answer.strip() == self.expected


@dataclass
class Report:
    """Success rate over the evaluated questions, with the failures spelled out."""

    outcomes: list[EpisodeOutcome] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(o.success for o in self.outcomes) / max(len(self.outcomes), 1)

    def summary(self) -> dict[str, Any]:
        seconds = [o.seconds for o in self.outcomes]
        return {
            "questions": len(self.outcomes),
            "succeeded": sum(o.success for o in self.outcomes),
            "success_rate": round(self.rate, 4),
            "with_tool_call": sum(o.tool_calls >= 1 for o in self.outcomes),
            "mean_episode_s": round(sum(seconds) / max(len(seconds), 1), 3),
            "max_episode_s": round(max(seconds, default=0.0), 3),
            "failures": [asdict(o) for o in self.outcomes if not o.success],
        }


def run_episode(agent: Any, episode: Episode) -> EpisodeOutcome:
    """Ask ``agent`` the episode's question; count parsed code_interpreter calls."""
    started = time.perf_counter()
    result = agent.run(episode.question)
    calls = sum(1 for step in result.steps if step.tool == TOOL_NAME and step.tool_input)
    return EpisodeOutcome(
        episode.question, episode.answer, result.answer, calls, time.perf_counter() - started
    )


def evaluate(
    model_dir: str | Path | None = None,
    n: int = 50,
    *,
    device: str = "cpu",
    episodes: Iterable[Episode] | None = None,
    max_steps: int = 4,
    engine: Any = None,
) -> Report:
    """Run ``n`` held-out questions (or ``episodes``) through the agent; return the report.

    ``engine``: an already loaded engine (default: ``load_engine(model_dir)`` on ``device``).
    """
    from agent import Agent
    from llm.engine import load_engine
    from tools import CodeInterpreter

    if engine is None:
        engine = load_engine(model_dir or demo_model_dir(), device=device, progress=False)
    report = Report()
    interpreter = CodeInterpreter()
    try:
        agent = Agent(llm=engine, tools=[interpreter], max_steps=max_steps)
        for episode in episodes if episodes is not None else heldout_episodes(n):
            outcome = run_episode(agent, episode)
            log.info(
                "%s %r -> %r",
                "ok  " if outcome.success else "FAIL",
                outcome.question,
                outcome.answer,
            )
            report.outcomes.append(outcome)
    finally:
        close = getattr(interpreter, "close", None)
        if close is not None:
            close()
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: print each outcome, then one JSON line with the rate."""
    parser = argparse.ArgumentParser(prog="python -m llm.demo.evaluate")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = evaluate(args.model_dir, args.n, device=args.device)
    print(json.dumps(report.summary()))


if __name__ == "__main__":
    main()
