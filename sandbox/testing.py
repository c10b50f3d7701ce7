"""Helpers for tests of the sandbox: bwrap availability and stray-process checks."""

from __future__ import annotations

import os
import time

import psutil

from .bwrap import bwrap_works


def bwrap_skip_reason() -> str | None:
    """Why bwrap tests cannot run here (None when they can)."""
    return None if bwrap_works() else "bubblewrap is not installed or cannot create namespaces here"


def kernel_processes(root_pid: int | None = None) -> list[psutil.Process]:
    """Live (non-zombie) ipykernel / bwrap processes below root_pid (default: this process)."""
    try:
        children = psutil.Process(root_pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for proc in children:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ipykernel" in cmd or "bwrap" in cmd or "qwen_react_launch" in cmd:
            found.append(proc)
    return found


def processes_of_uid(uid: int) -> list[psutil.Process]:
    """Live processes whose real uid is uid (anywhere on the host)."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        info = proc.info
        if (
            info["uids"] is not None
            and info["uids"].real == uid
            and info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(proc)
    return found


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll predicate until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
