"""Analysing a CSV file with pandas: the file is put in the sandbox's work dir, the model
writes the pandas code, the code interpreter runs it and the model reads the numbers.

    python examples/csv_analysis.py --model ~/models/Qwen-14B-Chat-Int4
    python examples/csv_analysis.py --csv my.csv --question "Which month sold the most units?"
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from agent import Agent, AgentResult
from agent.cli_render import render_run
from llm.types import LLM
from tools import CodeInterpreter

SALES_CSV = Path(__file__).resolve().parent / "data" / "sales.csv"
QUESTION = (
    "文件 {name} 是一家公司的销售记录（列：date, region, product, units, unit_price）。"
    "请计算每个地区的总销售额（units × unit_price），哪个地区最高？"
)


def main(argv: list[str] | None = None, llm: LLM | None = None) -> AgentResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: $QWEN_REACT_MODEL)")
    parser.add_argument("--csv", type=Path, default=SALES_CSV)
    parser.add_argument("--question", help="default: total revenue per region")
    parser.add_argument("--workdir", type=Path, default=Path("qwen-react-output"))
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.csv, args.workdir / args.csv.name)  # the code runs in the work dir
    question = args.question or QUESTION.format(name=args.csv.name)
    with CodeInterpreter(workdir=args.workdir) as interpreter:
        agent = Agent(
            llm,
            tools=[interpreter],
            model_dir=args.model,
            max_steps=args.max_steps,
            max_new_tokens=args.max_new_tokens,
        )
        return render_run(agent, question)


if __name__ == "__main__":
    main()
