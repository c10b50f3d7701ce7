"""The agent on an OpenAI-compatible server: vLLM (or SGLang) serves Qwen-14B-Chat-Int4 on
as many GPUs as it has, the agent and its code interpreter run here.

    vllm serve Qwen/Qwen-14B-Chat-Int4 --trust-remote-code --port 8000
    python examples/openai_backend.py --base-url http://localhost:8000/v1

The same backend from the CLI: ``qwen-react run --base-url http://localhost:8000/v1 "..."``.
"""

from __future__ import annotations

import argparse
import os

from agent import Agent, AgentResult
from agent.cli_render import render_run
from llm.openai_compat import OpenAICompatibleLLM
from llm.types import LLM
from tools import CodeInterpreter

QUESTION = "2的100次方是多少？请用代码计算。"


def main(argv: list[str] | None = None, llm: LLM | None = None) -> AgentResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=llm is None, help="e.g. http://localhost:8000/v1")
    parser.add_argument(
        "--model",
        default="Qwen/Qwen-14B-Chat-Int4",
        help="the model name the server was started with",
    )
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-steps", type=int, default=6)
    args = parser.parse_args(argv)

    # /v1/completions with Qwen's raw ChatML prompt; retries on 429/5xx, clear errors otherwise
    llm = llm or OpenAICompatibleLLM(
        args.base_url, args.model, api_key=os.environ.get("OPENAI_API_KEY")
    )
    with CodeInterpreter() as interpreter:
        agent = Agent(llm, tools=[interpreter], max_steps=args.max_steps)
        return render_run(agent, args.question)


if __name__ == "__main__":
    main()
