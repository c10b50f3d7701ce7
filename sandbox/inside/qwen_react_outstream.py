"""Kernel-side output bounds: stdout/stderr and text results never leave the kernel unbounded.

Loaded inside the kernel (standard library + ipykernel only). ``BoundedOutStream`` is set as
ipykernel's ``outstream_class``: per cell it forwards the first ``head`` characters, keeps a
rolling ``tail`` and counts the rest, then ``install()``'s post-cell hook sends one marker line
plus the tail. Output written to the file descriptors by subprocesses goes through the same
``write``. Limits come from QWEN_REACT_STREAM_HEAD / QWEN_REACT_STREAM_TAIL.
"""

from __future__ import annotations

import os
import sys
import threading

from ipykernel.iostream import OutStream

HEAD = int(os.environ.get("QWEN_REACT_STREAM_HEAD", "8000"))
TAIL = int(os.environ.get("QWEN_REACT_STREAM_TAIL", "4000"))


def elision_marker(count: int) -> str:
    """The line that replaces ``count`` elided characters (the host uses the same words)."""
    return f"\n[... {count} characters elided ...]\n"


class BoundedOutStream(OutStream):
    """An ipykernel OutStream that forwards at most head + tail characters per cell."""

    def __init__(self, *args, **kwargs):
        self._bound_lock = threading.Lock()
        self._bound_key = None
        self._passed = 0
        self._tail = ""
        self._dropped = 0
        super().__init__(*args, **kwargs)

    def write(self, string):
        if not isinstance(string, str):
            return super().write(string)  # raises the usual TypeError
        key = self.parent_header.get("msg_id")
        with self._bound_lock:
            if key != self._bound_key:
                self._bound_key, self._passed, self._tail, self._dropped = key, 0, "", 0
            room = max(HEAD - self._passed, 0)
            forward, rest = string[:room], string[room:]
            self._passed += len(forward)
            if rest:
                self._dropped += len(rest)
                self._tail = (self._tail + rest[-TAIL:])[-TAIL:]
        if forward:
            super().write(forward)
        return len(string)

    def finish_cell(self):
        """Send the elision marker and the kept tail of the current cell, if any."""
        with self._bound_lock:
            dropped, tail = self._dropped, self._tail
            if dropped:
                self._tail, self._dropped = "", 0
        if dropped:
            elided = dropped - len(tail)
            super().write((elision_marker(elided) if elided else "") + tail)


def _truncate(text: str) -> str:
    limit = HEAD + TAIL
    if len(text) <= limit:
        return text
    return text[:HEAD] + elision_marker(len(text) - limit) + text[-TAIL:]


def _bounded_format_writer(original):
    def write_format_data(format_dict, md_dict=None):
        text = format_dict.get("text/plain")
        if isinstance(text, str):
            format_dict = {**format_dict, "text/plain": _truncate(text)}
        return original(format_dict, md_dict)

    return write_format_data


def _finish_streams(*_args):
    for stream in (sys.stdout, sys.stderr):
        finish = getattr(stream, "finish_cell", None)
        if finish is not None:
            finish()


def install() -> None:
    """Hook the running IPython shell: flush kept tails after each cell, bound text results."""
    from IPython import get_ipython

    shell = get_ipython()
    shell.events.register("post_run_cell", _finish_streams)
    hook = shell.displayhook
    hook.write_format_data = _bounded_format_writer(hook.write_format_data)
