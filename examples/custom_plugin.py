"""A custom tool in a few lines: a typed function with a docstring becomes a tool.

``@tool`` derives the name, the description and the JSON schema of the arguments from the
function; the agent lists it in Qwen's ReAct prompt and validates the model's Action Input.
To ship it as a plugin that ``ToolRegistry.from_entry_points()`` (and ``qwen-react run
--tools bmi``) finds, declare it in your package's pyproject.toml:

    [project.entry-points."qwen_react.tools"]
    bmi = "my_package.health:bmi"

    python examples/custom_plugin.py --model ~/models/Qwen-14B-Chat-Int4
"""

from __future__ import annotations

import argparse

from agent import Agent, AgentResult
from agent.cli_render import render_run
from llm.types import LLM
from tools import tool


@tool
def bmi(weight_kg: float, height_m: float) -> str:
    """Body-mass index (BMI) from body weight and height.

    Args:
        weight_kg: body weight in kilograms
        height_m: height in metres
    """
    return f"BMI {weight_kg / height_m**2:.1f}"


QUESTION = "我身高1.75米，体重70公斤，我的BMI是多少？"


def main(argv: list[str] | None = None, llm: LLM | None = None) -> AgentResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: $QWEN_REACT_MODEL)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args(argv)

    agent = Agent(
        llm,
        tools=[bmi],
        model_dir=args.model,
        max_steps=args.max_steps,
        max_new_tokens=args.max_new_tokens,
    )
    return render_run(agent, args.question)


if __name__ == "__main__":
    main()
