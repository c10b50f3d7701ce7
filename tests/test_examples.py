"""Every example runs end to end: with a scripted model writing Qwen-style ReAct text (the code
interpreter really runs the code it writes), and on the tiny random checkpoint via ``--model``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from agent.events import Observation
from llm.scripted import ScriptedLLM
from llm.tokenizer import QwenTokenizer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FINAL = " I now know the final answer.\nFinal Answer: "
TESTED = {
    "math_code_interpreter",
    "chart_chinese_labels",
    "csv_analysis",
    "custom_plugin",
    "langchain_agent",
    "openai_backend",
}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer() -> QwenTokenizer:
    return QwenTokenizer.default()


def code_action(thought: str, code: str) -> str:
    """The model's turn calling the code interpreter, as Qwen writes it (then the stop word)."""
    return f"Thought: {thought}\nAction: code_interpreter\nAction Input:\n```py\n{code}\n```\nObservation:"


def code_then_answer(tokenizer: QwenTokenizer, thought: str, code: str, answer: str) -> ScriptedLLM:
    """A model that runs ``code`` in the code interpreter, then gives ``answer``."""
    return ScriptedLLM([code_action(thought, code), FINAL + answer], tokenizer=tokenizer)


def observations(result) -> list[Observation]:
    return [e for e in result.events if isinstance(e, Observation)]


def test_every_example_has_a_smoke_test():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == TESTED


def test_math_problem_is_solved_by_running_code(tokenizer, capsys):
    code = "a, b = 1, 1\nfor _ in range(98):\n    a, b = b, a + b\nprint(b)"
    llm = code_then_answer(
        tokenizer,
        "这是斐波那契数列，我用代码迭代计算第100项。",
        code,
        "这个数列的第100项是 354224848179261915075。",
    )
    result = load("math_code_interpreter").main([], llm=llm)
    (obs,) = observations(result)
    assert obs.tool == "code_interpreter" and not obs.is_error
    assert "354224848179261915075" in obs.text  # F(100), OEIS A000045
    assert "354224848179261915075" in llm.prompts[1]  # the model read the output
    assert result.finish_reason == "answer" and "354224848179261915075" in result.answer
    out = capsys.readouterr().out
    for label in ("Thought:", "Action: code_interpreter", "Observation:", "Final Answer:"):
        assert label in out


def test_chart_with_chinese_labels_is_saved_as_png(tokenizer, tmp_path):
    from PIL import Image

    code = (
        "import matplotlib.pyplot as plt\n"
        "quarters = ['一季度', '二季度', '三季度', '四季度']\n"
        "sales = [120, 150, 170, 210]\n"
        "plt.figure(figsize=(6, 4))\n"
        "plt.bar(quarters, sales)\n"
        "plt.title('2023年各季度销售额')\n"
        "plt.xlabel('季度')\n"
        "plt.ylabel('销售额（万元）')\n"
        "plt.savefig('sales_2023.png', dpi=100, bbox_inches='tight')\n"
        "plt.show()"
    )
    llm = code_then_answer(
        tokenizer, "我用 matplotlib 画柱状图并保存。", code, "柱状图已保存为 sales_2023.png。"
    )
    result = load("chart_chinese_labels").main(["--workdir", str(tmp_path)], llm=llm)
    (obs,) = observations(result)
    assert not obs.is_error, obs.text
    assert "Glyph" not in obs.text and "missing from" not in obs.text  # CJK font was found
    png = tmp_path / "sales_2023.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 150
    assert obs.images and all(p.exists() for p in obs.images)  # plt.show() was captured too
    assert result.finish_reason == "answer"


def test_csv_is_analysed_with_pandas(tokenizer, tmp_path):
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('sales.csv')\n"
        "df['revenue'] = df['units'] * df['unit_price']\n"
        "totals = df.groupby('region')['revenue'].sum().sort_values(ascending=False)\n"
        "print(totals.to_string())\n"
        "print('best:', totals.index[0])"
    )
    llm = code_then_answer(
        tokenizer,
        "我先用 pandas 读取文件，按地区汇总销售额。",
        code,
        "各地区总销售额见上，华东最高。",
    )
    result = load("csv_analysis").main(["--workdir", str(tmp_path)], llm=llm)
    (obs,) = observations(result)
    assert not obs.is_error, obs.text
    totals: dict[str, int] = defaultdict(int)
    with (EXAMPLES / "data" / "sales.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            totals[row["region"]] += int(row["units"]) * int(row["unit_price"])
    assert len(totals) == 4
    for region, total in totals.items():
        assert any(region in line and str(total) in line for line in obs.text.splitlines())
    assert f"best: {max(totals, key=totals.__getitem__)}" in obs.text


def test_custom_plugin_tool_is_called_with_validated_arguments(tokenizer):
    module = load("custom_plugin")
    assert module.bmi.parameters["required"] == ["weight_kg", "height_m"]
    llm = ScriptedLLM(
        [
            'Thought: 我应该调用 bmi 工具。\nAction: bmi\nAction Input: {"weight_kg": 70, '
            '"height_m": 1.75}\nObservation:',
            FINAL + "你的BMI约为22.9，属于正常范围。",
        ],
        tokenizer=tokenizer,
    )
    result = module.main([], llm=llm)
    (obs,) = observations(result)
    assert obs.tool == "bmi" and obs.text == f"BMI {70 / 1.75**2:.1f}"
    assert "bmi: Call this tool" in llm.prompts[0]  # listed in Qwen's ReAct instruction
    assert result.finish_reason == "answer"


def test_langchain_chain_tool_calls_and_bridged_tool(tokenizer):
    pytest.importorskip("langchain_core")
    call = 'Thought: 我需要计算乘积。\nAction: multiply\nAction Input: {"a": 37, "b": 91}\nObservation:'
    llm = ScriptedLLM(
        [
            "ReAct 智能体让大模型交替进行推理和调用工具来完成任务。",
            call,
            FINAL + "一共有3367个苹果。",
            call,
            FINAL + "一共有3367个苹果。",
        ],
        tokenizer=tokenizer,
    )
    out = load("langchain_agent").main([], llm=llm)
    assert out["chain"] == "ReAct 智能体让大模型交替进行推理和调用工具来完成任务。"
    assert "用一句话介绍ReAct 智能体。" in llm.prompts[0]
    assert out["tool_calling"] == "一共有3367个苹果。"
    assert f"Observation: {37 * 91}" in llm.prompts[2]  # the ToolMessage went back to the model
    (obs,) = observations(out["agent"])
    assert obs.tool == "multiply" and obs.text == str(37 * 91) and not obs.is_error
    assert llm.remaining == 0


class _Completions(BaseHTTPRequestHandler):
    """A scripted /v1/completions endpoint; records each request body."""

    replies: list[str] = []
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        text = type(self).replies.pop(0)
        payload = json.dumps(
            {
                "object": "text_completion",
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_openai_compatible_backend_against_a_local_server(tmp_path):
    _Completions.replies = [
        # the server stops at "Observation:" and does not return it, as vLLM does
        "Thought: 我用代码计算。\nAction: code_interpreter\nAction Input:\n```py\nprint(2**100)\n```\n",
        FINAL + "2的100次方是1267650600228229401496703205376。",
    ]
    _Completions.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        result = load("openai_backend").main(["--base-url", url, "--model", "qwen-test"])
    finally:
        server.shutdown()
        server.server_close()
    first, second = _Completions.requests
    assert first["path"] == "/v1/completions" and first["model"] == "qwen-test"
    assert "Observation:" in first["stop"] and first["prompt"].endswith("<|im_start|>assistant\n")
    (obs,) = observations(result)
    assert str(2**100) in obs.text and not obs.is_error
    assert str(2**100) in second["prompt"]
    assert result.finish_reason == "answer" and str(2**100) in result.answer


@pytest.mark.parametrize(
    "name",
    ["math_code_interpreter", "chart_chinese_labels", "csv_analysis", "custom_plugin"],
)
def test_examples_load_the_model_given_with_model(name, tiny_model_dir, tmp_path):
    argv = ["--model", str(tiny_model_dir), "--max-steps", "2", "--max-new-tokens", "8"]
    if name in ("chart_chinese_labels", "csv_analysis"):
        argv += ["--workdir", str(tmp_path)]
    result = load(name).main(argv)
    assert result.finish_reason in ("answer", "max_steps")
    assert 1 <= len(result.steps) <= 2
    assert all(s.usage.completion_tokens <= 8 for s in result.steps)


def test_langchain_example_loads_the_model_given_with_model(tiny_model_dir):
    pytest.importorskip("langchain_core")
    out = load("langchain_agent").main(["--model", str(tiny_model_dir), "--max-new-tokens", "8"])
    assert isinstance(out["chain"], str) and isinstance(out["tool_calling"], str)
    assert out["agent"].finish_reason in ("answer", "max_steps")
