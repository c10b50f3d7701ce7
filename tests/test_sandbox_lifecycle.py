"""Many executions and start/stop cycles leave no processes, descriptors or files behind."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import psutil
import pytest

from sandbox import KernelPool, KernelSandbox
from sandbox.testing import bwrap_skip_reason, kernel_processes, wait_until

needs_bwrap = [
    pytest.mark.bwrap,
    pytest.mark.skipif(bool(bwrap_skip_reason()), reason=str(bwrap_skip_reason())),
]
MODES = ["process", pytest.param("bwrap", marks=needs_bwrap)]


def _open_fds() -> int:
    return psutil.Process().num_fds()


def _own_dirs(sb: KernelSandbox) -> set[Path]:
    """The temporary dirs this sandbox made (other processes may make their own meanwhile)."""
    return {Path(sb.workdir), Path(sb._rundir)}


def _existing(dirs: set[Path]) -> set[Path]:
    return {d for d in dirs if d.exists()}


@pytest.mark.slow
@pytest.mark.parametrize("isolation", MODES)
def test_300_executions_leak_nothing(isolation):
    with KernelSandbox(isolation=isolation) as sb:
        sb.execute("x = 0")
        made = _own_dirs(sb)
        fds = _open_fds()
        for i in range(300):
            r = sb.execute(f"x += 1\nprint({i})")
            assert r.ok and r.stdout == f"{i}\n"
        assert sb.execute("x").result == "300"
        assert _open_fds() <= fds + 2
    assert wait_until(lambda: not kernel_processes())
    assert _existing(made) == set()


@pytest.mark.slow
def test_20_start_stop_cycles_leak_nothing():
    isolation = "auto"  # bwrap where it runs: the mode with the most moving parts
    made: set[Path] = set()
    with KernelSandbox(isolation=isolation) as warm:  # imports and caches warmed once
        warm.execute("1")
    gc.collect()
    fds = _open_fds()
    threads = psutil.Process().num_threads()
    for _ in range(20):
        with KernelSandbox(isolation=isolation) as sb:
            assert sb.execute("1 + 1").result == "2"
            made |= _own_dirs(sb)
    assert wait_until(lambda: not kernel_processes())
    gc.collect()  # zmq sockets of dropped clients sit in reference cycles until collected
    assert _open_fds() <= fds + 2
    assert psutil.Process().num_threads() <= threads + 1
    assert len(made) == 40 and _existing(made) == set()


def test_given_workdir_is_kept_and_used(tmp_path):
    with KernelSandbox(workdir=tmp_path / "w", isolation="process") as sb:
        sb.execute("open('out.txt', 'w').write('kept')")
    assert (tmp_path / "w" / "out.txt").read_text() == "kept"


def test_kernel_dies_with_closed_sandbox():
    sb = KernelSandbox(isolation="process")
    sb.start()
    pid = sb.kernel_pid
    assert pid is not None and psutil.pid_exists(pid)
    sb.close()
    assert wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )
    assert sb.execute("1").ok is False  # closed: reported, not raised


def test_pool_acquire_release_resets_state():
    with KernelPool(size=1, isolation="process") as pool:
        with pool.kernel() as sb:
            sb.execute("secret = 7")
            (sb.workdir / "left.txt").write_text("x")
            first = sb
        with pool.kernel(timeout=30) as sb:
            assert sb is first
            assert sb.execute("print('secret' in dir())").stdout == "False\n"
            assert not (sb.workdir / "left.txt").exists()


def test_pool_serves_concurrent_kernels_and_times_out_when_empty():
    with KernelPool(size=2, isolation="process") as pool:
        a = pool.acquire(timeout=5)
        b = pool.acquire(timeout=5)
        assert a is not b and a.kernel_pid != b.kernel_pid
        with pytest.raises(TimeoutError):
            pool.acquire(timeout=0.1)
        pool.release(a)
        pool.release(b)


@pytest.mark.parametrize("isolation", MODES)
def test_pool_shutdown_leaves_no_processes_or_files(isolation):
    pool = KernelPool(size=2, isolation=isolation)
    held, other = pool.acquire(), pool.acquire()
    held.execute("import subprocess; p = subprocess.Popen(['sleep', '1000'])")
    made = _own_dirs(held) | _own_dirs(other)
    pool.shutdown()
    assert wait_until(lambda: not kernel_processes())
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "1000"]
    ]
    assert len(made) == 4 and _existing(made) == set()
    assert os.path.exists("/tmp")
