"""CodeInterpreter: Action Input parsing (pure) and real runs in a kernel."""

from __future__ import annotations

import pytest
from PIL import Image

from sandbox import ExecutionError, ExecutionResult
from tools.base import ToolLike
from tools.code_interpreter import CodeInterpreter, extract_code, format_observation


@pytest.mark.parametrize(
    ("action_input", "code"),
    [
        ("print(1)", "print(1)"),
        ("  x = 1\nx + 1  \n", "x = 1\nx + 1"),
        ("```py\nprint(1)\n```", "print(1)"),
        ("```python\nimport math\nmath.pi\n```", "import math\nmath.pi"),
        ("```\nprint(2)\n```", "print(2)"),
        ("Here:\n```py\na = 1\n```\nand\n```py\nprint(a)\n```", "a = 1\nprint(a)"),
        ("```py\nprint(3)", "print(3)"),
        ('{"code": "print(1)\\nprint(2)"}', "print(1)\nprint(2)"),
        ("{'code': 'print(4)',}", "print(4)"),
        ('{"code": "```py\\nprint(5)\\n```"}', "print(5)"),
        ("{1: 2}", "{1: 2}"),
        ('{"x": 1}', '{"x": 1}'),
    ],
)
def test_extract_code(action_input, code):
    assert extract_code(action_input) == code


def test_observation_lists_every_part():
    result = ExecutionResult(
        ok=False,
        stdout="out\n",
        stderr="warn\n",
        result="42",
        error=ExecutionError("ValueError", "bad", "Traceback...\nValueError: bad"),
        notice="Execution timed out after 2 s and was interrupted; variables were kept.",
    )
    text = format_observation(result)
    for piece in (
        "stdout:\n```\nout\n```",
        "stderr:\n```\nwarn\n```",
        "execute_result:\n```\n42\n```",
        "ValueError: bad",
        "timed out",
    ):
        assert piece in text
    assert format_observation(ExecutionResult(ok=True)) == "Finished execution."


def test_protocol_fields():
    tool = CodeInterpreter()
    assert isinstance(tool, ToolLike)
    assert tool.name == "code_interpreter" and tool.args_format == "code"
    assert tool.parameters["required"] == ["code"]
    assert tool._sandbox is None  # nothing started before the first call


def test_empty_code_is_an_error_observation():
    out = CodeInterpreter().invoke("```py\n```")
    assert out.is_error and "no code" in out.text


@pytest.fixture(scope="module")
def interpreter():
    with CodeInterpreter(isolation="process", timeout=20) as tool:
        yield tool


def test_runs_fenced_code_and_keeps_state(interpreter):
    first = interpreter.invoke("```py\nvalue = 21\n```")
    assert not first.is_error and first.text == "Finished execution."
    out = interpreter.invoke('{"code": "print(value * 2)"}')
    assert not out.is_error and "stdout:\n```\n42\n```" in out.text


def test_plot_is_attached_and_named(interpreter):
    out = interpreter.invoke(
        "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [1, 2])\nplt.show()"
    )
    assert not out.is_error and len(out.images) == 1
    path = out.images[0]
    assert path.name in out.text
    with Image.open(path) as img:
        assert img.format == "PNG"


def test_error_is_an_error_observation(interpreter):
    out = interpreter.invoke("undefined_name")
    assert out.is_error and "NameError" in out.text and "\x1b" not in out.text


def test_timeout_is_reported(interpreter):
    interpreter.sandbox.timeout = 1
    try:
        out = interpreter.invoke("import time\ntime.sleep(30)")
    finally:
        interpreter.sandbox.timeout = 20
    assert out.is_error and "timed out" in out.text
