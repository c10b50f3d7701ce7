"""Turn the trained float demo model into a GPTQ Int4 checkpoint (Qwen-14B-Chat-Int4 layout).

The block linears are packed by the project's own ``llm.gptq_pack`` (round to nearest,
symmetric, the same rounding the model was fine-tuned through); the embedding, tied with the
output layer, and the norms are stored as fp16. The directory gets the same files as the real
checkpoint: ``config.json``, ``quantize_config.json``, ``generation_config.json``,
``tokenizer_config.json``, ``qwen.tiktoken`` and ``model-0000N-of-0000M.safetensors`` with
their index.

    python -m llm.demo.quantize demo_fp32.pt llm/demo/checkpoint
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from llm.config import QuantizeConfig, QwenConfig
from llm.demo.model_setup import GROUP_SIZE
from llm.demo.train import load_trained
from llm.gptq_pack import quantize_state_dict
from llm.testing import write_checkpoint

log = logging.getLogger(__name__)

NUM_SHARDS = 2


def quantize_checkpoint(
    trained: Path | dict[str, Any], out_dir: Path, group_size: int = GROUP_SIZE
) -> Path:
    """Write the Int4 checkpoint of ``trained`` (a ``train.fit`` file or its loaded dict)."""
    saved = load_trained(trained) if isinstance(trained, Path) else trained
    quant = QuantizeConfig(group_size=group_size)
    cfg = QwenConfig(**{**saved["config"], "quantization": quant})
    state = dict(saved["state_dict"])
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    tensors = quantize_state_dict(state, group_size)

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("model*.safetensors*"):
        old.unlink()
    write_checkpoint(out_dir, cfg, quant, tensors, NUM_SHARDS)
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    log.info("wrote %s (%.1f MB)", out_dir, size / 1e6)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m llm.demo.quantize TRAINED.pt OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m llm.demo.quantize")
    parser.add_argument("trained", type=Path, help="demo_fp32.pt written by llm.demo.train fit")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--group-size", type=int, default=GROUP_SIZE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quantize_checkpoint(args.trained, args.out_dir, args.group_size)


if __name__ == "__main__":
    main()
