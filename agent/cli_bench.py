"""``qwen-react bench``: time-to-first-token, prefill and decode speed of the local engine.

Each repeat starts from an empty KV cache, prefills a fixed prompt of ``prompt_tokens`` ids,
then decodes ``new_tokens`` greedy tokens without stopping at end-of-text, so every repeat
does the same work. One warm-up repeat is not counted; the median of the rest is reported.
Achieved bandwidth is the weight bytes read per decoded token times decode tokens/s (the KV
cache reads are not counted). The table is for people; the JSON line after it is for scripts.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

_FILLER = "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。"


def prompt_ids(engine: Any, n: int) -> list[int]:
    """``n`` deterministic token ids of ordinary text."""
    ids: list[int] = []
    while len(ids) < n:
        ids += engine.tokenizer.encode(_FILLER, allowed_special=set())
    return ids[:n]


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer (each shared tensor counted once)."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_repeat(engine: Any, ids: list[int], new_tokens: int) -> tuple[float, float]:
    """(seconds to the first token, seconds for the remaining ``new_tokens - 1`` tokens)."""
    generator, device = engine.generator, engine.device
    generator.reset()
    _sync(device)
    start = time.perf_counter()
    token = int(generator.prefill(ids).argmax())
    _sync(device)
    first = time.perf_counter()
    for _ in generator.greedy_continue(token, new_tokens - 1):
        pass
    _sync(device)
    return first - start, time.perf_counter() - first


def run_bench(
    engine: Any, *, prompt_tokens: int = 512, new_tokens: int = 128, repeats: int = 3
) -> dict[str, Any]:
    """Measure the engine; returns the numbers of the report (times in seconds)."""
    if prompt_tokens < 1 or new_tokens < 2 or repeats < 1:
        raise ValueError("bench needs --prompt-tokens >= 1, --new-tokens >= 2, --repeats >= 1")
    limit = engine.generator.max_len
    if prompt_tokens + new_tokens > limit:
        raise ValueError(
            f"--prompt-tokens {prompt_tokens} + --new-tokens {new_tokens} exceed the model's "
            f"context of {limit} tokens"
        )
    ids = prompt_ids(engine, prompt_tokens)
    device = engine.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = [_one_repeat(engine, ids, new_tokens) for _ in range(repeats + 1)][1:]
    ttft = statistics.median(r[0] for r in runs)
    decode_s = statistics.median(r[1] for r in runs)
    decode_tps = (new_tokens - 1) / decode_s
    nbytes = weight_bytes(engine.model)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(engine.dtype).removeprefix("torch."),
        "layers": engine.config.num_hidden_layers,
        "hidden_size": engine.config.hidden_size,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "ttft_s": round(ttft, 5),
        "prefill_tok_s": round(prompt_tokens / ttft, 2),
        "decode_tok_s": round(decode_tps, 2),
        "decode_ms_per_token": round(1000 / decode_tps, 3),
        "weight_bytes": nbytes,
        "achieved_gb_s": round(nbytes * decode_tps / 1e9, 2),
    }
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The human table, then the JSON line."""
    rows = [
        ("device", f"{report['device']} ({report['dtype']})"),
        ("model", f"{report['layers']} layers, hidden {report['hidden_size']}"),
        ("weights", f"{report['weight_bytes'] / 2**20:.1f} MiB"),
        ("prompt / new tokens", f"{report['prompt_tokens']} / {report['new_tokens']}"),
        ("time to first token", f"{report['ttft_s'] * 1000:.1f} ms"),
        ("prefill", f"{report['prefill_tok_s']:.1f} tok/s"),
        ("decode", f"{report['decode_tok_s']:.1f} tok/s ({report['decode_ms_per_token']} ms)"),
        ("weight bandwidth", f"{report['achieved_gb_s']:.2f} GB/s"),
    ]
    if "peak_memory_gib" in report:
        rows.append(("peak GPU memory", f"{report['peak_memory_gib']:.2f} GiB"))
    width = max(len(name) for name, _ in rows)
    table = "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
    return f"{table}\n{json.dumps(report, separators=(',', ':'))}"
