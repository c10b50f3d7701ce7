"""Turning one execution's iopub messages into bounded text, images and an error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .images import ImageSaver
from .output import BoundedText, strip_ansi
from .result import ExecutionError


class OutputCollector:
    """Accumulates the iopub messages of one execution, bounded in memory."""

    def __init__(self, head: int, tail: int, images: ImageSaver) -> None:
        self.stdout = BoundedText(head, tail)
        self.stderr = BoundedText(head, tail)
        self.result = BoundedText(head, tail)
        self.traceback = BoundedText(head, tail)
        self.error: tuple[str, str] | None = None
        self.images: list[Path] = []
        self.execution_count: int | None = None
        self._saver = images

    def handle(self, msg_type: str, content: Mapping[str, Any]) -> None:
        """Take one iopub message (already matched to this execution)."""
        if msg_type == "stream":
            target = self.stderr if content.get("name") == "stderr" else self.stdout
            target.append(content.get("text", ""))
        elif msg_type == "execute_result":
            self.execution_count = content.get("execution_count")
            self._rich(content.get("data", {}), self.result)
        elif msg_type in ("display_data", "update_display_data"):
            self._rich(content.get("data", {}), self.stdout, newline=True)
        elif msg_type == "error":
            self.error = (str(content.get("ename", "")), strip_ansi(str(content.get("evalue", ""))))
            self.traceback.append(strip_ansi("\n".join(content.get("traceback", []))))

    def _rich(self, data: Mapping[str, Any], text_sink: BoundedText, newline: bool = False) -> None:
        if len(self.images) < self._saver.max_per_execution:
            path = self._saver.save(data)
            if path is not None:
                self.images.append(path)
                return
        text = data.get("text/plain")
        if isinstance(text, str):
            text_sink.append(strip_ansi(text) + ("\n" if newline else ""))

    def execution_error(self) -> ExecutionError | None:
        if self.error is None:
            return None
        return ExecutionError(self.error[0], self.error[1], self.traceback.getvalue())
