"""The kernel command line, its scrubbed environment, and the jupyter_client manager for it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import Instance

from .bwrap import bwrap_argv
from .fonts import install_font_cache, write_matplotlibrc
from .limits import Limits, launcher_options

INSIDE_DIR = Path(__file__).resolve().parent / "inside"
LAUNCHER = INSIDE_DIR / "qwen_react_launch.py"

_KERNEL_ARGS = (
    "--IPKernelApp.outstream_class=qwen_react_outstream.BoundedOutStream",
    "--IPKernelApp.exec_lines=__import__('qwen_react_outstream').install()",
    "--InteractiveShell.colors=nocolor",
    "--HistoryManager.enabled=False",
)


class _OneSpecManager(KernelSpecManager):
    """A KernelSpecManager that knows exactly one spec (ours)."""

    spec = Instance(KernelSpec)

    def get_kernel_spec(self, kernel_name: str, *args: object, **kwargs: object) -> KernelSpec:
        return self.spec


@dataclass(frozen=True)
class KernelPlan:
    """Everything needed to launch one kernel."""

    isolation: str  # "bwrap" | "process"
    workdir: Path
    rundir: Path
    limits: Limits
    stream_head: int
    stream_tail: int
    uid: int | None  # unprivileged uid to switch to (bwrap on a root host), else None


def kernel_env(plan: KernelPlan, home: str) -> dict[str, str]:
    """The kernel's whole environment: nothing is inherited from the host."""
    venv_bin = str(Path(sys.prefix) / "bin")
    threads = str(min(4, os.cpu_count() or 1))
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "USER": "sandbox",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(INSIDE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MATPLOTLIBRC": str(plan.rundir / "matplotlibrc"),
        "XDG_CACHE_HOME": str(plan.rundir / "cache"),
        "QWEN_REACT_STREAM_HEAD": str(plan.stream_head),
        "QWEN_REACT_STREAM_TAIL": str(plan.stream_tail),
        "MALLOC_ARENA_MAX": "2",  # fewer 64 MiB arena reservations under RLIMIT_AS
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def kernel_argv(plan: KernelPlan) -> list[str]:
    """The full command: [bwrap ... --] python launcher [limits] -- python -m ipykernel_launcher."""
    python = str(Path(sys.prefix) / "bin" / "python")
    shared_user = plan.isolation == "process" and os.getuid() != 0
    launch = [
        python,
        str(LAUNCHER),
        *launcher_options(plan.limits, uid=plan.uid, shared_user=shared_user),
    ]
    kernel = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}", *_KERNEL_ARGS]
    cmd = [*launch, "--", *kernel]
    if plan.isolation != "bwrap":
        return cmd
    read_only = [Path(sys.prefix), Path(sys.base_prefix), INSIDE_DIR]
    prefix = bwrap_argv(
        workdir=plan.workdir,
        rundir=plan.rundir,
        read_only=read_only,
        env=kernel_env(plan, home="/tmp"),
        keep_setuid=plan.uid is not None,
    )
    return [*prefix, "--", *cmd]


def make_manager(plan: KernelPlan) -> tuple[KernelManager, dict[str, object]]:
    """A KernelManager over ipc in plan.rundir, and the kwargs for start_kernel."""
    write_matplotlibrc(plan.rundir / "matplotlibrc")
    install_font_cache(plan.rundir / "cache")
    home = plan.rundir / "home"
    home.mkdir(exist_ok=True)
    if plan.uid is not None:  # the kernel writes its caches here
        for path in (home, plan.rundir / "cache", plan.rundir / "cache" / "matplotlib"):
            path.mkdir(exist_ok=True)
            os.chown(path, plan.uid, 0)
    spec = KernelSpec(
        argv=kernel_argv(plan),
        display_name="qwen-react sandboxed python",
        language="python",
        interrupt_mode="message",
    )
    km = KernelManager(
        kernel_name="qwen-react-sandbox",
        kernel_spec_manager=_OneSpecManager(spec=spec),
        transport="ipc",
        ip=str(plan.rundir / "s"),
        connection_file=str(plan.rundir / "k.json"),
    )
    env: Mapping[str, str] = kernel_env(plan, home=str(home))
    kwargs: dict[str, object] = {"env": dict(env), "cwd": str(plan.workdir)}
    return km, kwargs
