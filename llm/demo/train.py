"""Train the demo model on synthetic ReAct episodes rendered exactly as the agent renders them.

Two stages, so the accelerator machine needs nothing but torch and this repository:

``prepare`` (here, needs the tokenizer): every episode is run through the real ``Agent`` with
a recording LLM double that plays the model's two turns; the second prompt the agent built
plus the model's final turn is the training sequence, tokenized the way the engine tokenizes
it. Loss is taken only on the tokens the model writes: the first turn (up to and including the
``Observation:`` stop word) and the final answer with its ``<|im_end|>``. All sequences share
the prompt prefix (system, ReAct instruction, tool description), which is stored once.

``fit`` (any torch device): trains ``llm.model`` with tied embeddings, switching to
fake-quantized Int4 weights (the packer's own rounding) for the last part of training so the
GPTQ checkpoint behaves like the trained float model. Writes the float state dict and config.

    python -m llm.demo.train prepare --out .demo_train/data.pt --episodes 120000
    python -m llm.demo.train fit --data .demo_train/data.pt --out $OUT --minutes 6
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from llm.demo.data import TRAIN_SEED, Episode, generate_episodes, heldout_episodes
from llm.demo.model_setup import DEMO_CONFIG, build_train_model, fake_quant_linears, hidden_states

log = logging.getLogger(__name__)

HELDOUT_GUARD = 2000  # training never sees the first this-many held-out questions


# --- prepare (CPU, tokenizer) ---------------------------------------------------------------


@dataclass
class Rendered:
    """One training sequence: token ids and the spans (start, end) of model-written tokens."""

    ids: list[int]
    spans: list[tuple[int, int]]


def render_episode(episode: Episode, tok: Any) -> Rendered:
    """The sequence the engine sees on the agent's second call, plus the model's final turn."""
    from llm.demo.recording import record_prompts

    prompts = record_prompts(episode)
    if len(prompts) != 2:
        raise RuntimeError(f"expected 2 model calls for {episode.question!r}, got {len(prompts)}")
    first = tok.encode(prompts[0])
    second = tok.encode(prompts[1])
    written = tok.encode(episode.action_text() + "Observation:")
    end1 = len(first) + len(written)
    if second[: len(first)] != first or second[len(first) : end1] != written:
        raise RuntimeError(
            f"the agent's second prompt does not extend its first one by the model's own tokens "
            f"for {episode.question!r}; the training sequence would not match inference"
        )
    final = tok.encode(episode.final_text()) + [tok.im_end_id]
    ids = second + final
    return Rendered(ids, [(len(first), end1), (len(second), len(ids))])


def prepare(out: Path, episodes: int, seed: int = TRAIN_SEED) -> dict[str, Any]:
    """Render and tokenize ``episodes`` training episodes into one tensor file at ``out``."""
    from llm.tokenizer import QwenTokenizer

    tok = QwenTokenizer.default()
    exclude = {e.question for e in heldout_episodes(HELDOUT_GUARD)}
    rendered = [render_episode(e, tok) for e in generate_episodes(episodes, seed, exclude=exclude)]
    prefix = _common_prefix([r.ids for r in rendered])
    vocab = sorted({i for r in rendered for i in r.ids[len(prefix) :]})
    local = {g: i for i, g in enumerate(vocab)}
    if len(vocab) >= 2**15:
        raise RuntimeError(f"{len(vocab)} distinct tokens do not fit the int16 local vocabulary")
    suffixes = [[local[i] for i in r.ids[len(prefix) :]] for r in rendered]
    offsets = [0]
    for s in suffixes:
        offsets.append(offsets[-1] + len(s))
    spans = [[a - len(prefix), b - len(prefix)] for r in rendered for a, b in r.spans]
    data = {
        "prefix": torch.tensor(prefix, dtype=torch.int64),
        "vocab": torch.tensor(vocab, dtype=torch.int64),
        "tokens": torch.tensor([i for s in suffixes for i in s], dtype=torch.int16),
        "offsets": torch.tensor(offsets, dtype=torch.int64),
        "spans": torch.tensor(spans, dtype=torch.int32).view(len(rendered), 2, 2),
        "pad_id": tok.eod_id,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    log.info(
        "%d sequences, prefix %d tokens, %d distinct suffix tokens -> %s",
        len(rendered),
        len(prefix),
        len(vocab),
        out,
    )
    return data


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        n = next((k for k in range(n) if s[k] != first[k]), n)
    return first[:n]


# --- fit (any device, torch only) -----------------------------------------------------------


@dataclass
class FitOptions:
    """Training settings (the defaults produced the committed checkpoint)."""

    minutes: float = 6.0
    max_steps: int = 100_000
    batch_size: int = 128
    lr: float = 3e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.01
    qat_fraction: float = 0.3  # last share of the time trained with fake-quantized weights
    group_size: int = 32
    seed: int = 0
    log_every: int = 100


class Batches:
    """Random training batches built on ``device``: prefix + padded suffix, loss mask."""

    def __init__(self, data: dict[str, Any], device: torch.device) -> None:
        vocab = data["vocab"]
        offsets = data["offsets"]
        tokens = vocab[data["tokens"].long()]
        lengths = offsets[1:] - offsets[:-1]
        n, width = len(lengths), int(lengths.max())
        suffix = torch.full((n, width), int(data["pad_id"]), dtype=torch.int64)
        mask = torch.zeros((n, width), dtype=torch.bool)
        spans = data["spans"]
        for k in range(n):
            suffix[k, : lengths[k]] = tokens[offsets[k] : offsets[k + 1]]
            for a, b in spans[k].tolist():
                mask[k, a:b] = True
        self.prefix = data["prefix"].to(device)
        self.suffix = suffix.to(device)
        self.mask = mask.to(device)
        self.device = device

    def __len__(self) -> int:
        return self.suffix.shape[0]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``(ids, target_mask)``: ids (B, T); target_mask (B, T) marks tokens to predict."""
        rows = torch.randint(len(self), (batch_size,), generator=generator, device="cpu")
        rows = rows.to(self.device)
        suffix = self.suffix[rows]  # (B, S)
        ids = torch.cat([self.prefix.expand(batch_size, -1), suffix], dim=1)  # (B, P + S)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, self.prefix.numel() :] = self.mask[rows]
        return ids, mask


def loss_on_written(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the marked tokens only; logits are computed just at those positions."""
    hidden = hidden_states(model, ids[:, :-1])  # (B, T-1, H)
    targets_mask = mask[:, 1:]  # position t predicts token t+1
    picked = hidden[targets_mask]  # (M, H)
    logits = F.linear(picked, model.lm_head.weight).float()  # (M, V)
    return F.cross_entropy(logits, ids[:, 1:][targets_mask])


def _lr_at(step_frac: float, step: int, opts: FitOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    cosine = 0.5 * (1 + math.cos(math.pi * min(step_frac, 1.0)))
    return opts.min_lr + (opts.lr - opts.min_lr) * cosine


def fit(data_path: Path, out_dir: Path, opts: FitOptions, device: str | None = None) -> Path:
    """Train from the prepared tensor file; write ``demo_fp32.pt`` (state dict + config)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(opts.seed)
    data = torch.load(data_path, weights_only=True)
    batches = Batches(data, dev)
    model = build_train_model(DEMO_CONFIG).to(dev)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opts.lr, betas=(0.9, 0.95), weight_decay=opts.weight_decay
    )
    generator = torch.Generator().manual_seed(opts.seed)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    budget = opts.minutes * 60
    start, step, quantized = time.monotonic(), 0, False
    while step < opts.max_steps:
        frac = max((time.monotonic() - start) / budget, step / opts.max_steps)
        if frac >= 1.0:
            break
        if not quantized and frac >= 1.0 - opts.qat_fraction:
            fake_quant_linears(model, opts.group_size)
            quantized = True
            log.info("step %d: fake-quantized Int4 weights from here on", step)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(frac, step, opts)
        ids, mask = batches.sample(opts.batch_size, generator)
        with autocast:
            loss = loss_on_written(model, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % opts.log_every == 0:
            log.info("step %d  loss %.4f  %.0fs", step, loss.item(), time.monotonic() - start)
        step += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "demo_fp32.pt"
    state = {k: v.detach().float().cpu() for k, v in _plain_state_dict(model).items()}
    torch.save(
        {"state_dict": state, "config": DEMO_CONFIG, "fit": asdict(opts), "steps": step}, path
    )
    log.info("trained %d steps in %.0fs -> %s", step, time.monotonic() - start, path)
    return path


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with parametrized weights stored as their original float tensors."""
    out = {}
    for key, value in model.state_dict().items():
        out[key.replace("parametrizations.", "").replace(".original", "")] = value
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``prepare`` or ``fit``."""
    parser = argparse.ArgumentParser(prog="python -m llm.demo.train")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="render and tokenize training episodes (CPU)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--episodes", type=int, default=120_000)
    f = sub.add_parser("fit", help="train from a prepared file")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--device", default=None)
    for name, value in asdict(FitOptions()).items():
        f.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "prepare":
        prepare(args.out, args.episodes)
    else:
        opts = FitOptions(**{k: getattr(args, k) for k in asdict(FitOptions())})
        fit(args.data, args.out, opts, args.device)


if __name__ == "__main__":
    main()
