"""bwrap isolation, one property per test: network, writes outside the work dir, host secrets."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest

from sandbox import KernelSandbox, resolve_isolation
from sandbox.testing import bwrap_skip_reason

pytestmark = [
    pytest.mark.bwrap,
    pytest.mark.skipif(bool(bwrap_skip_reason()), reason=str(bwrap_skip_reason())),
]


@pytest.fixture(scope="module")
def sb():
    with KernelSandbox(isolation="bwrap", timeout=20) as sandbox:
        yield sandbox


def test_auto_picks_bwrap_when_it_works():
    assert resolve_isolation("auto") == "bwrap"


def test_tcp_to_host_loopback_fails(sb):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(3)

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    r = sb.execute(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
    thread.join()
    server.close()
    assert r.error is not None and r.error.name in (
        "ConnectionRefusedError",
        "OSError",
        "TimeoutError",
    )
    assert accepted == []


def test_writing_outside_the_workdir_fails(sb, tmp_path):
    target = tmp_path / "escaped.txt"
    r = sb.execute(f"open({str(target)!r}, 'w').write('x')")
    assert r.error is not None
    assert not target.exists()
    for path in ("/usr/escaped.txt", "/escaped.txt", "/etc/escaped.txt"):
        r = sb.execute(f"open({path!r}, 'w').write('x')")
        assert r.error is not None, path
        assert not Path(path).exists()


def test_writing_inside_the_workdir_works(sb):
    r = sb.execute("open('note.txt', 'w').write('hi')")
    assert r.ok and (sb.workdir / "note.txt").read_text() == "hi"


def test_host_secret_files_are_not_readable(sb, tmp_path):
    secret = (
        Path("/root/.qwen-react-test-secret") if Path("/root").exists() else tmp_path / "secret"
    )
    secret.write_text("TOP-SECRET")
    try:
        for path in (secret, Path("/etc/shadow"), Path("/etc/passwd")):
            r = sb.execute(f"print(open({str(path)!r}).read())")
            assert r.error is not None and "TOP-SECRET" not in r.stdout, path
    finally:
        secret.unlink()


def test_host_processes_are_invisible(sb):
    r = sb.execute("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    pids = eval(r.stdout)  # a printed list of ints from the kernel
    assert max(pids) < 100 and len(pids) < 10


def test_no_capabilities_left(sb):
    r = sb.execute(
        "print([l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'NoNewPrivs'))])"
    )
    assert "CapEff:\\t0000000000000000" in r.stdout and "CapPrm:\\t0000000000000000" in r.stdout
    assert "NoNewPrivs:\\t1" in r.stdout
