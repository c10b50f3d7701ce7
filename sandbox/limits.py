"""Per-kernel resource limits, applied with setrlimit inside the kernel process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel; ``None`` leaves a limit as inherited.

    memory_bytes: address space (RLIMIT_AS) of the kernel and of each process it starts.
    cpu_seconds: CPU time of the kernel process over its lifetime (RLIMIT_CPU; the kernel is
        killed and restarted when it runs out).
    file_size_bytes: largest file the code may write (RLIMIT_FSIZE; larger writes fail).
    max_processes: tasks (processes and threads) of the kernel's user (RLIMIT_NPROC). The
        Linux kernel ignores it for root, so a root host runs bwrap kernels as a dedicated
        unprivileged uid; see ``sandbox`` for what each isolation mode enforces.
    open_files: open file descriptors per process (RLIMIT_NOFILE).
    """

    memory_bytes: int | None = 4 * GiB
    cpu_seconds: int | None = 3600
    file_size_bytes: int | None = 1 * GiB
    max_processes: int | None = 256
    open_files: int | None = 1024

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "file_size_bytes",
            "max_processes",
            "open_files",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{name} must be positive or None, got {value}")


def user_task_count(uid: int) -> int:
    """Tasks (threads included) that uid runs now, the quantity RLIMIT_NPROC counts."""
    total = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        info = proc.info
        if info["uids"] is not None and info["uids"].real == uid:
            total += info["num_threads"] or 1
    return total


def launcher_options(limits: Limits, *, uid: int | None, shared_user: bool) -> list[str]:
    """Options for ``qwen_react_launch.py``.

    shared_user: the kernel runs as a uid that also owns other processes (process mode as a
    normal user), so RLIMIT_NPROC is raised by that uid's current task count.
    """
    opts: list[str] = []
    pairs = {
        "--as": limits.memory_bytes,
        "--cpu": limits.cpu_seconds,
        "--fsize": limits.file_size_bytes,
        "--nofile": limits.open_files,
    }
    if limits.max_processes is not None:
        extra = user_task_count(os.getuid()) if shared_user else 0
        pairs["--nproc"] = limits.max_processes + extra
    if uid is not None:
        pairs["--uid"] = uid
        pairs["--gid"] = uid
    for flag, value in pairs.items():
        if value is not None:
            opts += [flag, str(value)]
    return opts
