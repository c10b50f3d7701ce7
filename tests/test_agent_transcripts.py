"""Replaying Qwen's recorded ReAct runs through the agent with a scripted LLM.

Each recorded model output is queued in a ``ScriptedLLM``; the agent must call the recorded
tools with the recorded arguments, reach the recorded final answers and, where Qwen's prompts
were recorded, send exactly those prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import json5
import pytest

from agent import ActionEvent, Agent, FinalAnswerEvent, Observation
from llm.scripted import ScriptedLLM
from tests.qwen_transcripts import FIXTURES, section
from tools import ToolOutput, tool

CHATML_HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
CHATML_OPEN = "<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class RecordedTool:
    """A tool described exactly as in Qwen's example, answering with the recorded output."""

    name: str
    name_for_human: str
    description: str
    parameters: Any
    output: str = ""
    args_format: str = "json"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def invoke(self, action_input: str) -> ToolOutput:
        self.calls.append(json5.loads(action_input))
        return ToolOutput(text=self.output)


def _final(events) -> FinalAnswerEvent:
    final = events[-1]
    assert isinstance(final, FinalAnswerEvent)
    return final


# ------------------------------------------------------------- react_prompt.md (chat form)


def test_react_prompt_md_run():
    step1 = FIXTURES / "01_react_prompt_md_step1_plan.txt"
    step2 = FIXTURES / "02_react_prompt_md_step2_final.txt"
    param = {"required": True, "schema": {"type": "string"}}
    quark = RecordedTool(
        "quark_search",
        "夸克搜索",
        "夸克搜索是一个通用搜索引擎，可用于访问互联网、查询百科知识、了解时事新闻等。",
        [{"name": "search_query", "description": "搜索关键词或短语", **param}],
    )
    image_gen = RecordedTool(
        "image_gen",
        "通义万相",
        "通义万相是一个AI绘画（图像生成）服务，输入文本描述，返回根据文本作画得到的图片的URL",
        [{"name": "query", "description": "中文关键词，描述了希望图像具有什么内容", **param}],
        output=section(step2, "TOOL RESULT"),
    )
    llm = ScriptedLLM([section(step1, "MODEL OUTPUT"), section(step2, "MODEL OUTPUT")])
    agent = Agent(llm, [quark, image_gen], family="chat")
    result = agent.run("现在给我画个五彩斑斓的黑。")

    assert image_gen.calls == [{"query": "五彩斑斓的黑"}] and quark.calls == []
    recorded_answer = section(step2, "MODEL OUTPUT").split("Final Answer: ", 1)[1]
    assert result.answer == recorded_answer and result.finish_reason == "answer"
    # Both prompts are exactly the ones Qwen's document shows.
    assert llm.prompts == [
        CHATML_HEAD + section(step1, "USER MESSAGE") + CHATML_OPEN,
        CHATML_HEAD + section(step2, "USER MESSAGE") + CHATML_OPEN,
    ]
    assert all(call.stop == ("Observation:", "Observation:\n") for call in llm.calls)


# ------------------------------------------------------------- react_demo.py (completion form)


def _split_response(response: str) -> tuple[list[str], list[str]]:
    """Model outputs and inserted observations of one recorded react_demo turn."""
    outputs, observations = [], []
    rest = response
    while "\nObservation: " in rest:
        before, after = rest.split("\nObservation: ", 1)
        observation, rest = after.split("\nThought:", 1)
        outputs.append(before + "\nObservation:")  # the stop word, as the model wrote it
        observations.append(observation)
    outputs.append(rest)
    return outputs, observations


def test_react_demo_multi_turn_session():
    turns = [
        FIXTURES / "03_react_demo_py_turn1_nihao.txt",
        FIXTURES / "04_react_demo_py_turn2_search_jay_chou.txt",
        FIXTURES / "05_react_demo_py_turn3_search_wife.txt",
        FIXTURES / "06_react_demo_py_turn4_image_gen_cat.txt",
    ]
    searched: list[str] = []
    drawn: list[str] = []
    answers: dict[str, str] = {}

    @tool(name_for_human="谷歌搜索")
    def google_search(search_query: str) -> str:
        """谷歌搜索是一个通用搜索引擎，可用于访问互联网、查询百科知识、了解时事新闻等。

        Args:
            search_query: 搜索关键词或短语
        """
        searched.append(search_query)
        return answers[search_query]

    @tool(name_for_human="文生图")
    def image_gen(prompt: str) -> str:
        """文生图是一个AI绘画（图像生成）服务，输入文本描述，返回根据文本作画得到的图片的URL

        Args:
            prompt: 英文关键词，描述了希望图像具有什么内容
        """
        drawn.append(prompt)
        return answers[prompt]

    llm = ScriptedLLM()
    agent = Agent(llm, [google_search, image_gen])
    recorded_calls = []
    for number, path in enumerate(turns):
        response = section(path, "QWEN'S RESPONSE")
        outputs, observations = _split_response(response)
        for output, observation in zip(outputs, observations):
            action_input = json.loads(output.split("Action Input: ", 1)[1].split("\n")[0])
            (value,) = action_input.values()
            answers[value] = observation
            recorded_calls.append(value)
        llm.enqueue(*outputs)
        calls_before = len(llm.calls)
        result = agent.chat(section(path, "USER QUERY"))

        assert result.answer == response.rsplit("Final Answer: ", 1)[1]
        # The kept transcript is exactly Qwen's recorded response for the turn.
        assert agent.history[-1] == (section(path, "USER QUERY"), response)
        first_prompt = llm.calls[calls_before].prompt
        assert first_prompt.count("Answer the following questions") == 1
        if number == 0:
            assert first_prompt.endswith("Question: 你好" + CHATML_OPEN)
        else:  # the instruction sits in the previous turn's question
            previous_query = section(turns[number - 1], "USER QUERY")
            assert f"Begin!\n\nQuestion: {previous_query}<|im_end|>" in first_prompt
            assert first_prompt.endswith(f"user\n{section(path, 'USER QUERY')}" + CHATML_OPEN)
    assert searched == ["周杰伦", "周杰伦 老婆"]
    assert drawn == ["cute black cat"]
    assert searched + drawn == recorded_calls
    assert llm.remaining == 0


def test_completion_form_reuses_the_prompt_prefix():
    path = FIXTURES / "04_react_demo_py_turn2_search_jay_chou.txt"
    outputs, observations = _split_response(section(path, "QWEN'S RESPONSE"))

    @tool
    def google_search(search_query: str) -> str:
        """Search."""
        return observations[0]

    llm = ScriptedLLM(outputs)
    agent = Agent(llm, [google_search])
    result = agent.run(section(path, "USER QUERY"))
    first, second = llm.prompts
    assert second.startswith(first)
    step2 = result.steps[1].usage
    # Everything but the appended observation comes from the cache.
    assert (
        step2.cached_tokens
        == result.steps[0].usage.prompt_tokens + result.steps[0].usage.completion_tokens
    )
    assert step2.prompt_tokens - step2.cached_tokens < 40


# ------------------------------------------------------------- langchain_tooluse.ipynb (chat form)

NOTEBOOK_TOOLS = {
    "Search": (
        "google search",
        "useful for when you need to answer questions about current events.",
        "search query of google",
    ),
    "Math": (
        "Wolfram Alpha",
        "Useful for when you need to answer questions about Math, Science, Technology, Culture, "
        "Society and Everyday Life.",
        "the problem to solved by Wolfram Alpha",
    ),
    "Arxiv": (
        "arxiv",
        "A wrapper around Arxiv.org Useful for when you need to answer questions about Physics, "
        "Mathematics, Computer Science, Quantitative Biology, Quantitative Finance, Statistics, "
        "Electrical Engineering, and Economics from scientific articles on arxiv.org.",
        "the document id of arxiv to search",
    ),
    "python": (
        "python",
        "A Python shell. Use this to execute python commands. When using this tool, sometimes "
        "output is abbreviated - Make sure it does not look abbreviated before using it in your "
        "answer. Don't add comments to your python code.",
        "a valid python command.",
    ),
}


def _notebook_tools(names: list[str], output: str) -> list[RecordedTool]:
    tools = []
    for name in names:
        human, description, param = NOTEBOOK_TOOLS[name]
        params = [{"name": "query", "type": "string", "description": param, "required": True}]
        tools.append(RecordedTool(name, human, description, params, output=output))
    return tools


@pytest.mark.parametrize(
    ("number", "tool_names", "tool_name", "query_arg"),
    [
        ("07", ["Search"], "Search", "加拿大 2023年人口统计数字"),
        ("08", ["Search", "Math", "Arxiv", "python"], "Search", "加拿大 2022年人口数量"),
        ("09", ["Search", "Math", "Arxiv", "python"], "Math", "2x+5 = -3x + 7"),
        ("10", ["Search", "Math", "Arxiv", "python"], "Arxiv", "1605.08386"),
        ("11", ["Search", "Math", "Arxiv", "python"], "python", "sorted([2, 4135, 523, 2, 3])"),
    ],
)
def test_langchain_notebook_runs(number, tool_names, tool_name, query_arg):
    (path,) = FIXTURES.glob(f"{number}_*.txt")
    prompt = section(path, "PROMPT")
    tools = _notebook_tools(tool_names, section(path, "TOOL OUTPUT"))
    llm = ScriptedLLM([section(path, "MODEL OUTPUT", 0), section(path, "MODEL OUTPUT", 1)])
    agent = Agent(llm, tools, family="chat")
    events = list(agent.stream(prompt.rsplit("\nQuestion: ", 1)[1]))

    assert llm.prompts[0] == CHATML_HEAD + prompt + CHATML_OPEN
    actions = [e for e in events if isinstance(e, ActionEvent)]
    assert [(a.tool, json.loads(a.tool_input)) for a in actions] == [
        (tool_name, {"query": query_arg})
    ]
    called = {t.name: t.calls for t in tools}
    assert called.pop(tool_name) == [{"query": query_arg}]
    assert all(calls == [] for calls in called.values())
    observation = next(e for e in events if isinstance(e, Observation))
    assert observation.text == section(path, "TOOL OUTPUT") and not observation.is_error
    recorded = section(path, "MODEL OUTPUT", 1).split("Final Answer: ", 1)[1]
    assert _final(events).answer == recorded
