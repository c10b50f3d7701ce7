"""Adversarial code, one property per test: loops, crashes, memory bombs, output floods."""

from __future__ import annotations

import gc
import threading
import time

import psutil
import pytest

from sandbox import GiB, KernelSandbox, Limits
from sandbox.testing import bwrap_skip_reason, processes_of_uid, wait_until

needs_bwrap = [
    pytest.mark.bwrap,
    pytest.mark.skipif(bool(bwrap_skip_reason()), reason=str(bwrap_skip_reason())),
]
MODES = ["process", pytest.param("bwrap", marks=needs_bwrap)]


@pytest.fixture(scope="module", params=MODES)
def sb(request):
    limits = Limits(memory_bytes=1 * GiB, max_processes=64)
    with KernelSandbox(
        isolation=request.param, timeout=20, limits=limits, interrupt_grace=1.5
    ) as sandbox:
        yield sandbox


def test_infinite_loop_times_out_and_keeps_state(sb):
    sb.execute("kept = 'still here'")
    t0 = time.monotonic()
    r = sb.execute("while True: pass", timeout=2)
    elapsed = time.monotonic() - t0
    assert r.timed_out and not r.ok and not r.restarted
    assert 2 <= elapsed < 5
    assert "timed out" in r.notice
    after = sb.execute("print(kept)")
    assert after.ok and after.stdout == "still here\n"


def test_loop_swallowing_interrupts_is_restarted(sb):
    sb.execute("lost = 1")
    # A handler that swallows SIGINT: no KeyboardInterrupt can ever surface (a try/except
    # loop leaves a window between iterations where the interrupt does escape).
    code = (
        "import signal\nsignal.signal(signal.SIGINT, lambda *a: print('ignored'))\nwhile True: pass"
    )
    t0 = time.monotonic()
    r = sb.execute(code, timeout=1)
    assert time.monotonic() - t0 < 10
    assert r.timed_out and r.restarted
    assert "restarted" in r.notice and "lost" in r.notice
    after = sb.execute("print('lost' in dir())")
    assert after.ok and after.stdout == "False\n"


def test_os_exit_is_reported_as_kernel_death(sb):
    t0 = time.monotonic()
    r = sb.execute("import os; os._exit(1)")
    assert time.monotonic() - t0 < 10
    assert r.kernel_died and r.restarted and not r.ok
    assert "died" in r.notice
    assert sb.execute("print(2 + 2)").stdout == "4\n"


def test_memory_bomb_hits_the_limit_not_the_host(sb):
    host_before = psutil.virtual_memory().available
    r = sb.execute("x = bytearray(8 * 1024**3)")
    assert not r.ok
    assert (r.error is not None and r.error.name == "MemoryError") or r.kernel_died
    assert psutil.virtual_memory().available > host_before - 1 * GiB
    assert sb.execute("print('ok')").stdout == "ok\n"


def test_memory_bomb_by_growth_is_bounded(sb):
    r = sb.execute(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024**2))", timeout=20
    )
    assert not r.ok and not r.timed_out
    assert (r.error is not None and r.error.name == "MemoryError") or r.kernel_died
    sb.execute("chunks = None")


def test_printing_200mb_is_truncated_and_host_memory_stays_bounded(sb):
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    r = sb.execute("for _ in range(200):\n    print('x' * 1_000_000)", timeout=60)
    rss_growth = psutil.Process().memory_info().rss - rss_before
    assert r.ok
    assert len(r.stdout) < 25_000
    assert "characters elided" in r.stdout
    assert r.stdout.startswith("x" * 1000) and r.stdout.endswith("x\n")
    assert rss_growth < 100 * 1024**2


def test_huge_single_write_and_result_are_truncated(sb):
    r = sb.execute("import sys; sys.stdout.write('y' * 50_000_000); 'z' * 50_000_000", timeout=60)
    assert r.ok
    assert len(r.stdout) < 25_000 and "characters elided" in r.stdout
    assert len(r.result) < 25_000 and "characters elided" in r.result


def test_subprocess_output_is_bounded_too(sb):
    r = sb.execute(
        "import subprocess; subprocess.run(['head', '-c', '30000000', '/dev/zero'])", timeout=60
    )
    assert r.ok
    assert len(r.stdout) < 25_000


def test_file_size_limit():
    with KernelSandbox(isolation="process", limits=Limits(file_size_bytes=1024**2)) as sandbox:
        r = sandbox.execute("open('big.bin', 'wb').write(b'0' * (4 * 1024**2))")
    assert r.error is not None and r.error.name == "OSError" and "File too large" in r.error.value


def test_cpu_time_limit_kills_and_restarts():
    with KernelSandbox(isolation="process", limits=Limits(cpu_seconds=2), timeout=20) as sandbox:
        r = sandbox.execute("while True: pass", timeout=15)
        assert r.kernel_died and r.restarted and not r.timed_out
        assert sandbox.execute("print(1)").stdout == "1\n"


@pytest.mark.bwrap
@pytest.mark.skipif(bool(bwrap_skip_reason()), reason=str(bwrap_skip_reason()))
def test_fork_bomb_is_bounded_and_the_sandbox_recovers():
    # bwrap only: in "process" mode as root Linux does not enforce RLIMIT_NPROC at all.
    limit = 48
    with KernelSandbox(
        isolation="bwrap", limits=Limits(max_processes=limit), timeout=10
    ) as sandbox:
        uid = int(sandbox.execute("import os; print(os.getuid())").stdout)
        assert uid != 0  # a root host hands the kernel a dedicated uid, so the limit applies
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], len(processes_of_uid(uid)))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        try:
            r = sandbox.execute("import os\nwhile True:\n    os.fork()", timeout=4)
        finally:
            stop.set()
            sampler.join()
        assert time.monotonic() - t0 < 20
        assert not r.ok
        assert 1 < peak[0] <= limit
        assert sandbox.execute("print('alive')").stdout == "alive\n"
        assert wait_until(lambda: sandbox.child_process_count() < 5)
