"""Errors raised by the sandbox (framework faults; code-caused failures are results, not errors)."""

from __future__ import annotations


class SandboxError(RuntimeError):
    """Base class for sandbox failures that are not caused by the executed code."""


class KernelStartError(SandboxError):
    """The kernel could not be started (bad isolation setup, missing ipykernel, ...)."""


class IsolationUnavailableError(SandboxError):
    """The requested isolation mode cannot run on this machine (e.g. bwrap missing)."""


class PoolClosedError(SandboxError):
    """A kernel was requested from a KernelPool after shutdown()."""
