"""The README's two set-up commands are the ones CI runs, and the main job works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli_setup import demo_dir
from agent.defaults import MODEL_ENV

ROOT = Path(__file__).resolve().parents[1]
SETUP = "bash .ci/setup && "


def readme_commands() -> tuple[str, str]:
    """The test command and the main-job command from the README's set-up block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    commands = [line for line in lines if line.startswith(SETUP)]
    assert len(commands) == 2, commands
    return commands[0], commands[1]


def test_ci_runs_exactly_the_readme_test_command():
    test_command, _ = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in [line.strip() for line in ci_lines]


@pytest.mark.slow
@pytest.mark.skipif(demo_dir() is None, reason="the demo checkpoint is not in this checkout")
def test_main_job_answers_with_the_demo_model_within_a_minute(tmp_path):
    _, main_job = readme_commands()
    match = re.fullmatch(r'bash \.ci/setup && \.venv/bin/qwen-react run "([^"]+)"', main_job)
    assert match, main_job
    question = match.group(1)
    a, b = (int(n) for n in re.findall(r"\d+", question))
    env = {k: v for k, v in os.environ.items() if k != MODEL_ENV}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # no real model at the default location
    argv = [sys.executable, "-m", "agent.cli", "run", question]
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demo model" in done.stderr and "not Qwen-14B" in done.stderr
    assert "Action: code_interpreter" in done.stdout
    assert f"Final Answer: {a * b}" in done.stdout, done.stdout
    assert elapsed < 60
