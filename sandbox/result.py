"""What one execution produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExecutionError:
    """An exception raised by the executed code (or a sandbox failure reported as one)."""

    name: str
    value: str
    traceback: str  # plain text, no ANSI colour


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of ``KernelSandbox.execute``.

    ok: the code ran to completion without an exception, timeout or kernel death.
    result: text form of the last expression's value ("" when there is none).
    images: PNG/JPEG/SVG files saved in the work dir, in display order.
    timed_out: the deadline passed; the kernel was interrupted (or restarted).
    kernel_died: the kernel process exited while running the code (crash, os._exit, OOM).
    restarted: a fresh kernel replaced the old one; all variables were lost.
    notice: a sentence for the model/user explaining a timeout, death or restart.
    """

    ok: bool
    stdout: str = ""
    stderr: str = ""
    result: str = ""
    images: tuple[Path, ...] = ()
    error: ExecutionError | None = None
    timed_out: bool = False
    kernel_died: bool = False
    restarted: bool = False
    duration: float = 0.0
    notice: str = ""
    execution_count: int | None = None
