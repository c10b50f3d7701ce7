"""The prompts the real ``Agent`` sends for an episode, recorded without a model or a kernel.

A ``ScriptedLLM`` plays the model's two turns and a replay tool stands in for the code
interpreter: it has the real tool's name, description and argument format (so the ReAct
instruction is the one the agent writes at inference) and returns the observation the real
tool shows for the episode's printed value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from llm.demo.data import Episode
from tools.base import ArgsFormat, ToolLike, ToolOutput


@dataclass
class ReplayTool:
    """A tool with another tool's public face that answers with a fixed observation."""

    name: str
    name_for_human: str
    description: str
    parameters: dict[str, Any]
    args_format: ArgsFormat
    observation: str = ""

    @classmethod
    def like(cls, tool: ToolLike, observation: str) -> ReplayTool:
        return cls(
            tool.name,
            tool.name_for_human,
            tool.description,
            tool.parameters,
            tool.args_format,
            observation,
        )

    def invoke(self, action_input: str) -> ToolOutput:
        return ToolOutput(self.observation)


@cache
def interpreter_face() -> ToolLike:
    """The real code interpreter's public face (its kernel is never started here)."""
    from tools.code_interpreter import CodeInterpreter

    real = CodeInterpreter()
    return ReplayTool.like(real, "")


_OTHER_DESCRIPTIONS = (
    "Runs Python code and returns what it prints.",
    "A Python interpreter. Use it for calculations, lists of numbers and dates.",
    "Executes Python 3 code in a Jupyter kernel and shows the output, errors and plots.",
    "Useful for math and data questions: write Python code, print the result.",
    "Python sandbox.",
)


def tool_faces() -> list[ToolLike]:
    """The real code interpreter's face first, then the same tool described differently."""
    real = interpreter_face()
    others = [
        ReplayTool(real.name, real.name_for_human, text, real.parameters, real.args_format)
        for text in _OTHER_DESCRIPTIONS
    ]
    return [real, *others]


def observation_text(episode: Episode) -> str:
    """What the code interpreter shows when the episode's code prints its value."""
    from sandbox import ExecutionResult
    from tools.code_interpreter import format_observation

    return format_observation(ExecutionResult(ok=True, stdout=episode.observation + "\n"))


@cache
def _tokenizer() -> Any:
    from llm.tokenizer import QwenTokenizer

    return QwenTokenizer.default()


def record_prompts(episode: Episode, face: ToolLike | None = None) -> list[str]:
    """The prompts of the agent's model calls when the model answers ``episode`` correctly.

    ``face``: the tool the agent lists (default: the real code interpreter's face).
    """
    from agent import Agent
    from llm.scripted import ScriptedLLM

    llm = ScriptedLLM(
        [episode.action_text() + "Observation:", episode.final_text()], tokenizer=_tokenizer()
    )
    tool = ReplayTool.like(face or interpreter_face(), observation_text(episode))
    result = Agent(llm=llm, tools=[tool], max_steps=3).run(episode.question)
    if result.answer != episode.answer:
        raise RuntimeError(
            f"the agent read the answer {result.answer!r} from the scripted episode "
            f"{episode.question!r}, expected {episode.answer!r}"
        )
    return llm.prompts
