"""Qwen from LangChain: a chain, a tool-calling loop with ``ChatQwen.bind_tools``, and a
LangChain tool handed to our ``Agent``. Needs the ``[langchain]`` extra.

    python examples/langchain_agent.py --model ~/models/Qwen-14B-Chat-Int4

``ChatQwen(base_url="http://localhost:8000/v1")`` uses an OpenAI-compatible server instead.
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from agent import Agent
from agent.cli_render import render_run
from agent.defaults import load_default_llm
from llm.langchain import ChatQwen
from llm.types import LLM
from tools.langchain_bridge import from_langchain

QUESTION = "一箱苹果有37个，仓库里有91箱，一共有多少个苹果？"


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def tool_calling_loop(chat: ChatQwen, question: str, max_rounds: int = 4) -> str:
    """The LangChain way: the model proposes tool calls, we run them and send the results."""
    model = chat.bind_tools([multiply])
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(max_rounds):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return str(reply.content)
        for call in reply.tool_calls:
            result = multiply.invoke(call["args"])
            messages.append(ToolMessage(str(result), tool_call_id=call["id"]))
    return f"(no answer after {max_rounds} rounds)"


def main(argv: list[str] | None = None, llm: LLM | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: $QWEN_REACT_MODEL)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args(argv)

    backend = llm or load_default_llm(args.model)  # one engine, shared by all three parts
    chat = ChatQwen(backend=backend, temperature=0, max_tokens=args.max_new_tokens)

    prompt = ChatPromptTemplate.from_messages([("user", "用一句话介绍{topic}。")])
    summary = (prompt | chat | StrOutputParser()).invoke({"topic": "ReAct 智能体"})
    print(f"chain: {summary}")

    answer = tool_calling_loop(chat, QUESTION)
    print(f"bind_tools loop: {answer}")

    agent = Agent(backend, tools=[from_langchain(multiply)], max_new_tokens=args.max_new_tokens)
    result = render_run(agent, QUESTION)
    return {"chain": summary, "tool_calling": answer, "agent": result}


if __name__ == "__main__":
    main()
