"""Int4 (GPTQ) CUDA kernels in Triton, their PyTorch twins, and ``accelerate(model)``.

Importing this package needs no GPU; the Triton modules load on first use on a CUDA device.
"""

from llm.kernels.linear import Int4Linear, accelerate

__all__ = ["Int4Linear", "accelerate"]
