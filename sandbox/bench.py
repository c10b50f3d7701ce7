"""Sandbox latency: cold start, warm `1+1` round trip (p50/p99), pool acquire.

    python -m sandbox.bench [--isolation auto|bwrap|process] [--n 200]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from sandbox import KernelPool, KernelSandbox


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cold_starts(isolation: str, runs: int) -> list[float]:
    with KernelSandbox(isolation=isolation) as warm:  # font cache, imports: excluded
        warm.execute("1")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sb = KernelSandbox(isolation=isolation)
        sb.start()
        times.append(time.perf_counter() - t0)
        sb.close()
    return times


def round_trips(isolation: str, n: int) -> list[float]:
    with KernelSandbox(isolation=isolation) as sb:
        for _ in range(20):
            sb.execute("1+1")
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = sb.execute("1+1")
            times.append(time.perf_counter() - t0)
            if r.result != "2":
                raise RuntimeError(f"unexpected result {r!r}")
    return times


def pool_acquires(isolation: str, n: int) -> list[float]:
    times = []
    with KernelPool(size=2, isolation=isolation) as pool:
        for _ in range(n):
            t0 = time.perf_counter()
            sb = pool.acquire(timeout=60)
            times.append(time.perf_counter() - t0)
            pool.release(sb)
            time.sleep(1.5)  # let the background reset finish: measures a warm acquire
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--isolation", default="auto")
    parser.add_argument("--n", type=int, default=200, help="warm round trips")
    parser.add_argument("--starts", type=int, default=5, help="cold starts")
    args = parser.parse_args()
    with KernelSandbox(isolation=args.isolation) as probe:
        isolation = probe.isolation
    starts = cold_starts(isolation, args.starts)
    trips = round_trips(isolation, args.n)
    acquires = pool_acquires(isolation, 5)
    row = {
        "isolation": isolation,
        "cold_start_s_median": statistics.median(starts),
        "cold_start_s_max": max(starts),
        "warm_rtt_ms_p50": 1000 * percentile(trips, 0.5),
        "warm_rtt_ms_p99": 1000 * percentile(trips, 0.99),
        "pool_acquire_ms_median": 1000 * statistics.median(acquires),
    }
    print(f"isolation            {isolation}")
    print(
        f"cold start           median {row['cold_start_s_median']:.3f} s   max {row['cold_start_s_max']:.3f} s   ({len(starts)} runs; target <= 1.5 s)"
    )
    print(
        f"warm 1+1 round trip  p50 {row['warm_rtt_ms_p50']:.2f} ms   p99 {row['warm_rtt_ms_p99']:.2f} ms   ({len(trips)} runs; target p50 <= 10 ms)"
    )
    print(f"pool acquire (warm)  median {row['pool_acquire_ms_median']:.3f} ms")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
