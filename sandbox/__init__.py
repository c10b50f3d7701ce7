"""Sandboxed Python execution in a Jupyter (IPython) kernel for the code interpreter.

``KernelSandbox`` starts one ipykernel through ``jupyter_client`` (ipc transport), runs code
with client-side deadlines (``time.monotonic``, no signals), interrupts or restarts a kernel
that overruns, detects and replaces a dead kernel, keeps stdout/stderr/results to a bounded
head + tail (in the kernel and again on the host), and saves images into the work dir.
``KernelPool`` keeps warm kernels for concurrent agents.

What each isolation mode does and does not isolate:

``isolation="bwrap"`` (bubblewrap; chosen by "auto" when a probe shows it runs)
    - network: none; the kernel has its own empty network namespace (the host's 127.0.0.1
      is unreachable).
    - files: /usr, the Python install and the venv are bound read-only; the work dir is
      the only writable host directory; /tmp is private; the sandbox root is read-only; the
      rest of the host file system (home dirs, /etc, secrets) is not visible.
    - processes: own pid namespace (host processes are invisible; everything dies with the
      host process or on restart); all capabilities dropped, no-new-privs.
    - user: on a root host the kernel switches to a dedicated unprivileged uid (a random
      uid in 2,000,000,000-2,100,000,000; the work dir is chowned to it), so RLIMIT_NPROC
      really bounds processes (Linux ignores it for root). Run as a normal user, the kernel
      is that user inside a user namespace, where RLIMIT_NPROC counts only its own tasks.
    - not isolated: CPU and memory bandwidth are shared; the limits below are per process
      (RLIMIT_AS), not a cgroup total; files readable by everyone under the bound paths stay
      readable.

``isolation="process"`` (a plain child process; the fallback when bwrap cannot run)
    - only resource limits (address space, CPU time, file size, open files) and a scrubbed
      environment (no host variables such as API keys) with the work dir as cwd.
    - NOT isolated: the code can read and write anything the host user can, open network
      connections, see and signal host processes. As root, RLIMIT_NPROC is not enforced by
      Linux, so a fork bomb is not bounded in this mode; use bwrap for untrusted code.

Both modes: the environment is built from scratch; output is bounded; a kernel that dies
(crash, ``os._exit``, memory kill) or does not respond to an interrupt is restarted and the
result says so.
"""

from .errors import IsolationUnavailableError, KernelStartError, PoolClosedError, SandboxError
from .kernel import KernelSandbox, resolve_isolation
from .limits import GiB, Limits, MiB
from .pool import KernelPool
from .result import ExecutionError, ExecutionResult

__all__ = [
    "ExecutionError",
    "ExecutionResult",
    "GiB",
    "IsolationUnavailableError",
    "KernelPool",
    "KernelSandbox",
    "KernelStartError",
    "Limits",
    "MiB",
    "PoolClosedError",
    "SandboxError",
    "resolve_isolation",
]
