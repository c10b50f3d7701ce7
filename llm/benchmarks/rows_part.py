"""Streaming part of the GPU benchmark: the decode GEMVs' weight rate for 1-16 rows.

For each matrix (the Qwen-14B layers, and two ten times a layer, where a launch's fixed cost
no longer counts) and each row count, the kernel ``Int4Linear`` takes with its launch choice:
the one-row kernel in accumulate mode (as decode runs it) for one row, the tensor-core rows
kernel for 2-16; and, for comparison, the one-row kernel run over every row (each re-reading
the weights). Rates count the int4 weights and scales read once.
"""

from __future__ import annotations

import logging
import math

import torch

from llm.benchmarks.kernel_bench import QWEN14B_LINEARS, copy_bandwidth, graph_time, rel_err
from llm.benchmarks.kernels_part import gbytes, random_int4
from llm.kernels.gemv import GemvConfig, SplitKWorkspace, int4_gemv
from llm.kernels.gemv_rows import int4_gemv_rows
from llm.kernels.linear import gemv_choice, rows_choice
from llm.kernels.reference import dequantize_repacked

log = logging.getLogger("bench_gpu")
GROUP = 128
ROW_COUNTS = (1, 2, 4, 8, 16)
MATRICES = {
    **{name: QWEN14B_LINEARS[name] for name in ("c_attn", "attn.c_proj", "mlp.w1", "mlp.c_proj")},
    "c_attn x10 (N)": (5120, 153600),
    "mlp.c_proj x10 (N)": (13696, 51200),
}


def _engine_kernel(k: int, n: int, m: int, ws: SplitKWorkspace):
    """``call(x, qweight, scales)``: the kernel ``Int4Linear`` runs for ``m`` rows, with its
    launch choice; one row in accumulate mode (as decode runs it), summed into a fresh fp32
    accumulator that the timed calls keep adding to (only their time counts)."""
    if m == 1:
        cfg = GemvConfig(**gemv_choice(k, n))
        acc = torch.zeros(1, n, device="cuda")
        return lambda x, qw, s: int4_gemv(
            x[:1], qw, s, None, None, GROUP, None, cfg, out=acc, accumulate=True
        )
    choice = rows_choice(m, k, n)
    return lambda x, qw, s: int4_gemv_rows(x[:m], qw, s, None, None, GROUP, ws, **choice)


def _time_over(weights, call) -> float:
    """Seconds per ``call(qweight, scales)``, over L2-cold copies of the weights."""
    return graph_time([(lambda qw=qw, s=s: call(qw, s)) for qw, s in weights * 2])


def bench_matrix(k: int, n: int, ws: SplitKWorkspace) -> dict:
    """Rates at every row count, the one-row kernel's at 2 and 16, and the errors."""
    nbytes = gbytes(k, n)
    copies = max(2, math.ceil(400e6 / nbytes))
    weights = [random_int4(k, n) for _ in range(copies)]
    x = torch.randn(16, k, device="cuda").half()
    ref = x.float() @ dequantize_repacked(*weights[0], None, GROUP)
    out: dict = {"K": k, "N": n, "bytes": nbytes, "rows": {}}
    for m in ROW_COUNTS:
        kernel = _engine_kernel(k, n, m, ws)
        err = rel_err(kernel(x, *weights[0]), ref[:m])
        t = _time_over(weights, lambda qw, s, kernel=kernel: kernel(x, qw, s))
        out["rows"][m] = {"us": t * 1e6, "tbps": nbytes / t / 1e12, "err": err}
    one_row = GemvConfig(**gemv_choice(k, n))
    for m in (2, 16):
        t = _time_over(
            weights,
            lambda qw, s, xm=x[:m]: int4_gemv(xm, qw, s, None, None, GROUP, ws, one_row),
        )
        out[f"one_row_kernel_m{m}_us"] = t * 1e6
    return out


def run_rows() -> dict:
    """All matrices; returns a JSON-able dict."""
    res: dict = {"copy_tbps": copy_bandwidth() / 1e12, "matrices": {}}
    ws = SplitKWorkspace(16, max(n for _, n in MATRICES.values()), "cuda")
    for name, (k, n) in MATRICES.items():
        log.info("rows %s", name)
        res["matrices"][name] = bench_matrix(k, n, ws)
        torch.cuda.empty_cache()
    return res


def rows_table(res: dict) -> str:
    head = " | ".join(f"M={m}" for m in ROW_COUNTS)
    lines = [
        f"copy bandwidth {res['copy_tbps']:.2f} TB/s; us and TB/s of int4 weights + scales",
        "",
        f"| matrix (K x N) | {head} | one-row kernel M=2 / M=16 |",
        "|---|" + "---|" * (len(ROW_COUNTS) + 1),
    ]
    for name, r in res["matrices"].items():
        cells = " | ".join(
            f"{r['rows'][m]['us']:.1f} us {r['rows'][m]['tbps']:.2f}" for m in ROW_COUNTS
        )
        lines.append(
            f"| {name} ({r['K']}x{r['N']}) | {cells} "
            f"| {r['one_row_kernel_m2_us']:.1f} / {r['one_row_kernel_m16_us']:.1f} us |"
        )
    return "\n".join(lines)
