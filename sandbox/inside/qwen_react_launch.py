"""Kernel-side launcher: apply resource limits, optionally drop to a sandbox uid, exec the kernel.

Runs as the first Python process inside the sandbox (standard library only; the project
package is not importable there). Usage::

    python qwen_react_launch.py [--as BYTES] [--cpu SECONDS] [--fsize BYTES] [--nproc N]
        [--nofile N] [--uid UID --gid GID] -- python -m ipykernel_launcher -f CONNECTION_FILE ...

Limits are set with ``setrlimit`` and survive the final ``execv``, so they bind the kernel
and every process it starts. With ``--uid`` (used when the host runs as root, where the
kernel ignores RLIMIT_NPROC) the connection file is read first, the process switches to the
unprivileged uid/gid, and the kernel reads a private copy of the file from /tmp.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys

_LIMITS = {
    "--as": resource.RLIMIT_AS,
    "--cpu": resource.RLIMIT_CPU,
    "--fsize": resource.RLIMIT_FSIZE,
    "--nproc": resource.RLIMIT_NPROC,
    "--nofile": resource.RLIMIT_NOFILE,
}


def _parse(argv: list[str]) -> tuple[dict[str, int], list[str]]:
    if "--" not in argv:
        raise SystemExit("qwen_react_launch: expected '--' before the kernel command")
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    if len(opts) % 2:
        raise SystemExit(f"qwen_react_launch: options must be pairs, got {opts}")
    return {opts[i]: int(opts[i + 1]) for i in range(0, len(opts), 2)}, cmd


def _set_limits(opts: dict[str, int]) -> None:
    for flag, which in _LIMITS.items():
        if flag in opts:
            value = opts[flag]
            resource.setrlimit(which, (value, value))


def _drop_privileges(uid: int, gid: int, cmd: list[str]) -> list[str]:
    """Switch to uid/gid; point the kernel at a readable copy of its connection file."""
    index = cmd.index("-f") + 1
    with open(cmd[index], "rb") as f:
        info = f.read()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    private = "/tmp/.kernel-connection.json"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(info)
    return cmd[:index] + [private] + cmd[index + 1 :]


def main(argv: list[str]) -> None:
    opts, cmd = _parse(argv)
    # The kernel must lead its own process group so interrupts reach its children;
    # PermissionError means it already does.
    with contextlib.suppress(PermissionError):
        os.setsid()
    _set_limits(opts)
    if "--uid" in opts:
        cmd = _drop_privileges(opts["--uid"], opts.get("--gid", opts["--uid"]), cmd)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
