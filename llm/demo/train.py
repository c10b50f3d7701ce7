"""Train the demo model on synthetic ReAct episodes rendered exactly as the agent renders them.

Two stages, so the accelerator machine needs nothing but torch and this repository:

``prepare`` (CPU, needs the tokenizer): every episode is run through the real ``Agent`` with
a recording LLM double that plays the model's two turns; the second prompt the agent built
plus the model's final turn is the training sequence, tokenized the way the engine tokenizes
it. Loss is taken only on the tokens the model writes: the first turn (up to and including the
``Observation:`` stop word) and the final answer with its ``<|im_end|>``. Most episodes list
the real code interpreter, the rest the same tool with other descriptions; each of those few
prompt prefixes is stored once, the rest of each sequence as int16 ids into a small vocabulary.

``fit`` (any torch device): trains ``llm.model`` with tied embeddings, switching to
fake-quantized Int4 weights (the packer's own rounding) for the last part of training so the
GPTQ checkpoint behaves like the trained float model. Writes the float weights and config
(the embedding in fp16 parts, as the checkpoint stores it).

    python -m llm.demo.train prepare --out .demo_train/data.pt      # 80,000 episodes, ~4 min
    python -m llm.demo.train fit --data .demo_train/data.pt --out OUT  # 5.5 min on one GPU
    python -m llm.demo.quantize OUT/demo_fp32.pt llm/demo/checkpoint
"""

from __future__ import annotations

import argparse
import logging
import math
import random
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
REAL_FACE_SHARE = 0.6  # share of episodes listing the real code interpreter description


# --- prepare (CPU, tokenizer) ---------------------------------------------------------------


@dataclass
class Rendered:
    """One training sequence: token ids and the spans (start, end) of model-written tokens."""

    ids: list[int]
    spans: list[tuple[int, int]]


def render_episode(episode: Episode, tok: Any, face: Any = None) -> Rendered:
    """The sequence the engine sees on the agent's second call, plus the model's final turn.

    ``face`` is the tool description the agent lists (default: the real code interpreter's).
    """
    from llm.demo.recording import record_prompts

    prompts = record_prompts(episode, face)
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
    """Render and tokenize ``episodes`` training episodes into one tensor file at ``out``.

    Most episodes list the real code interpreter; the rest list it with other descriptions,
    so the model keys on the question rather than on the exact instruction text.
    """
    from llm.demo.recording import tool_faces
    from llm.tokenizer import QwenTokenizer

    tok = QwenTokenizer.default()
    faces = tool_faces()
    rng = random.Random(seed)
    exclude = {e.question for e in heldout_episodes(HELDOUT_GUARD)}
    chosen, rendered = [], []
    for episode in generate_episodes(episodes, seed, exclude=exclude):
        k = 0 if rng.random() < REAL_FACE_SHARE else rng.randrange(1, len(faces))
        chosen.append(k)
        rendered.append(render_episode(episode, tok, faces[k]))
    prefixes = [
        _common_prefix([r.ids for r, c in zip(rendered, chosen) if c == k])
        for k in range(len(faces))
    ]
    cut = [len(prefixes[c]) for c in chosen]
    vocab = sorted({i for r, n in zip(rendered, cut) for i in r.ids[n:]})
    local = {g: i for i, g in enumerate(vocab)}
    if len(vocab) >= 2**15:
        raise RuntimeError(f"{len(vocab)} distinct tokens do not fit the int16 local vocabulary")
    suffixes = [[local[i] for i in r.ids[n:]] for r, n in zip(rendered, cut)]
    offsets = [0]
    for suffix in suffixes:
        offsets.append(offsets[-1] + len(suffix))
    spans = [[a - n, b - n] for r, n in zip(rendered, cut) for a, b in r.spans]
    width = max(len(p) for p in prefixes)
    data = {
        "prefixes": torch.tensor([p + [tok.eod_id] * (width - len(p)) for p in prefixes]),
        "prefix_lens": torch.tensor([len(p) for p in prefixes]),
        "prefix_of": torch.tensor(chosen, dtype=torch.int16),
        "vocab": torch.tensor(vocab, dtype=torch.int64),
        "tokens": torch.tensor([i for s in suffixes for i in s], dtype=torch.int16),
        "offsets": torch.tensor(offsets, dtype=torch.int64),
        "spans": torch.tensor(spans, dtype=torch.int32).view(len(rendered), 2, 2),
        "pad_id": tok.eod_id,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    log.info(
        "%d sequences, %d prompt prefixes (%s tokens), %d distinct suffix tokens -> %s",
        len(rendered),
        len(prefixes),
        "/".join(str(len(p)) for p in prefixes),
        len(vocab),
        out,
    )
    return data


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    if not seqs:
        return []
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        n = next((k for k in range(n) if s[k] != first[k]), n)
    return first[:n]


# --- fit (any device, torch only) -----------------------------------------------------------


@dataclass
class FitOptions:
    """Training settings (the defaults produced the committed checkpoint)."""

    minutes: float = 5.5
    max_steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.01
    qat_fraction: float = 0.3  # last share of the time trained with fake-quantized weights
    group_size: int = 32
    seed: int = 0
    log_every: int = 100


class Batches:
    """Random training batches built on ``device``: prompt prefix + suffix, loss mask."""

    def __init__(self, data: dict[str, Any], device: torch.device) -> None:
        tokens = data["vocab"][data["tokens"].long()]  # global ids, all suffixes joined
        offsets = data["offsets"]
        lengths = offsets[1:] - offsets[:-1]
        n, width = len(lengths), int(lengths.max())
        rows = torch.repeat_interleave(torch.arange(n), lengths)
        cols = torch.arange(len(tokens)) - offsets[:-1][rows]
        pad = int(data["pad_id"])
        suffix = torch.full((n, width), pad, dtype=torch.int64)
        suffix[rows, cols] = tokens
        spans = data["spans"].long()  # (N, 2, 2): start/end of the two written spans
        pos = torch.arange(width)
        mask = torch.zeros((n, width), dtype=torch.bool)
        for s in range(spans.shape[1]):
            mask |= (pos >= spans[:, s, :1]) & (pos < spans[:, s, 1:])
        self.prefixes = data["prefixes"].to(device)  # (K, P) padded
        self.prefix_lens = data["prefix_lens"].to(device)
        self.prefix_of = data["prefix_of"].long().to(device)
        self.suffix = suffix.to(device)
        self.lengths = lengths.to(device)
        self.mask = mask.to(device)
        self.pad = pad
        self.device = device

    def __len__(self) -> int:
        return self.suffix.shape[0]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``(ids, target_mask)``: ids (B, T); target_mask (B, T) marks tokens to predict."""
        rows = torch.randint(len(self), (batch_size,), generator=generator).to(self.device)
        k = self.prefix_of[rows]
        p_width, s_width = self.prefixes.shape[1], self.suffix.shape[1]
        joined = torch.cat([self.prefixes[k], self.suffix[rows]], dim=1)  # (B, P + S), gapped
        written = torch.cat(
            [torch.zeros_like(self.prefixes[k], dtype=torch.bool), self.mask[rows]], dim=1
        )
        # close the gap after each prefix: position j reads j before p, else P + (j - p)
        j = torch.arange(p_width + s_width, device=self.device).expand(batch_size, -1)
        p = self.prefix_lens[k].unsqueeze(1)  # (B, 1)
        source = torch.where(j < p, j, (p_width + j - p).clamp(max=p_width + s_width - 1))
        ids = joined.gather(1, source)
        mask = written.gather(1, source) & (j - p < s_width)
        ids = torch.where((j - p) < s_width, ids, self.pad)
        used = int((p.squeeze(1) + self.lengths[rows]).max())  # drop all-padding columns
        return ids[:, :used], mask[:, :used]


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
    meta = {"config": DEMO_CONFIG, "fit": asdict(opts), "steps": step}
    path = save_trained(out_dir, _plain_state_dict(model), meta)
    log.info("trained %d steps in %.0fs -> %s", step, time.monotonic() - start, path)
    return path


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with parametrized weights stored as their original float tensors."""
    out = {}
    for key, value in model.state_dict().items():
        out[key.replace("parametrizations.", "").replace(".original", "")] = value
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


TRAINED_FILE = "demo_fp32.pt"
EMBEDDING = "transformer.wte.weight"
_CHUNK_ROWS = 50_688  # 152064 / 3: each embedding part stays under 16 MB in fp16


def save_trained(out_dir: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write the trained weights: blocks in fp32, the embedding in fp16 row chunks.

    The embedding is stored in fp16 in the checkpoint anyway; chunking keeps every file small.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in state.items()}
    embedding = state.pop(EMBEDDING).half()
    parts = embedding.split(_CHUNK_ROWS)
    for i, part in enumerate(parts):
        torch.save(part.clone(), out_dir / f"demo_wte.{i}.pt")
    blocks = {k: v.float() for k, v in state.items()}
    path = out_dir / TRAINED_FILE
    torch.save({"state_dict": blocks, "embedding_parts": len(parts), **meta}, path)
    return path


def load_trained(path: Path) -> dict[str, Any]:
    """Read what ``save_trained`` wrote (``path`` is its ``demo_fp32.pt``)."""
    saved = torch.load(path, weights_only=True)
    parts = [
        torch.load(path.parent / f"demo_wte.{i}.pt", weights_only=True)
        for i in range(saved["embedding_parts"])
    ]
    saved["state_dict"][EMBEDDING] = torch.cat(parts)
    return saved


def main(argv: list[str] | None = None) -> None:
    """Command line: ``prepare`` or ``fit``."""
    parser = argparse.ArgumentParser(prog="python -m llm.demo.train")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="render and tokenize training episodes (CPU)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--episodes", type=int, default=80_000)
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
