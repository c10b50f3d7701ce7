"""CPU baseline of the local engine: load time, prefill and decode speed of a checkpoint.

Without ``--model-dir`` a tiny random checkpoint (the test shape unless overridden) is written
to a temporary directory. Warm-up runs are excluded. Prints a table, then one JSON line.

    python -m llm.benchmarks.bench_cpu --prompt-tokens 128 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from llm.engine import load_engine
from llm.types import SamplingParams


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step reads: every parameter and buffer except the embedding table."""
    skip = model.transformer.wte.weight.data_ptr()
    seen, total = {skip}, model.transformer.wte.weight.shape[1] * 4
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def timed_decode(engine, prompt: list[int], n: int, sampling: SamplingParams) -> tuple[float, int]:
    """Seconds spent generating ``n`` tokens after the prefill (stop tokens ignored)."""
    gen = engine.generator
    gen.reset()
    tokens = gen.generate(prompt, max_new_tokens=n + 1, sampling=sampling)
    next(tokens)  # prefill + first token: not part of decode time
    start = time.perf_counter()
    count = sum(1 for _ in tokens)
    return time.perf_counter() - start, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--layers", type=int, default=2, help="tiny checkpoint layers")
    parser.add_argument("--hidden", type=int, default=64, help="tiny checkpoint hidden size")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from llm.testing import make_tiny_checkpoint

            model_dir = make_tiny_checkpoint(
                Path(tmp) / "tiny",
                num_hidden_layers=args.layers,
                hidden_size=args.hidden,
                num_attention_heads=args.hidden // 16,
                kv_channels=16,
                intermediate_size=4 * args.hidden,
            )
        t0 = time.perf_counter()
        engine = load_engine(model_dir, device="cpu", progress=False)
        load_s = time.perf_counter() - t0
        prompt = list(range(1000, 1000 + args.prompt_tokens))

        gen = engine.generator
        gen.reset()
        gen.prefill(prompt)  # warm-up
        gen.reset()
        t0 = time.perf_counter()
        gen.prefill(prompt)
        prefill_s = time.perf_counter() - t0

        greedy = SamplingParams.greedy()
        timed_decode(engine, prompt, 4, greedy)  # warm-up
        greedy_s, n_greedy = timed_decode(engine, prompt, args.new_tokens, greedy)
        sample_s, n_sample = timed_decode(engine, prompt, args.new_tokens, SamplingParams(seed=0))

    per_token = weight_bytes(engine.model)
    greedy_tps = n_greedy / greedy_s
    result = {
        "bench": "cpu",
        "model_layers": engine.config.num_hidden_layers,
        "hidden_size": engine.config.hidden_size,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "prompt_tokens": len(prompt),
        "ttft_s": round(prefill_s, 4),
        "prefill_tok_s": round(len(prompt) / prefill_s, 1),
        "decode_tok_s_greedy": round(greedy_tps, 1),
        "decode_tok_s_sampling": round(n_sample / sample_s, 1),
        "bytes_per_token": per_token,
        "achieved_gb_s": round(per_token * greedy_tps / 1e9, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
