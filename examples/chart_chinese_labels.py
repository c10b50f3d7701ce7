"""A bar chart with Chinese labels, drawn by the model's code and saved as a PNG.

The sandbox configures a CJK font for matplotlib, so the title and axis labels render.

    python examples/chart_chinese_labels.py --model ~/models/Qwen-14B-Chat-Int4 --workdir out/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent import Agent, AgentResult
from agent.cli_render import render_run
from llm.types import LLM
from tools import CodeInterpreter

QUESTION = (
    "用柱状图画出2023年四个季度的销售额：一季度120万元，二季度150万元，三季度170万元，"
    "四季度210万元。标题和坐标轴用中文，把图保存为 sales_2023.png。"
)


def main(argv: list[str] | None = None, llm: LLM | None = None) -> AgentResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: $QWEN_REACT_MODEL)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("qwen-react-output"),
        help="where the code runs and the PNG is written",
    )
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args(argv)

    with CodeInterpreter(workdir=args.workdir) as interpreter:
        agent = Agent(
            llm,
            tools=[interpreter],
            model_dir=args.model,
            max_steps=args.max_steps,
            max_new_tokens=args.max_new_tokens,
        )
        result = render_run(agent, QUESTION)
    for png in sorted(args.workdir.glob("*.png")):
        print(f"image: {png}")
    return result


if __name__ == "__main__":
    main()
