"""The output layer of one decode step: an fp16 GEMV over the vocabulary, in Triton.

At batch 1 the ``lm_head`` is a 1.56 GB read (Qwen-14B: 152064 x 5120 fp16) for 152064 dot
products. Each program streams ``ROWS`` whole rows of the weight in chunks of ``CHUNK``
columns, the next chunk's load issued before the current one is used, and sums in fp32; the
result is rounded to fp16 (what ``nn.Linear`` in fp16 returns) and stored as fp32, the dtype
the sampler reads, so no separate cast runs. Launched early (``llm.kernels.overlap``), it loads
its first chunk while the final RMSNorm still runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm.kernels.overlap import NONE, Overlap, launch_options, wait_if_early

# launch shape, best of a sweep on the H200 at 152064 x 5120 (rows 4-32, chunks 256-1024, 2-8
# warps; graph-timed): 342.9 us, 4.54 TB/s, against 375.4 us for cuBLAS and the fp32 cast
ROWS = 8
CHUNK = 1024
WARPS = 8


@triton.jit
def _logits_kernel(
    h_ptr, w_ptr, out_ptr, V, C: tl.constexpr, ROWS: tl.constexpr, CHUNK: tl.constexpr,
    EARLY: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    live = rows < V
    cols = tl.arange(0, CHUNK)
    ptrs = w_ptr + rows.to(tl.int64)[:, None] * C + cols[None, :]
    w = tl.load(ptrs, mask=live[:, None], other=0.0, eviction_policy="evict_first")
    wait_if_early(EARLY)  # h comes from the final RMSNorm
    acc = tl.zeros([ROWS, CHUNK], tl.float32)
    for c0 in range(CHUNK, C, CHUNK):
        w_next = tl.load(ptrs + c0, mask=live[:, None], other=0.0, eviction_policy="evict_first")
        x = tl.load(h_ptr + c0 - CHUNK + cols).to(tl.float32)
        acc += w.to(tl.float32) * x[None, :]
        w = w_next
    x = tl.load(h_ptr + C - CHUNK + cols).to(tl.float32)
    acc += w.to(tl.float32) * x[None, :]
    y = tl.sum(acc, axis=1)
    tl.store(out_ptr + rows, y.to(w_ptr.dtype.element_ty).to(tl.float32), mask=live)


def logits_supported(weight: torch.Tensor, chunk: int = CHUNK) -> bool:
    """True when ``decode_logits`` can run ``weight`` (fp16 ``(V, C)``, C a multiple of the
    chunk, contiguous, on CUDA)."""
    return (
        weight.is_cuda
        and weight.dtype == torch.float16
        and weight.dim() == 2
        and weight.is_contiguous()
        and weight.shape[1] % min(chunk, triton.next_power_of_2(weight.shape[1])) == 0
    )


def decode_logits(
    h: torch.Tensor,
    weight: torch.Tensor,
    overlap: Overlap = NONE,
    rows: int = ROWS,
    chunk: int = CHUNK,
    warps: int = WARPS,
) -> torch.Tensor:
    """``(h @ weight.T)`` for one fp16 row ``h`` ``(C,)`` -> fp32 ``(1, V)``, rounded through
    fp16 as ``lm_head(h).float()`` is. ``weight``: the ``lm_head`` weight ``(V, C)``."""
    v, c = weight.shape
    if not logits_supported(weight, chunk) or h.numel() != c or h.dtype != weight.dtype:
        raise ValueError(
            f"decode_logits: needs a contiguous fp16 CUDA weight (V, C) with C a multiple of "
            f"{chunk} and an fp16 row of C values; got weight {weight.dtype} "
            f"{tuple(weight.shape)} on {weight.device}, h {h.dtype} {tuple(h.shape)}"
        )
    chunk = min(chunk, triton.next_power_of_2(c))
    out = torch.empty(1, v, dtype=torch.float32, device=weight.device)
    _logits_kernel[(triton.cdiv(v, rows),)](
        h.reshape(-1).contiguous(), weight, out, v, C=c, ROWS=rows, CHUNK=chunk,
        EARLY=overlap.early, num_warps=warps, **launch_options(overlap, weight.device),
    )  # fmt: skip
    return out
