"""Overlap of neighbouring decode kernels through programmatic dependent launch (Hopper+).

The decode step is a chain of ~280 short kernels, each of which normally starts only when the
one before it has ended. A kernel launched *early* starts while its predecessor still runs,
loads what nothing before it writes (a GEMV its first int4 weight tile, the attention the
position and its rotary rows, add + RMSNorm its weight) and then waits for the predecessor to
end and its writes to be visible; the predecessor decides when its successor may start
(``release``). On the H200 this pays where the early kernel does not take SMs from the
predecessor's last programs: after the one-program add + RMSNorm has passed its own wait, and
after the main loop of a GEMV or of the attention (``llm.cuda_graph.DecodeOverlap``).

A kernel launched early must wait before it touches anything a kernel before it writes;
kernels that are not launched early ignore ``release`` in their predecessor, so every
combination is correct, only the speed differs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

try:  # Triton >= 3.4 has the grid-dependency instructions
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GRID_DEPENDENCY = True
except ImportError:  # pragma: no cover - older Triton: nothing overlaps
    HAS_GRID_DEPENDENCY = False

NEVER = 0
AT_START = 1  # the successor may start as soon as every program of this kernel has started
AFTER_LOOP = 2  # ... once every program has issued its last weight / cache loads


@dataclass(frozen=True)
class Overlap:
    """How one kernel launch overlaps its neighbours (see the module docstring)."""

    early: bool = False  # launched before its predecessor ends; waits after its first loads
    release: int = NEVER  # when its successor may start: NEVER, AT_START or AFTER_LOOP


NONE = Overlap()


def overlap_supported(device: torch.device | str) -> bool:
    """Programmatic dependent launch works on ``device``: CUDA 9.0+ and a Triton that has it."""
    device = torch.device(device)
    if device.type != "cuda" or not HAS_GRID_DEPENDENCY:
        return False
    return _capable(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _capable(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def launch_options(overlap: Overlap, device: torch.device) -> dict:
    """Keyword arguments of a Triton launch on ``device`` for ``overlap``."""
    if overlap != NONE and not overlap_supported(device):
        raise ValueError(
            f"{overlap} needs programmatic dependent launch: a CUDA device of compute "
            f"capability 9.0 or later and Triton 3.4 or later; got {device} "
            f"(use llm.kernels.overlap.NONE there)"
        )
    return {"launch_pdl": True} if overlap.early else {}


# the release points again, as constants the kernels can read
_AT_START = tl.constexpr(AT_START)
_AFTER_LOOP = tl.constexpr(AFTER_LOOP)

if HAS_GRID_DEPENDENCY:

    @triton.jit
    def release_at_start(RELEASE: tl.constexpr):
        """Let the next kernel start now, if ``RELEASE`` is ``AT_START``."""
        if RELEASE == _AT_START:
            gdc_launch_dependents()

    @triton.jit
    def release_after_loop(RELEASE: tl.constexpr):
        """Let the next kernel start now, if ``RELEASE`` is ``AFTER_LOOP``."""
        if RELEASE == _AFTER_LOOP:
            gdc_launch_dependents()

    @triton.jit
    def wait_if_early(EARLY: tl.constexpr):
        """Launched early: block until the kernels before have ended and their writes show."""
        if EARLY:
            gdc_wait()

else:  # pragma: no cover

    @triton.jit
    def release_at_start(RELEASE: tl.constexpr):
        pass

    @triton.jit
    def release_after_loop(RELEASE: tl.constexpr):
        pass

    @triton.jit
    def wait_if_early(EARLY: tl.constexpr):
        pass
