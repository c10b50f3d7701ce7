"""parse_react on the shapes of text Qwen writes, and on text it should survive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import Action, FinalAnswer, ParseError, parse_react

# Step 1 of Qwen's react_prompt.md (fixture 01), with the stop word the engine may leave on.
QWEN_STEP = (
    "Thought: 我应该使用通义万相API来生成一张五彩斑斓的黑的图片。\n"
    "Action: image_gen\n"
    'Action Input: {"query": "五彩斑斓的黑"}'
)


def test_qwen_action_with_and_without_the_stop_word():
    expected = Action(
        tool="image_gen",
        tool_input='{"query": "五彩斑斓的黑"}',
        thought="我应该使用通义万相API来生成一张五彩斑斓的黑的图片。",
    )
    for text in (
        QWEN_STEP,
        QWEN_STEP + "\n",
        QWEN_STEP + "\nObservation:",
        QWEN_STEP + "\nObservation:\n",
    ):
        step = parse_react(text)
        assert step == expected
        assert step.log == QWEN_STEP  # what goes back into the prompt, without the stop word


def test_final_answer_after_an_observation():
    # After "\nThought:" the model continues with the thought itself (no prefix).
    step = parse_react(" I now know the final answer.\nFinal Answer: x = 2/5")
    assert step == FinalAnswer(answer="x = 2/5", thought="I now know the final answer.")


def test_final_answer_without_tools_keeps_multiline_answers():
    text = (
        "Thought: 提供的工具对回答该问题帮助较小，我将不使用工具直接作答。\n"
        "Final Answer: 第一行\n\n- 第二行\n```python\nprint('Action: no')\n```"
    )
    step = parse_react(text)
    assert isinstance(step, FinalAnswer)
    assert step.answer == "第一行\n\n- 第二行\n```python\nprint('Action: no')\n```"
    assert step.thought.startswith("提供的工具")


def test_missing_thought_keyword():
    step = parse_react('I should search.\nAction: search\nAction Input: {"q": "x"}')
    assert step == Action("search", '{"q": "x"}', "I should search.")
    assert parse_react('Action: search\nAction Input: {"q": "x"}') == Action("search", '{"q": "x"}')


def test_full_width_colons_bold_and_case():
    assert parse_react("Thought：想\nAction：search\nAction Input：周杰伦") == Action(
        "search", "周杰伦", "想"
    )
    assert parse_react("**Thought:** t\n**Action:** `search`\n**Action Input:** x") == Action(
        "search", "x", "t"
    )
    assert parse_react("thought: t\naction: search\naction input: x") == Action("search", "x", "t")
    assert parse_react("Final answer： 好") == FinalAnswer("好")


def test_fenced_code_input_is_kept_whole():
    code = "```py\nfor i in range(3):\n    print('Observation: %d' % i)\nFinal Answer: fake\n```"
    step = parse_react(
        f"Thought: run it\nAction: code_interpreter\nAction Input: {code}\nObservation:"
    )
    assert step == Action("code_interpreter", code, "run it")
    step = parse_react(f"Thought: run it\nAction: code_interpreter\nAction Input:\n{code}")
    assert step == Action("code_interpreter", code, "run it")


def test_whole_completion_in_a_fence():
    step = parse_react("```\nThought: t\nAction: search\nAction Input: x\n```")
    assert step == Action("search", "x", "t")


def test_hallucinated_observation_is_ignored():
    text = (
        "Thought: look it up\nAction: search\nAction Input: 周杰伦 老婆\n"
        "Observation: Hannah Quinlivan (made up)\nThought: I now know the final answer.\n"
        "Final Answer: Hannah"
    )
    step = parse_react(text)
    assert step == Action("search", "周杰伦 老婆", "look it up")
    assert "made up" not in step.log and "Final Answer" not in step.log


def test_final_answer_first_wins_over_a_later_action():
    step = parse_react("Thought: t\nFinal Answer: 42\nAction: search\nAction Input: x")
    assert step == FinalAnswer("42", "t")


def test_text_after_the_final_answer_is_dropped():
    step = parse_react("Final Answer: 42\nObservation: none\nQuestion: and now?\nThought: hmm")
    assert step == FinalAnswer("42")
    step = parse_react("Final Answer: 42<|im_end|>\n<|im_start|>user\nmore")
    assert step == FinalAnswer("42")


def test_final_answer_on_the_thought_line():
    step = parse_react("Thought: I now know the final answer. Final Answer: 42")
    assert step == FinalAnswer("42", "I now know the final answer.")


def test_action_without_action_input_and_input_on_following_lines():
    assert parse_react("Thought: t\nAction: search") == Action("search", "", "t")
    assert parse_react('Action: search\n{"q": "x"}') == Action("search", '{"q": "x"}')


def test_action_name_is_cleaned():
    for line in ("search", "`search`", "search.", "[search]", '"search"', "search  "):
        assert parse_react(f"Action: {line}\nAction Input: x").tool == "search"


def test_errors_explain_what_to_do():
    empty = parse_react("")
    assert isinstance(empty, ParseError) and "empty" in empty.message
    assert isinstance(parse_react("  \n "), ParseError)
    none = parse_react("你好！很高兴见到你。")
    assert isinstance(none, ParseError)
    assert "Action:" in none.message and "Final Answer:" in none.message
    assert none.log == "你好！很高兴见到你。"
    nameless = parse_react("Thought: t\nAction:\nAction Input: x")
    assert isinstance(nameless, ParseError) and "name of one tool" in nameless.message
    blank_answer = parse_react("Final Answer:   ")
    assert isinstance(blank_answer, ParseError)
    invented_only = parse_react("Thought: t\nObservation: made up\nThought: more")
    assert isinstance(invented_only, ParseError) and invented_only.log == "Thought: t"
    assert isinstance(parse_react(None), ParseError)  # type: ignore[arg-type]


def test_long_completion():
    filler = "blah " * 2000
    step = parse_react(f"Thought: {filler}\nAction: search\nAction Input: x")
    assert step == Action("search", "x", filler.strip())
    assert isinstance(parse_react("x" * 10_000), ParseError)


KEYWORDS = st.sampled_from(
    [
        "Thought: ",
        "Action: ",
        "Action Input: ",
        "Observation: ",
        "Final Answer: ",
        "```",
        "\n",
        "：",
        "<|im_end|>",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(KEYWORDS, st.text(max_size=12)), max_size=20))
def test_never_raises(parts):
    step = parse_react("".join(parts))
    assert isinstance(step, (Action, FinalAnswer, ParseError))
    if isinstance(step, Action):
        assert step.tool and step.tool == step.tool.strip()
    if isinstance(step, FinalAnswer):
        assert step.answer
