"""Kernel-level timing helpers for the GPU benchmark: L2-cold weights, CUDA-graph replays."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

QWEN14B_LINEARS = {  # name: (K, N)
    "c_attn": (5120, 15360),
    "attn.c_proj": (5120, 5120),
    "mlp.w1": (5120, 13696),
    "mlp.w2": (5120, 13696),
    "mlp.c_proj": (13696, 5120),
}


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written."""
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b
    return 2 * nbytes / statistics.median(times[2:])


def graph_time(
    calls: list[Callable[[], object]],
    replays: int = 20,
    warmup_s: float = 0.03,
    idle_s: float = 0.2,
) -> float:
    """Median seconds per call of ``calls`` captured back to back in one CUDA graph.

    Each measurement starts from an idle GPU (``idle_s``), so that the power drawn by the ones
    before it does not throttle it (under sustained weight streaming the H200 reaches its
    700 W cap after ~1 s and cuts its SM clock, down to ~1.2 GHz), and times its replays after
    ``warmup_s`` of untimed ones (the first ~20 ms after a change of kernel read up to 11%
    slower).
    """
    time.sleep(idle_s)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in calls[:3]:
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in calls:
            fn()
    graph.replay()
    torch.cuda.synchronize()
    settle_until = time.perf_counter() + warmup_s
    while time.perf_counter() < settle_until:
        graph.replay()
        torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del graph
    return statistics.median(times) / len(calls)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm())
