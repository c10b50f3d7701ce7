"""KernelSandbox: one IPython kernel, started through jupyter_client, driven with deadlines."""

from __future__ import annotations

import logging
import os
import queue
import random
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from jupyter_client import BlockingKernelClient, KernelManager

from .bwrap import bwrap_works
from .collect import OutputCollector
from .errors import IsolationUnavailableError, KernelStartError
from .images import ImageSaver
from .limits import Limits
from .result import ExecutionError, ExecutionResult
from .spec import KernelPlan, make_manager

log = logging.getLogger(__name__)

ISOLATIONS = ("auto", "bwrap", "process")
_UID_RANGE = (2_000_000_000, 2_100_000_000)  # dedicated uids for root hosts; no real user has them
_IPC_PATH_MAX = 107
_ALIVE_CHECK_S = 0.2


def resolve_isolation(isolation: str) -> str:
    """'auto' -> 'bwrap' when a probe shows it runs here, else 'process' (with a warning)."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    if isolation == "process":
        return "process"
    if bwrap_works():
        return "bwrap"
    if isolation == "bwrap":
        raise IsolationUnavailableError(
            "isolation='bwrap' but bubblewrap cannot run here (install the 'bubblewrap' package)"
        )
    log.warning(
        "bubblewrap is unavailable; the code interpreter runs with isolation='process' (limits only)"
    )
    return "process"


class KernelSandbox:
    """A sandboxed IPython kernel; see the ``sandbox`` package docstring for isolation.

    execute() never raises for anything the code does: timeouts, crashes and kernel deaths
    come back in the ExecutionResult, with a restarted kernel ready for the next call.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        isolation: str = "auto",
        *,
        limits: Limits | None = None,
        max_output_chars: int = 20_000,
        interrupt_grace: float = 2.0,
        startup_timeout: float = 30.0,
        uid: int | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_output_chars < 100:
            raise ValueError(f"max_output_chars must be >= 100, got {max_output_chars}")
        self.timeout = timeout
        self.isolation = resolve_isolation(isolation)
        self.limits = limits or Limits()
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self._head = max_output_chars * 2 // 3
        self._tail = max_output_chars - self._head
        self._uid = self._pick_uid(uid)
        self._owns_workdir = workdir is None
        self.workdir = self._make_workdir(workdir)
        self._images = ImageSaver(self.workdir)
        self._lock = threading.RLock()
        self._spawner: ThreadPoolExecutor | None = None
        self._km: KernelManager | None = None
        self._kc: BlockingKernelClient | None = None
        self._rundir: Path | None = None
        self._log_file: Any = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def _pick_uid(self, uid: int | None) -> int | None:
        if self.isolation != "bwrap" or os.geteuid() != 0:
            return None
        return uid if uid is not None else random.randrange(*_UID_RANGE)

    def _make_workdir(self, workdir: str | os.PathLike[str] | None) -> Path:
        if workdir is None:
            path = Path(tempfile.mkdtemp(prefix="qwen-react-work-"))
        else:
            path = Path(workdir).resolve()
            path.mkdir(parents=True, exist_ok=True)
        self._hand_over(path)
        return path

    def _hand_over(self, path: Path) -> None:
        """Make a directory the kernel's own when it runs as a dedicated uid.

        Group root keeps access for the launcher, which runs as root without capabilities.
        """
        if self._uid is not None:
            os.chown(path, self._uid, 0)
            os.chmod(path, 0o770)

    def __enter__(self) -> KernelSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_started(self) -> bool:
        return self._km is not None

    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        km = self._km
        return km is not None and km.is_alive()

    @property
    def kernel_pid(self) -> int | None:
        """Host pid of the launched process (the outer bwrap in bwrap mode)."""
        km = self._km
        process = getattr(getattr(km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def start(self) -> None:
        """Start the kernel (no-op when running). Raises KernelStartError on failure."""
        with self._lock:
            if self._closed:
                raise KernelStartError("this KernelSandbox is closed")
            if self._km is not None:
                return
            if self._spawner is None:
                # --die-with-parent follows the thread that spawned the kernel: keep one alive.
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="qwen-react-kernel")
            self._rundir = self._make_rundir()
            plan = KernelPlan(
                self.isolation,
                self.workdir,
                self._rundir,
                self.limits,
                self._head,
                self._tail,
                self._uid,
            )
            km, kwargs = make_manager(plan)
            self._log_file = open(self._rundir / "kernel.log", "wb")  # noqa: SIM115 (closed in _teardown)
            kwargs.update(stdout=subprocess.DEVNULL, stderr=self._log_file)
            self._km = km
            try:
                self._spawner.submit(km.start_kernel, **kwargs).result()
                self._connect()
            except Exception as exc:
                detail = self._kernel_log()
                self._teardown()
                raise KernelStartError(
                    f"kernel ({self.isolation}) failed to start: {exc}; kernel log: {detail}"
                ) from exc

    def _make_rundir(self) -> Path:
        rundir = Path(tempfile.mkdtemp(prefix="qrk-", dir="/tmp"))
        if len(str(rundir)) + len("/s-99") > _IPC_PATH_MAX:
            shutil.rmtree(rundir, ignore_errors=True)
            raise KernelStartError(f"ipc socket path under {rundir} is longer than {_IPC_PATH_MAX}")
        self._hand_over(rundir)
        return rundir

    def _kernel_log(self) -> str:
        if self._rundir is None:
            return ""
        try:
            return (self._rundir / "kernel.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _connect(self) -> None:
        """A fresh client; returns once shell and iopub both answer."""
        assert self._km is not None
        if self._kc is not None:
            self._kc.stop_channels()
        kc = self._km.client()
        kc.start_channels()
        self._kc = kc
        deadline = time.monotonic() + self.startup_timeout
        kc.wait_for_ready(timeout=self.startup_timeout)
        while time.monotonic() < deadline:
            msg_id = kc.kernel_info()
            if self._wait_iopub_status(msg_id, min(deadline, time.monotonic() + 0.5)):
                self._drain_shell()
                return
            if not self._km.is_alive():
                break
        raise KernelStartError("kernel did not answer on iopub")

    def _wait_iopub_status(self, msg_id: str, until: float) -> bool:
        assert self._kc is not None
        while (left := until - time.monotonic()) > 0:
            try:
                msg = self._kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    def _drain_shell(self) -> None:
        kc = self._kc
        while kc is not None and kc.shell_channel.msg_ready():
            kc.get_shell_msg(timeout=0)

    def restart(self) -> None:
        """Replace the kernel with a fresh one (all state lost)."""
        with self._lock:
            if self._km is None:
                self.start()
                return
            try:
                assert self._spawner is not None
                self._spawner.submit(self._km.restart_kernel, now=True).result()
                self._connect()
            except Exception as exc:  # any failure: fall back to a clean new kernel
                log.warning("kernel restart failed (%s); starting a new kernel", exc)
                self._teardown()
                self.start()

    def interrupt(self) -> None:
        """Send an interrupt request (KeyboardInterrupt in the running code)."""
        if self._km is not None:
            self._km.interrupt_kernel()

    def close(self) -> None:
        """Stop the kernel and remove its run dir (and the work dir when temporary)."""
        with self._lock:
            self._closed = True
            self._teardown()
            if self._spawner is not None:
                self._spawner.shutdown(wait=True)
                self._spawner = None
            if self._owns_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _teardown(self) -> None:
        kc, km, self._kc, self._km = self._kc, self._km, None, None
        if kc is not None:
            kc.stop_channels()
        if km is not None:
            try:
                km.shutdown_kernel(now=True)
            except Exception as exc:  # the process may already be gone
                log.debug("shutdown_kernel: %s", exc)
            process = getattr(km.provisioner, "process", None) if km.provisioner else None
            if process is not None:
                process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None

    def reset(self) -> None:
        """Fresh kernel and an emptied work dir (used by KernelPool before reuse)."""
        with self._lock:
            for child in self.workdir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            self.restart()

    # -- execution ---------------------------------------------------------------------------

    def execute(self, code: str, timeout: float | None = None) -> ExecutionResult:
        """Run code in the kernel; returns within timeout + interrupt/restart time."""
        with self._lock:
            started = time.monotonic()
            try:
                return self._execute(code, timeout or self.timeout, started)
            except Exception as exc:  # framework failure: report it, never raise to the agent
                log.exception("sandbox failure while executing code")
                return self._failure_result(exc, started)

    def _failure_result(self, exc: Exception, started: float) -> ExecutionResult:
        restarted = False
        notice = f"The sandbox failed ({type(exc).__name__}: {exc})."
        if not self._closed:
            try:
                self._teardown()
                self.start()
                restarted = True
                notice += " A new kernel was started; all variables were lost."
            except Exception as again:
                notice += f" Starting a new kernel failed too: {again}"
        return ExecutionResult(
            ok=False,
            error=ExecutionError(type(exc).__name__, str(exc), ""),
            restarted=restarted,
            duration=time.monotonic() - started,
            notice=notice,
        )

    def _execute(self, code: str, timeout: float, started: float) -> ExecutionResult:
        if self._km is None:
            self.start()
        assert self._kc is not None
        self._drain_shell()
        collector = OutputCollector(self._head, self._tail, self._images)
        msg_id = self._kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        state = self._wait_idle(msg_id, collector, started + timeout)
        timed_out = state == "timeout"
        notice, restarted, died = "", False, state == "dead"
        if timed_out:
            self.interrupt()
            state = self._wait_idle(msg_id, collector, time.monotonic() + self.interrupt_grace)
            notice = (
                f"Execution timed out after {timeout:g} s and was interrupted; variables were kept."
            )
            if state != "idle":
                self.restart()
                restarted = True
                notice = (
                    f"Execution timed out after {timeout:g} s and did not stop when interrupted; "
                    "the kernel was restarted and all variables were lost."
                )
        elif died:
            code_ = self._exit_code()
            self.restart()
            restarted = True
            notice = (
                f"The kernel died while running this code (exit status {code_}); it was restarted "
                "and all variables were lost."
            )
        if not restarted and (timed_out or collector.error is not None):
            restarted, notice = self._check_runaway(notice)
        error = collector.execution_error()
        return ExecutionResult(
            ok=state == "idle" and not timed_out and error is None,
            stdout=collector.stdout.getvalue(),
            stderr=collector.stderr.getvalue(),
            result=collector.result.getvalue(),
            images=tuple(collector.images),
            error=error,
            timed_out=timed_out,
            kernel_died=died,
            restarted=restarted,
            duration=time.monotonic() - started,
            notice=notice,
            execution_count=collector.execution_count,
        )

    def _wait_idle(self, msg_id: str, collector: OutputCollector, deadline: float) -> str:
        """Collect iopub messages until idle ("idle"), the deadline ("timeout") or death ("dead")."""
        assert self._kc is not None and self._km is not None
        next_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if now >= next_check:
                if not self._km.is_alive():
                    return "dead"
                next_check = now + _ALIVE_CHECK_S
            try:
                msg = self._kc.get_iopub_msg(timeout=min(_ALIVE_CHECK_S, deadline - now))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
                return "idle"
            collector.handle(msg["msg_type"], content)

    def _exit_code(self) -> int | None:
        process = getattr(getattr(self._km, "provisioner", None), "process", None)
        return None if process is None else process.poll()

    def _kernel_children(self) -> tuple[list[psutil.Process], list[str]]:
        """Processes below the kernel, and the kernel's own command line."""
        pid = self.kernel_pid
        if pid is None:
            return [], []
        try:
            tree = psutil.Process(pid).children(recursive=True)
            if self.isolation == "bwrap":  # outer bwrap -> inner bwrap (init) -> kernel
                tree = [p for p in tree if p.ppid() != pid]
            kernel = min(tree, key=lambda p: p.pid) if tree else None
            if kernel is None:
                return [], []
            cmdline = kernel.cmdline()
        except psutil.Error:
            return [], []
        return [p for p in tree if p.pid != kernel.pid], cmdline

    def child_process_count(self) -> int:
        """Processes the kernel has started (the bwrap wrappers and the kernel not counted)."""
        return len(self._kernel_children()[0])

    def _check_runaway(self, notice: str) -> tuple[bool, str]:
        """After a failure, restart when forked copies of the kernel linger (a fork bomb's
        leftovers share the kernel's sockets) or leftover processes fill the limit."""
        children, cmdline = self._kernel_children()
        copies = 0
        for proc in children:
            try:
                copies += proc.cmdline() == cmdline
            except psutil.ZombieProcess:
                copies += 1  # an unreaped fork still holds a slot of the process limit
            except psutil.Error:
                continue
        limit = self.limits.max_processes
        if copies < 4 and (limit is None or len(children) < max(8, limit // 4)):
            return False, notice
        self.restart()
        notice = notice.replace("; variables were kept.", ".")
        return True, (
            f"{notice} The code left {len(children)} processes running (limit {limit}); the kernel "
            "was restarted and all variables were lost."
        ).strip()
