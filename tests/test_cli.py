"""The ``qwen-react`` command line: sub-commands, the live event view, errors and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli_render import EventPrinter
from agent.defaults import MODEL_ENV
from agent.events import ActionEvent, FinalAnswerEvent, Observation, Thought
from llm.scripted import ScriptedLLM
from llm.tokenizer import QwenTokenizer

FINAL = " I now know the final answer.\nFinal Answer: "


@pytest.fixture(scope="module")
def tokenizer() -> QwenTokenizer:
    return QwenTokenizer.default()


@pytest.fixture
def no_default_model(tmp_path, monkeypatch):
    """No $QWEN_REACT_MODEL and an empty default location."""
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# -- help and usage errors --------------------------------------------------------------------


def test_help_lists_commands_and_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "chat", "demo", "bench", "make-tiny"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--model",
        "--device",
        "--dtype",
        "--tools",
        "--isolation",
        "--max-steps",
        "--temperature",
        "--top-p",
        "--top-k",
        "--greedy",
        "--seed",
        "--base-url",
    ):
        assert option in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "COMMAND"),
        (["run"], "query"),
        (["run", "--max-steps", "many", "q"], "--max-steps"),
        (["fly"], "fly"),
    ],
)
def test_usage_errors_are_one_line_with_a_hint_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert lines[1].startswith("hint: ") and "--help" in lines[1]


def test_bad_model_path_is_a_config_error_with_a_download_hint(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["run", "--model", str(missing), "hello"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert lines[0].startswith("error: ") and str(missing) in lines[0] and "--model" in lines[0]
    assert lines[1].startswith("hint: ") and "huggingface-cli download" in lines[1]


def test_incomplete_checkpoint_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["run", "--model", str(tmp_path), "hello"]) == 2
    first = error_lines(capsys.readouterr().err)[0]
    assert "qwen.tiktoken" in first and "safetensors" in first


def test_configured_model_env_is_never_replaced_by_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "gone"))
    monkeypatch.setattr("agent.cli_setup.demo_dir", lambda: tmp_path)
    assert main(["run", "hello"]) == 2
    err = capsys.readouterr().err
    assert f"${MODEL_ENV}" in err and "demo model" not in err.splitlines()[0]


def test_no_traceback_in_a_real_process_and_debug_shows_it(tmp_path):
    argv = [sys.executable, "-m", "agent.cli", "run", "--model", str(tmp_path / "x"), "q"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(error_lines(done.stderr)) == 2
    done = subprocess.run([*argv, "--debug"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_option_errors_come_before_the_model_loads(tiny_model_dir, capsys):
    assert main(["run", "--model", str(tiny_model_dir), "--tools", "nope", "q"]) == 2
    err = capsys.readouterr().err
    assert "unknown tool 'nope'" in err and "code_interpreter" in err
    assert "Loading weights" not in err
    assert main(["run", "--model", str(tiny_model_dir), "--top-p", "1.5", "q"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err
    assert main(["run", "--model", str(tiny_model_dir), "--max-steps", "0", "q"]) == 2


# -- make-tiny, run and bench on a tiny checkpoint ----------------------------------------------


def test_make_tiny_writes_a_loadable_checkpoint(tmp_path, capsys):
    target = tmp_path / "tiny"
    assert main(["make-tiny", str(target), "--layers", "1"]) == 0
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "qwen.tiktoken", "model.safetensors.index.json"} <= names
    assert json.loads((target / "config.json").read_text())["num_hidden_layers"] == 1
    assert str(target) in capsys.readouterr().out
    assert main(["make-tiny", str(target)]) == 2  # not empty
    assert "--force" in capsys.readouterr().err
    out = main(
        [
            "run",
            "--model",
            str(target),
            "--device",
            "cpu",
            "--max-steps",
            "1",
            "--max-new-tokens",
            "4",
            "--tools",
            "none",
            "-q",
            "hi",
        ]
    )
    assert out == 0


def test_run_on_the_tiny_checkpoint_exits_cleanly(tiny_model_dir, capsys):
    argv = [
        "run",
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "8",
        "--seed",
        "3",
        "hello",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Final Answer:" in captured.out or "No answer:" in captured.out
    assert "\033[" not in captured.out  # not a terminal: no colour
    assert "Loading weights" in captured.err  # the progress bar
    assert "prompt tokens" in captured.err and "finish:" in captured.err


def test_bench_reports_speeds_and_ends_with_json(tiny_model_dir, capsys):
    bench = ["bench", "--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    argv = [*bench, "--prompt-tokens", "32", "--new-tokens", "8", "--repeats", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["prompt_tokens"] == 32 and report["new_tokens"] == 8
    assert report["decode_tok_s"] > 0 and report["prefill_tok_s"] > 0 and report["ttft_s"] > 0
    assert report["weight_bytes"] > 0 and report["achieved_gb_s"] > 0
    assert any(line.startswith("decode") for line in lines[:-1])
    assert main([*bench, "--prompt-tokens", "9000"]) == 2
    assert "context" in capsys.readouterr().err


# -- the live view with a scripted model --------------------------------------------------------


def test_run_streams_each_step_and_really_runs_the_code(tokenizer, capsys):
    llm = ScriptedLLM(
        [
            "Thought: 用代码计算。\nAction: code_interpreter\nAction Input:\n```py\n"
            "print(3817 * 292)\n```\nObservation:",
            FINAL + "3817 * 292 = 1114564",
        ],
        tokenizer=tokenizer,
    )
    assert main(["run", "--isolation", "process", "What is 3817 * 292?"], llm=llm) == 0
    out = capsys.readouterr().out
    labels = [
        "Thought: 用代码计算。",
        "Action: code_interpreter",
        "Action Input:",
        "Observation:",
        str(3817 * 292),
        "Final Answer: 3817 * 292 = 1114564",
    ]
    positions = [out.index(label) for label in labels]
    assert positions == sorted(positions)


def test_sampling_options_reach_the_model(tokenizer):
    llm = ScriptedLLM(
        ["Thought: x\nFinal Answer: a", "Thought: x\nFinal Answer: b"], tokenizer=tokenizer
    )
    assert (
        main(
            [
                "run",
                "-q",
                "--tools",
                "none",
                "--temperature",
                "0.7",
                "--top-k",
                "5",
                "--seed",
                "11",
                "q",
            ],
            llm=llm,
        )
        == 0
    )
    sampling = llm.calls[0].sampling
    assert sampling.do_sample and sampling.temperature == 0.7 and sampling.top_k == 5
    assert sampling.seed == 11
    assert main(["run", "-q", "--greedy", "--max-new-tokens", "33", "q"], llm=llm) == 0
    assert not llm.calls[1].sampling.do_sample and llm.calls[1].max_new_tokens <= 33


def test_runtime_failure_is_one_line_exit_1_and_debug_raises(tokenizer, capsys):
    assert main(["run", "--tools", "none", "q"], llm=ScriptedLLM([], tokenizer=tokenizer)) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines[0].startswith("error: ScriptExhaustedError")
    assert lines[1] == "hint: run again with --debug for the traceback"
    with pytest.raises(RuntimeError):
        main(["run", "--debug", "--tools", "none", "q"], llm=ScriptedLLM([], tokenizer=tokenizer))


def test_chat_keeps_history_until_reset(tokenizer, monkeypatch, capsys):
    llm = ScriptedLLM(
        [
            "你好，小明",  # without tools the model answers in plain text
            "你叫小明。",
            "我不知道。",
        ],
        tokenizer=tokenizer,
    )
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("我叫小明\n我叫什么？\n/reset\n我叫什么？\n/exit\n")
    )
    assert main(["chat", "--tools", "none"], llm=llm) == 0
    first, second, third = llm.prompts
    assert "我叫小明" in second and "你好，小明" in second
    assert "我叫小明" not in third
    out = capsys.readouterr().out
    assert out.count("Final Answer:") == 3 and "Final Answer: 你叫小明。" in out


def test_printer_colours_only_terminals(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    events = [
        Thought(1, "t"),
        ActionEvent(1, "calc", "{}"),
        Observation(1, "calc", "1"),
        FinalAnswerEvent(2, "done"),
    ]
    monkeypatch.delenv("NO_COLOR", raising=False)
    for stream, coloured in ((io.StringIO(), False), (Terminal(), True)):
        printer = EventPrinter(stream)
        for event in events:
            printer.handle(event)
        assert ("\033[" in stream.getvalue()) is coloured
        assert "Final Answer:" in stream.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    stream = Terminal()
    EventPrinter(stream).handle(events[0])
    assert "\033[" not in stream.getvalue()


# -- the demo model -----------------------------------------------------------------------------


def test_run_without_a_model_falls_back_to_the_demo_with_a_banner(
    tiny_model_dir, no_default_model, monkeypatch, capsys
):
    monkeypatch.setattr("agent.cli_setup.demo_dir", lambda: tiny_model_dir)
    assert main(["run", "--max-steps", "1", "--max-new-tokens", "4", "--tools", "none", "hi"]) == 0
    err = capsys.readouterr().err
    assert "demo model" in err and "not Qwen-14B" in err


def test_run_without_any_model_explains_how_to_get_one(no_default_model, monkeypatch, capsys):
    monkeypatch.setattr("agent.cli_setup.demo_dir", lambda: None)
    assert main(["run", "hi"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert "Qwen-14B-Chat-Int4 not found" in lines[0] and "huggingface-cli" in lines[1]


def _demo_installed() -> bool:
    from agent.cli_setup import demo_dir

    return demo_dir() is not None


@pytest.mark.skipif(not _demo_installed(), reason="the demo checkpoint is not in this checkout")
def test_demo_answers_its_default_question(capsys):
    assert main(["demo", "--isolation", "process"]) == 0
    captured = capsys.readouterr()
    assert "Action: code_interpreter" in captured.out
    assert f"Final Answer: {3817 * 292}" in captured.out
    assert "not Qwen-14B" in captured.err


def test_demo_without_its_checkpoint_is_a_config_error(monkeypatch, capsys):
    monkeypatch.setattr("agent.cli_setup.demo_dir", lambda: None)
    monkeypatch.setattr("agent.cli.demo_dir", lambda: None)
    assert main(["demo"]) == 2
    assert "demo model checkpoint is not installed" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "qwen-react"
    if not script.exists():
        pytest.skip("qwen-react is not installed in this environment")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "make-tiny" in done.stdout


def test_tools_option_lists_the_chosen_tools_in_the_prompt(tokenizer):
    llm = ScriptedLLM(["Thought: x\nFinal Answer: ok"], tokenizer=tokenizer)
    argv = ["run", "-q", "--tools", "http_get,code_interpreter", "--http-allow", "example.com", "q"]
    assert main(argv, llm=llm) == 0
    prompt = llm.prompts[0]
    assert "http_get: Call this tool" in prompt and "code_interpreter: Call this tool" in prompt
