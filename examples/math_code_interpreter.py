"""A math problem solved by running code: the model writes Python, the sandbox runs it.

python examples/math_code_interpreter.py --model ~/models/Qwen-14B-Chat-Int4
python examples/math_code_interpreter.py --question "What is the sum of the primes below 10000?"
"""

from __future__ import annotations

import argparse

from agent import Agent, AgentResult
from agent.cli_render import render_run
from llm.types import LLM
from tools import CodeInterpreter

QUESTION = "一个数列的前两项都是1，从第三项起每一项都等于前两项之和。这个数列的第100项是多少？"


def main(argv: list[str] | None = None, llm: LLM | None = None) -> AgentResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: $QWEN_REACT_MODEL)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args(argv)

    with CodeInterpreter() as interpreter:  # a sandboxed Jupyter kernel, started on first use
        agent = Agent(
            llm,  # None: the local engine on --model
            tools=[interpreter],
            model_dir=args.model,
            max_steps=args.max_steps,
            max_new_tokens=args.max_new_tokens,
        )
        return render_run(agent, args.question)  # prints each step as it happens


if __name__ == "__main__":
    main()
