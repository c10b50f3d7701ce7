"""The decode step's greedy choice in one Triton launch (repetition penalty, argmax, feedback).

``CudaGraphDecoder`` makes the choice on the device and feeds it to the next step. As torch ops
that is about ten small kernels over the vocabulary (compare, multiply, divide, two selects,
argmax, then three updates of the step's inputs), each a launch of its own in the graph. Here
each program penalises and reduces one block of logits, and the last program to finish (a
ticket counter) merges the blocks' winners and updates the inputs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096  # logits per program: 38 programs for Qwen's 152064 ids, one wave


@triton.jit
def _greedy_choice_kernel(
    logits_ptr, seen_ptr, penalty_ptr, inputs_ptr, part_val_ptr, part_idx_ptr, cnt_ptr, V,
    BLOCK: tl.constexpr, PROGRAMS: tl.constexpr, PROGRAMS_P2: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < V
    x = tl.load(logits_ptr + offs, mask=mask, other=float("-inf"))
    seen = tl.load(seen_ptr + offs, mask=mask, other=0)
    p = tl.load(penalty_ptr)
    # as ``llm.sampling.apply_repetition_penalty`` rounds: an IEEE division, not the fast one
    penalized = tl.where(x < 0, x * p, tl.math.div_rn(x, p))
    x = tl.where(seen != 0, penalized, x)
    val, idx = tl.max(x, axis=0, return_indices=True, return_indices_tie_break_left=True)
    tl.store(part_val_ptr + pid, val)
    tl.store(part_idx_ptr + pid, pid * BLOCK + idx)
    tl.debug_barrier()
    ticket = tl.atomic_add(cnt_ptr, 1, sem="acq_rel")
    if ticket == PROGRAMS - 1:
        ids = tl.arange(0, PROGRAMS_P2)
        live = ids < PROGRAMS
        vals = tl.load(part_val_ptr + ids, mask=live, other=float("-inf"), cache_modifier=".cg")
        where = tl.load(part_idx_ptr + ids, mask=live, other=0, cache_modifier=".cg")
        best = tl.argmax(vals, axis=0, tie_break_left=True)  # the first of equal maxima
        choice = tl.sum(tl.where(ids == best, where, 0), axis=0)
        tl.store(inputs_ptr, choice.to(tl.int64))
        tl.store(inputs_ptr + 1, tl.load(inputs_ptr + 1) + 1)
        tl.store(seen_ptr + choice, 1)
        tl.store(cnt_ptr, 0)


class GreedyChoice:
    """Workspace of ``greedy_choice`` for one vocabulary size and device (counter kept at zero)."""

    def __init__(self, vocab: int, device: torch.device) -> None:
        self.vocab = vocab
        self.programs = triton.cdiv(vocab, BLOCK)
        self.values = torch.empty(self.programs, device=device)  # each program's winner
        self.indices = torch.empty(self.programs, dtype=torch.int32, device=device)
        self.counter = torch.zeros(1, dtype=torch.int32, device=device)

    def __call__(
        self, logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor, inputs: torch.Tensor
    ) -> None:
        """Choose the id with the largest penalised logit (the first of ties, as
        ``torch.argmax``) and feed it back: ``inputs[0] = id``, ``inputs[1] += 1``,
        ``seen[id] = True``.

        ``logits``: fp32 ``(1, V)`` or ``(V,)``; ``seen``: bool ``(V,)``, the ids the penalty
        applies to; ``penalty``: fp32 ``(1,)``; ``inputs``: int64 ``(2,)``, token and position.
        """
        if logits.numel() != self.vocab or seen.numel() != self.vocab:
            raise ValueError(
                f"greedy_choice: sized for {self.vocab} ids; got logits {tuple(logits.shape)} "
                f"and a mask of {seen.numel()}"
            )
        if logits.dtype != torch.float32 or not logits.is_contiguous():
            raise ValueError(f"greedy_choice: needs contiguous fp32 logits, got {logits.dtype}")
        _greedy_choice_kernel[(self.programs,)](
            logits, seen.view(torch.uint8), penalty, inputs, self.values, self.indices,
            self.counter, self.vocab, BLOCK=BLOCK, PROGRAMS=self.programs,
            PROGRAMS_P2=triton.next_power_of_2(self.programs), num_warps=4,
        )  # fmt: skip
