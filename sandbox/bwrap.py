"""bubblewrap: finding it, probing that it runs, and the argv that wraps the kernel."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PROBE_ARGS = ("--unshare-net", "--unshare-pid", "--die-with-parent", "--cap-drop", "ALL")


def bwrap_path() -> str | None:
    """The bwrap executable on PATH (or /usr/bin/bwrap), or None."""
    return shutil.which("bwrap") or (
        "/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None
    )


@functools.cache
def bwrap_works() -> bool:
    """Whether bwrap can create the namespaces we need here (cached per process)."""
    exe = bwrap_path()
    if exe is None:
        return False
    cmd = [exe, *_system_binds(), *_PROBE_ARGS, "--", "/usr/bin/true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("bwrap probe failed: %s", exc)
        return False
    if proc.returncode != 0:
        log.info(
            "bwrap probe failed (%s): %s", proc.returncode, proc.stderr.decode(errors="replace")
        )
    return proc.returncode == 0


def _system_binds() -> list[str]:
    """Read-only /usr plus the merged-/usr links (or binds where the host has real dirs)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def bwrap_argv(
    *,
    workdir: Path,
    rundir: Path,
    read_only: Sequence[Path],
    env: Mapping[str, str],
    keep_setuid: bool,
) -> list[str]:
    """The bwrap prefix for a kernel: no network, read-only system, writable workdir only.

    read_only: host paths bound read-only at the same place (venv, interpreter, helpers).
    keep_setuid: keep CAP_SETUID/CAP_SETGID so the launcher can switch to an unprivileged
        uid (root hosts); every capability is gone once it has switched.
    """
    exe = bwrap_path()
    if exe is None:
        raise FileNotFoundError("bwrap not found on PATH (Debian package 'bubblewrap')")
    args = [exe, *_system_binds(), "--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--tmpfs", "/tmp"]  # before any bind below /tmp
    ro_paths = _dedupe(read_only)
    if os.path.isdir("/etc/fonts"):
        ro_paths.append(Path("/etc/fonts"))  # fontconfig, for matplotlib's font search
    args += _parent_dirs([*ro_paths, workdir, rundir])
    for path in ro_paths:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(workdir), str(workdir), "--bind", str(rundir), str(rundir)]
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--die-with-parent", "--new-session", "--chdir", str(workdir)]
    args += ["--cap-drop", "ALL"]
    if keep_setuid:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    args += ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--remount-ro", "/"]  # the sandbox's own root stays read-only; must come last
    return args


def _parent_dirs(paths: Sequence[Path]) -> list[str]:
    """Create the bind targets' parents as 0755 (bwrap would make them 0700, which an
    unprivileged kernel could not traverse)."""
    made: list[str] = []
    args: list[str] = []
    for path in paths:
        for parent in reversed(Path(path).parents):
            name = str(parent)
            if name in ("/", "/tmp", "/usr") or name.startswith("/usr/") or name in made:
                continue
            made.append(name)
            args += ["--perms", "0755", "--dir", name]
    return args


def _dedupe(paths: Sequence[Path]) -> list[Path]:
    """Drop paths already covered by /usr or by another path in the list."""
    resolved = sorted({Path(os.path.realpath(p)) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        covered = path.is_relative_to("/usr") or any(path.is_relative_to(k) for k in kept)
        if not covered:
            kept.append(path)
    return kept
