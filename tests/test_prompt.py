"""Qwen's ReAct prompt, byte for byte against Qwen's published prompts and templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.prompt import (
    build_prompt,
    react_instruction,
    scratchpad_text,
    tool_description,
    transcript,
    with_question,
)
from tests.qwen_transcripts import FIXTURES, section
from tools import tool

CHATML_HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
CHATML_OPEN = "<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Plugin:
    """A tool description as Qwen's examples write them (parameters in list form)."""

    name: str
    name_for_human: str
    description: str
    parameters: Any
    args_format: str = "json"
    calls: list[str] = field(default_factory=list)

    def invoke(self, action_input: str):  # pragma: no cover - not called here
        raise NotImplementedError


def _param(name: str, description: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "description": description, "required": True, "schema": {"type": "string"}}
    ]


QUARK = Plugin(
    "quark_search",
    "夸克搜索",
    "夸克搜索是一个通用搜索引擎，可用于访问互联网、查询百科知识、了解时事新闻等。",
    _param("search_query", "搜索关键词或短语"),
)
IMAGE_GEN = Plugin(
    "image_gen",
    "通义万相",
    "通义万相是一个AI绘画（图像生成）服务，输入文本描述，返回根据文本作画得到的图片的URL",
    _param("query", "中文关键词，描述了希望图像具有什么内容"),
)


def _langchain_tool(name: str, human: str, description: str, param_description: str) -> Plugin:
    params = [
        {"name": "query", "type": "string", "description": param_description, "required": True}
    ]
    return Plugin(name, human, description, params)


NOTEBOOK_TOOLS = [
    _langchain_tool(
        "Search",
        "google search",
        "useful for when you need to answer questions about current events.",
        "search query of google",
    ),
    _langchain_tool(
        "Math",
        "Wolfram Alpha",
        "Useful for when you need to answer questions about Math, Science, Technology, Culture, "
        "Society and Everyday Life.",
        "the problem to solved by Wolfram Alpha",
    ),
    _langchain_tool(
        "Arxiv",
        "arxiv",
        "A wrapper around Arxiv.org Useful for when you need to answer questions about Physics, "
        "Mathematics, Computer Science, Quantitative Biology, Quantitative Finance, Statistics, "
        "Electrical Engineering, and Economics from scientific articles on arxiv.org.",
        "the document id of arxiv to search",
    ),
    _langchain_tool(
        "python",
        "python",
        "A Python shell. Use this to execute python commands. When using this tool, sometimes "
        "output is abbreviated - Make sure it does not look abbreviated before using it in your "
        "answer. Don't add comments to your python code.",
        "a valid python command.",
    ),
]


# ------------------------------------------------------------------ chat form (Family A)


def test_chat_form_matches_react_prompt_md_step1():
    fixture = FIXTURES / "01_react_prompt_md_step1_plan.txt"
    user_message = section(fixture, "USER MESSAGE")
    instruction = react_instruction([QUARK, IMAGE_GEN], "chat")
    query = "现在给我画个五彩斑斓的黑。"
    assert with_question(instruction, query) == user_message
    prompt = build_prompt(query, instruction=instruction, family="chat")
    assert prompt == CHATML_HEAD + user_message + CHATML_OPEN


def test_chat_form_matches_react_prompt_md_step2():
    step1 = FIXTURES / "01_react_prompt_md_step1_plan.txt"
    step2 = FIXTURES / "02_react_prompt_md_step2_final.txt"
    instruction = react_instruction([QUARK, IMAGE_GEN], "chat")
    steps = [(section(step1, "MODEL OUTPUT"), section(step2, "TOOL RESULT"))]
    prompt = build_prompt(
        "现在给我画个五彩斑斓的黑。", instruction=instruction, steps=steps, family="chat"
    )
    assert prompt == CHATML_HEAD + section(step2, "USER MESSAGE") + CHATML_OPEN


@pytest.mark.parametrize("number", ["08", "09", "10", "11"])
def test_chat_form_matches_the_langchain_notebook_prompts(number):
    (fixture,) = FIXTURES.glob(f"{number}_*.txt")
    user_message = section(fixture, "PROMPT")
    query = user_message.rsplit("\nQuestion: ", 1)[1]
    assert with_question(react_instruction(NOTEBOOK_TOOLS, "chat"), query) == user_message


# ------------------------------------------------------------------ completion form (Family B)

# Qwen's openai_api.py REACT_INSTRUCTION and TOOL_DESC, typed out from the reference notes,
# with react_demo.py's JSON hint after each tool.
EXPECTED_WEATHER_INSTRUCTION = (
    "Answer the following questions as best you can. You have access to the following APIs:\n\n"
    "get_current_weather: Call this tool to interact with the Weather API. What is the Weather "
    "API useful for? Get the current weather in a given location. Parameters: "
    '{"type": "object", "properties": {"location": {"description": "The city and state, e.g. San '
    'Francisco, CA", "type": "string"}}, "required": ["location"]} Format the arguments as a '
    "JSON object.\n\n"
    "run_code: Call this tool to interact with the run_code API. What is the run_code API useful "
    'for? Run Python code. Parameters: {"type": "object", "properties": {"code": {"type": '
    '"string"}}, "required": ["code"]} Enclose the code within triple backticks (`) at the '
    "beginning and end of the code.\n\n"
    "Use the following format:\n\n"
    "Question: the input question you must answer\n"
    "Thought: you should always think about what to do\n"
    "Action: the action to take, should be one of [get_current_weather, run_code]\n"
    "Action Input: the input to the action\n"
    "Observation: the result of the action\n"
    "... (this Thought/Action/Action Input/Observation can be repeated zero or more times)\n"
    "Thought: I now know the final answer\n"
    "Final Answer: the final answer to the original input question\n\n"
    "Begin!"
)


@tool(name_for_human="Weather")
def get_current_weather(location: str) -> str:
    """Get the current weather in a given location.

    Args:
        location: The city and state, e.g. San Francisco, CA
    """
    return "sunny"


@tool(args_format="code")
def run_code(code: str) -> str:
    """Run Python code."""
    return code


def test_completion_form_instruction_bytes():
    instruction = react_instruction([get_current_weather, run_code])
    assert instruction == EXPECTED_WEATHER_INSTRUCTION
    assert tool_description(run_code).endswith("at the beginning and end of the code.")


def test_completion_form_leaves_the_assistant_turn_open_and_appends_observations():
    instruction = react_instruction([get_current_weather])
    query = "波士顿天气如何？"
    first = build_prompt(query, instruction=instruction)
    assert first == CHATML_HEAD + with_question(instruction, query) + CHATML_OPEN
    log1 = 'Thought: 查天气\nAction: get_current_weather\nAction Input: {"location": "Boston"}'
    second = build_prompt(query, instruction=instruction, steps=[(log1, "sunny, 20C")])
    assert second == first + log1 + "\nObservation: sunny, 20C\nThought:"
    log2 = " more\nAction: get_current_weather\nAction Input: Paris"
    third = build_prompt(
        query, instruction=instruction, steps=[(log1, "sunny, 20C"), (log2, "rain")]
    )
    # Each step only extends the text: the engine reuses the cached prefix.
    assert third == second + log2 + "\nObservation: rain\nThought:"
    assert "<|im_end|>" not in third[len(first) - len(CHATML_OPEN) + len("<|im_end|>") :]


def test_history_rule_follows_react_demo():
    """Turn 2 of react_demo.py: the instruction moves to the previous turn's question."""
    instruction = react_instruction([get_current_weather])
    turn1 = FIXTURES / "03_react_demo_py_turn1_nihao.txt"
    response1 = section(turn1, "QWEN'S RESPONSE")
    history = [(section(turn1, "USER QUERY"), response1)]
    turn2_query = section(FIXTURES / "04_react_demo_py_turn2_search_jay_chou.txt", "USER QUERY")
    prompt = build_prompt(turn2_query, instruction=instruction, history=history)
    expected = (
        CHATML_HEAD
        + with_question(instruction, "你好")
        + "<|im_end|>\n<|im_start|>assistant\n"
        + response1
        + "<|im_end|>\n<|im_start|>user\n"
        + turn2_query
        + CHATML_OPEN
    )
    assert prompt == expected
    # Turn 1's prompt is a prefix of turn 2's: the KV cache carries over between turns.
    turn1_prompt = build_prompt("你好", instruction=instruction)
    assert prompt.startswith(turn1_prompt)


def test_history_rule_with_two_past_turns_and_stripping():
    instruction = "INSTRUCTION"
    history = [("\nq1 \n", "\n\nr1\n"), ("q2", "r2  ")]
    prompt = build_prompt("\nq3\n", instruction=instruction, history=history, system="sys")
    assert prompt == (
        "<|im_start|>system\nsys<|im_end|>\n"
        "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\nr1<|im_end|>\n"
        "<|im_start|>user\nINSTRUCTION\n\nQuestion: q2<|im_end|>\n"
        "<|im_start|>assistant\nr2<|im_end|>\n"
        "<|im_start|>user\nq3<|im_end|>\n<|im_start|>assistant\n"
    )


def test_transcripts_match_the_recorded_turns():
    turn2 = section(FIXTURES / "04_react_demo_py_turn2_search_jay_chou.txt", "QWEN'S RESPONSE")
    log = 'Thought: 我应该使用Google搜索查找相关信息。\nAction: google_search\nAction Input: {"search_query": "周杰伦"}'
    obs = (
        "Jay Chou is a Taiwanese singer, songwriter, record producer, rapper, actor, "
        "television personality, and businessman."
    )
    final = turn2.split("\nThought:", 1)[1]
    assert transcript([(log, obs)], final) == turn2
    assert transcript([(log, obs)], "Thought: x\nFinal Answer: y", "chat") == turn2.split(
        "\nThought:"
    )[0] + ("\nThought: x\nFinal Answer: y")
    assert scratchpad_text([(log, obs)], "chat") == "\n" + log + "\nObservation: " + obs


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="prompt family"):
        react_instruction([get_current_weather], "openai")  # type: ignore[arg-type]
