"""The code interpreter tool: the model's Python runs in a sandboxed Jupyter kernel."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import json5

from sandbox import ExecutionResult, KernelSandbox
from tools.base import ArgsFormat, ToolOutput

log = logging.getLogger(__name__)

_FENCE = re.compile(
    r"```[ \t]*(?:py|python|python3|ipython)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE
)


def extract_code(action_input: str) -> str:
    """The Python code in an Action Input written as raw code, a fenced block or JSON.

    JSON: ``{"code": "..."}`` (also json5, as models write it). Fenced: every ```py / ```python
    / ``` block, joined in order. Anything else is taken as code, trimmed.
    """
    text = action_input.strip()
    if text.startswith("{"):
        code = _code_from_json(text)
        if code is not None:
            return extract_code(code) if "```" in code else code.strip("\n")
    blocks = _FENCE.findall(text)
    if blocks:
        return "\n".join(block.strip("\n") for block in blocks)
    return text


def _code_from_json(text: str) -> str | None:
    for loads in (json.loads, json5.loads):
        try:
            value = loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            return value["code"]
        return None
    return None


def format_observation(result: ExecutionResult, *, workdir: Path | None = None) -> str:
    """The observation text the model reads for one execution."""
    parts: list[str] = []
    if result.stdout:
        parts.append(f"stdout:\n```\n{result.stdout.rstrip()}\n```")
    if result.stderr:
        parts.append(f"stderr:\n```\n{result.stderr.rstrip()}\n```")
    if result.result:
        parts.append(f"execute_result:\n```\n{result.result.rstrip()}\n```")
    if result.error is not None:
        detail = result.error.traceback or f"{result.error.name}: {result.error.value}"
        parts.append(f"error:\n```\n{detail.rstrip()}\n```")
    for path in result.images:
        name = (
            path.name
            if workdir is None or not path.is_relative_to(workdir)
            else str(path.relative_to(workdir))
        )
        parts.append(f"![{path.stem}]({name})")
    if result.notice:
        parts.append(result.notice)
    return "\n\n".join(parts) if parts else "Finished execution."


class CodeInterpreter:
    """Runs Python in a persistent, sandboxed Jupyter kernel (started on first use).

    Variables, imports and files in the work dir persist between calls; plots shown with
    matplotlib are saved as PNG files and attached to the output.
    """

    name: str = "code_interpreter"
    name_for_human: str = "code interpreter"
    description: str = (
        "Python code sandbox: runs Python code in a persistent Jupyter kernel and returns what it "
        "prints, the value of the last expression, any error, and the images of plots it shows. "
        "Variables and files in the working directory are kept between calls; there is no network."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python code to run"}},
        "required": ["code"],
    }
    args_format: ArgsFormat = "code"

    def __init__(
        self,
        sandbox: KernelSandbox | None = None,
        *,
        workdir: str | Path | None = None,
        timeout: float = 30.0,
        isolation: str = "auto",
        **sandbox_kwargs: Any,
    ) -> None:
        self._sandbox = sandbox
        self._owns_sandbox = sandbox is None
        self._sandbox_args = dict(
            workdir=workdir, timeout=timeout, isolation=isolation, **sandbox_kwargs
        )
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> KernelSandbox:
        """The kernel sandbox, created on first access."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = KernelSandbox(**self._sandbox_args)
            return self._sandbox

    def invoke(self, action_input: str) -> ToolOutput:
        """Run the code in action_input; failures become an error observation, never raise."""
        code = extract_code(action_input)
        if not code.strip():
            return ToolOutput(
                "error: no code was given. Put the Python code to run in the Action Input.",
                is_error=True,
            )
        try:
            sandbox = self.sandbox
            result = sandbox.execute(code)
        except (
            Exception
        ) as exc:  # setup failures (e.g. the kernel cannot start) become observations
            log.exception("code interpreter failed")
            return ToolOutput(
                f"error: the code interpreter is unavailable ({type(exc).__name__}: {exc})",
                is_error=True,
            )
        text = format_observation(result, workdir=sandbox.workdir)
        return ToolOutput(text, images=result.images, is_error=not result.ok)

    def close(self) -> None:
        """Stop the kernel if this tool started it."""
        with self._lock:
            if self._sandbox is not None and self._owns_sandbox:
                self._sandbox.close()
                self._sandbox = None

    def __enter__(self) -> CodeInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
