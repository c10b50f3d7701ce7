"""End-to-end part of the GPU benchmark: the full Qwen-14B-Chat-Int4 shape with random weights."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from llm.config import QwenConfig
from llm.cuda_graph import CudaGraphDecoder
from llm.generate import Generator
from llm.model import QwenForCausalLM, ntk_alpha
from llm.quant import GPTQLinear, swap_linears

log = logging.getLogger("bench_gpu")
GIB = 1024**3
CONTEXTS = (0, 1024, 2048, 4096, 8192)
KV_BYTES_PER_TOKEN = 40 * 2 * 5120 * 2


def random_model(cfg: QwenConfig) -> QwenForCausalLM:
    """Qwen-14B-Chat-Int4 layout (symmetric g128, fp16) with random values, built on the GPU."""
    with torch.device("meta"):
        model = QwenForCausalLM(cfg).half()
    swap_linears(model, 128, dtype=torch.float16)
    model = model.to_empty(device="cuda").eval()
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        with torch.no_grad():
            if name.endswith("qweight"):
                t.copy_(
                    torch.randint(
                        -(2**31),
                        2**31 - 1,
                        t.shape,
                        device="cuda",
                        dtype=torch.int32,
                        generator=gen,
                    )
                )
            elif name.endswith("qzeros"):
                t.fill_(0x77777777)
            elif name.endswith("scales"):
                t.uniform_(0.5e-3, 1.5e-3, generator=gen)
            elif name.endswith("g_idx"):
                t.copy_(torch.arange(t.numel(), device="cuda") // 128)
            elif name.endswith("bias"):
                t.zero_() if "c_attn" not in name else t.normal_(0, 0.02, generator=gen)
            elif (
                name.endswith("ln_1.weight")
                or name.endswith("ln_2.weight")
                or name.endswith("ln_f.weight")
            ):
                t.fill_(1.0)
            else:
                t.normal_(0, 0.02, generator=gen)
    return model


def int4_bytes(model: torch.nn.Module) -> int:
    from llm.kernels.linear import Int4Linear

    total = 0
    for m in model.modules():
        if isinstance(m, (Int4Linear, GPTQLinear)):
            total += m.qweight.numel() * 4 + m.scales.numel() * 2
    return total


def new_generator(model, max_len: int) -> Generator:
    gen = Generator(model, max_len=max_len, device=torch.device("cuda"), dtype=torch.float16)
    gen.decode_step = CudaGraphDecoder()
    cache, _ = gen._ensure_buffers()
    cache.k.normal_(0, 1)
    cache.v.normal_(0, 1)
    return gen


def time_decode(gen: Generator, context: int, steps: int) -> float:
    """Seconds per token of greedy decode at ``context`` (``Generator.greedy_continue``: every
    id is read back to the host, with the next step already queued)."""
    gen.rope.set_alpha(gen.config, ntk_alpha(gen.config, max(context, 1)))
    for _ in range(2):
        gen.cached_ids = [1] * context
        for _ in gen.greedy_continue(100, 8):
            pass
    gen.cached_ids = [1] * context
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = sum(1 for _ in gen.greedy_continue(100, steps))
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def time_prefill(gen: Generator, n: int, reps: int = 3) -> tuple[float, float]:
    """(prefill seconds, TTFT seconds: prefill + argmax of the first token) for ``n`` tokens."""
    ids = torch.randint(0, 150000, (n,)).tolist()
    best = (float("inf"), float("inf"))
    for _ in range(reps + 1):
        gen.reset()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = gen.prefill(ids)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        int(logits.argmax())
        t2 = time.perf_counter()
        best = min(best, (t1 - t0, t2 - t0))
    return best


def agent_episode(gen: Generator, reuse: bool) -> dict:
    """Wall time of a scripted 3-step ReAct episode (fixed lengths), teacher-forced decode."""
    g = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(0, 150000, (n,), generator=g).tolist()  # noqa: E731
    prompt = ids(760)  # system + ReAct instruction with one tool description + user question
    steps = [(70, 120), (90, 260), (110, 0)]  # (model output tokens, observation tokens)
    gen.reset()
    prefill_s = decode_s = 0.0
    for out_len, obs_len in steps:
        if not reuse:
            gen.reset()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen.prefill(prompt).argmax().item()
        t1 = time.perf_counter()
        out = ids(out_len)
        for t in out:
            gen.decode(t).argmax().item()
        t2 = time.perf_counter()
        prefill_s += t1 - t0
        decode_s += t2 - t1
        prompt = prompt + out + ids(obs_len)
    return {"total_s": prefill_s + decode_s, "prefill_s": prefill_s, "decode_s": decode_s}


@torch.inference_mode()
def run_agent() -> dict:
    """The agent-level figure alone, each variant run twice (the first run warms shapes up)."""
    from llm.kernels import accelerate

    model = accelerate(random_model(QwenConfig.from_name("qwen-14b")))
    gen = new_generator(model, 4096)
    time_decode(gen, 0, 8)
    runs = {}
    for label, reuse in (
        ("reuse", True),
        ("reprefill", False),
        ("reuse_2", True),
        ("reprefill_2", False),
    ):
        runs[label] = agent_episode(gen, reuse)
        log.info("agent %s: %s", label, runs[label])
    return runs


class TinyGemmLinear(torch.nn.Module):
    """Baseline: torch's stock int4 kernel (``aten._weight_int4pack_mm``, bf16) on the same weights."""

    def __init__(self, fast: torch.nn.Module) -> None:
        super().__init__()
        from llm.kernels.layout import unpack_repacked

        q = unpack_repacked(fast.qweight).t().contiguous()  # (N, K)
        packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        self.w = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
        s = fast.scales.to(torch.bfloat16)
        self.sz = torch.stack([s, torch.zeros_like(s)], -1).contiguous()
        self.bias = fast.bias
        self.group = fast.group_size
        self.out_features = fast.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm(x2, self.w, self.group, self.sz).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def to_baseline(model: torch.nn.Module) -> None:
    from llm.kernels.linear import Int4Linear

    for name, m in list(model.named_modules()):
        if isinstance(m, Int4Linear):
            parent_name, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent_name), leaf, TinyGemmLinear(m))
    torch.cuda.empty_cache()


def apply_tuning(model: torch.nn.Module, kernels: dict | None) -> dict:
    """Give each int4 layer the fastest launch shape the kernel part measured for its shape."""
    from llm.kernels.gemv import GemvConfig
    from llm.kernels.linear import Int4Linear

    if not kernels:
        return {}
    by_shape = {
        (r["K"], r["N"]): r["best_config"]
        for r in kernels.get("shapes", {}).values()
        if "best_config" in r
    }
    gated = kernels.get("gated_mlp", {}).get("best_config")
    for name, m in model.named_modules():
        if isinstance(m, Int4Linear):
            best = by_shape.get((m.in_features, m.out_features))
            if best is not None:
                m.gemv_config = GemvConfig(**best)
            if gated is not None and name.endswith("mlp.w1"):
                m.gated_config = GemvConfig(**gated)
    return {"gemv": {f"{k}x{n}": v for (k, n), v in by_shape.items()}, "gated": gated}


def overlapped_boundaries(device: torch.device) -> list[str]:
    """The decode step's kernel boundaries that overlap on ``device`` (``DecodeOverlap``)."""
    from dataclasses import asdict

    from llm.cuda_graph import DECODE_OVERLAP
    from llm.kernels.overlap import overlap_supported

    if not overlap_supported(device):
        return []
    return [edge for edge, on in asdict(DECODE_OVERLAP).items() if on]


@torch.inference_mode()
def run_e2e(out_dir: Path, quick: bool = False, tuned: dict | None = None) -> dict:
    from llm.benchmarks.kernel_bench import copy_bandwidth
    from llm.kernels import accelerate

    bw = copy_bandwidth()
    cfg = QwenConfig.from_name("qwen-14b")
    t0 = time.perf_counter()
    model = accelerate(random_model(cfg))
    torch.cuda.synchronize()
    res: dict = {"copy_tbps": bw / 1e12, "build_s": time.perf_counter() - t0}
    res["launch_shapes"] = apply_tuning(model, tuned)
    res["overlapped_boundaries"] = overlapped_boundaries(torch.device("cuda"))
    wbytes = int4_bytes(model) + model.lm_head.weight.numel() * 2
    res["bytes_per_token_weights"] = wbytes
    steps = 32 if quick else 96

    # memory: encoding 2048 tokens (cache sized to the need, as the engine's max_seq_len does)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    gen = new_generator(model, 2049)
    res["prefill_2048_s"], res["ttft_2048_s"] = time_prefill(gen, 2048)
    int(gen.decode(5).argmax())
    res["peak_gib_encode_2048"] = torch.cuda.max_memory_allocated() / GIB
    log.info("partial: %s", {k: v for k, v in res.items() if k != "decode"})
    del gen
    torch.cuda.empty_cache()

    # memory and speed: generating 8192 tokens from a 1-token context
    torch.cuda.reset_peak_memory_stats()
    gen = new_generator(model, 8193)
    n_gen = 1024 if quick else 8191
    gen.reset()
    tok = int(gen.prefill([100]).argmax())
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n_gen = sum(1 for _ in gen.greedy_continue(tok, n_gen))
    torch.cuda.synchronize()
    res["generate_tokens"] = n_gen + 1
    res["generate_tok_s"] = n_gen / (time.perf_counter() - t0)
    res["peak_gib_generate_8192"] = torch.cuda.max_memory_allocated() / GIB

    log.info("partial: %s", {k: v for k, v in res.items() if k != "decode"})
    del gen
    torch.cuda.empty_cache()
    gen = new_generator(model, CONTEXTS[-1] + steps + 8)
    decode = {}
    for c in CONTEXTS:
        s = time_decode(gen, c, steps)
        byts = wbytes + (c + 1) * KV_BYTES_PER_TOKEN
        decode[c] = {
            "tok_s": 1 / s,
            "ms": s * 1e3,
            "tbps": byts / s / 1e12,
            "share": byts / s / bw,
            "ceiling_tok_s": bw / byts,
        }
        log.info("decode ctx %d: %.1f tok/s", c, 1 / s)
    res["decode"] = decode
    res["profile_1k"] = profile_step(model, gen, 1024)
    for reuse in (True, False):  # untimed: the first episodes pay one-time prefill set-up
        agent_episode(gen, reuse=reuse)
    res["agent_reuse"] = agent_episode(gen, reuse=True)
    res["agent_reprefill"] = agent_episode(gen, reuse=False)
    del gen
    torch.cuda.empty_cache()

    log.info("partial: %s", {k: v for k, v in res.items() if k != "decode"})
    to_baseline(model)
    gen = new_generator(model, CONTEXTS[-1] + steps + 8)
    res["baseline_decode"] = {c: {"tok_s": 1 / time_decode(gen, c, steps)} for c in CONTEXTS}
    for c in CONTEXTS:
        res["baseline_decode"][c]["ratio"] = decode[c]["tok_s"] / res["baseline_decode"][c]["tok_s"]
    plot(res, out_dir / "decode_vs_context.png")
    return res


KERNEL_KINDS = (  # (substring of the kernel name, label)
    ("_int4_gemv", "int4 GEMV (4 per layer)"),
    ("_attn_", "attention (rotary, KV write, split-KV, combine)"),
    ("_add_rmsnorm", "add + RMSNorm"),
    ("_silu_mul", "SiLU gate"),
    ("_logits_kernel", "lm_head (Triton fp16 GEMV)"),
    ("nvjet", "lm_head (cuBLAS fp16)"),
    ("gemv", "lm_head (cuBLAS fp16)"),
    ("gemm", "lm_head (cuBLAS fp16)"),
    ("xmma", "lm_head (cuBLAS fp16)"),
)


def profile_step(model, gen: Generator, context: int, reps: int = 5) -> dict:
    """GPU time per token by kernel kind for the eager fused step (torch profiler, CUPTI)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from llm.cuda_graph import fast_decode_step

    try:
        tok = torch.tensor([[100]], device="cuda")
        pos = torch.tensor([context], device="cuda")
        for _ in range(2):
            fast_decode_step(model, tok, pos, gen.rope, gen.cache)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                fast_decode_step(model, tok, pos, gen.rope, gen.cache)
            torch.cuda.synchronize()
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for e in prof.events():
            if e.device_type != DeviceType.CUDA:
                continue
            label = next(
                (lab for key, lab in KERNEL_KINDS if key in e.name), "other: " + e.name[:40]
            )
            totals[label] = totals.get(label, 0.0) + e.time_range.elapsed_us() / reps
            counts[label] = counts.get(label, 0) + 1
        return {
            k: {"us": v, "kernels": counts[k] // reps}
            for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
        }
    except Exception as e:  # noqa: BLE001 - the profile is informative, never fatal
        return {"error": repr(e)[:300]}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctx = list(res["decode"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(
        ctx, [res["decode"][c]["ceiling_tok_s"] for c in ctx], "k--", label="copy-bandwidth ceiling"
    )
    ax.plot(
        ctx,
        [res["decode"][c]["tok_s"] for c in ctx],
        "o-",
        label="qwen-react (Triton int4 + CUDA graph)",
    )
    ax.plot(
        ctx,
        [res["baseline_decode"][c]["tok_s"] for c in ctx],
        "s-",
        label="stock int4 (aten tinygemm)",
    )
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("decode tokens/s (batch 1)")
    ax.set_title("Qwen-14B-Chat-Int4 shape, H200")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def e2e_table(res: dict) -> str:
    lines = [
        "| context | tok/s | ms/token | TB/s | share of copy bw | ceiling tok/s | stock int4 tok/s | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, d in res["decode"].items():
        b = res["baseline_decode"][c]
        lines.append(
            f"| {c} | {d['tok_s']:.1f} | {d['ms']:.2f} | {d['tbps']:.2f} | {d['share']:.0%} "
            f"| {d['ceiling_tok_s']:.0f} | {b['tok_s']:.1f} | {b['ratio']:.2f}x |"
        )
    lines += [
        "",
        f"prefill 2048 tokens: {res['prefill_2048_s'] * 1e3:.1f} ms; TTFT {res['ttft_2048_s'] * 1e3:.1f} ms",
        f"peak memory: encode 2048 {res['peak_gib_encode_2048']:.2f} GiB; "
        f"generate {res['generate_tokens']} {res['peak_gib_generate_8192']:.2f} GiB "
        f"({res['generate_tok_s']:.1f} tok/s averaged)",
        "GPU time per token at 1k context (eager fused step, profiler): "
        + "; ".join(
            f"{k} {v.get('us', 0):.0f} us/{v.get('kernels', 0)}"
            for k, v in res.get("profile_1k", {}).items()
            if isinstance(v, dict)
        ),
        f"agent 3-step episode: cache reuse {res['agent_reuse']['total_s']:.3f} s, "
        f"re-prefill {res['agent_reprefill']['total_s']:.3f} s",
    ]
    return "\n".join(lines)
