"""KernelPool: warm kernels for concurrent agents, reset in the background between uses."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from .errors import PoolClosedError
from .kernel import KernelSandbox

log = logging.getLogger(__name__)


class KernelPool:
    """A fixed number of started KernelSandboxes.

    ``acquire()`` hands out a warm kernel; ``release()`` gives it back, and it is reset (fresh
    kernel, emptied work dir) in the background before anyone else gets it. ``shutdown()``
    closes every kernel, idle or handed out, leaving no processes or files behind.
    """

    def __init__(
        self,
        size: int = 2,
        *,
        factory: Callable[[], KernelSandbox] | None = None,
        **sandbox_kwargs: Any,
    ) -> None:
        if size < 1:
            raise ValueError(f"KernelPool size must be >= 1, got {size}")
        self.size = size
        self._factory = factory or (lambda: KernelSandbox(**sandbox_kwargs))
        self._idle: queue.Queue[KernelSandbox] = queue.Queue()
        self._all: set[KernelSandbox] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._worker = ThreadPoolExecutor(max(1, size), thread_name_prefix="qwen-react-pool")
        try:
            for sandbox in self._worker.map(lambda _: self._new(), range(size)):
                self._idle.put(sandbox)
        except Exception:
            self.shutdown()
            raise

    def _new(self) -> KernelSandbox:
        sandbox = self._factory()
        with self._lock:
            self._all.add(sandbox)
        sandbox.start()
        return sandbox

    def acquire(self, timeout: float | None = None) -> KernelSandbox:
        """A warm kernel; waits up to timeout seconds (None: forever) for one to be free."""
        if self._closed:
            raise PoolClosedError("KernelPool.acquire() after shutdown()")
        try:
            sandbox = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"no free kernel within {timeout} s (pool size {self.size})"
            ) from None
        if self._closed:
            raise PoolClosedError("KernelPool was shut down while waiting")
        return sandbox

    def release(self, sandbox: KernelSandbox) -> None:
        """Give a kernel back; it is reset (or replaced) before reuse."""
        with self._lock:
            if sandbox not in self._all:
                raise ValueError("release() of a kernel that does not belong to this pool")
        if self._closed:
            sandbox.close()
            return
        self._worker.submit(self._recycle, sandbox)

    def _recycle(self, sandbox: KernelSandbox) -> None:
        try:
            sandbox.reset()
        except Exception as exc:
            log.warning("kernel reset failed (%s); replacing it", exc)
            self._discard(sandbox)
            if self._closed:
                return
            try:
                sandbox = self._new()
            except Exception as again:
                log.error("could not replace a pooled kernel: %s", again)
                return
        if self._closed:
            sandbox.close()
        else:
            self._idle.put(sandbox)

    def _discard(self, sandbox: KernelSandbox) -> None:
        with self._lock:
            self._all.discard(sandbox)
        sandbox.close()

    @contextmanager
    def kernel(self, timeout: float | None = None) -> Iterator[KernelSandbox]:
        """``with pool.kernel() as sb:`` acquire, then release on exit."""
        sandbox = self.acquire(timeout)
        try:
            yield sandbox
        finally:
            self.release(sandbox)

    def shutdown(self) -> None:
        """Close every kernel and stop the background worker."""
        self._closed = True
        self._worker.shutdown(wait=True)
        with self._lock:
            sandboxes, self._all = list(self._all), set()
        for sandbox in sandboxes:
            sandbox.close()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
