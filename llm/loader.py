"""Load a Qwen checkpoint directory (Int4 GPTQ or float) into ``QwenForCausalLM``.

The model is built on the meta device, its block linears swapped for ``GPTQLinear``, and every
tensor is read from the memory-mapped shards named by ``model.safetensors.index.json`` and
assigned in place. Each expected tensor is checked for presence, shape and dtype first; errors
name the tensor and the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from llm.config import CheckpointConfig, CheckpointError, load_checkpoint_config, read_json
from llm.model import QwenForCausalLM
from llm.quant import QUANTIZED_LINEARS, GPTQLinear, num_groups, swap_linears

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
SUPPORTED_BITS = 4

_ST_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I32": torch.int32,
    "I64": torch.int64,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_INT_BUFFERS = ("qweight", "qzeros", "g_idx")


class MissingShardError(CheckpointError):
    """A shard file named by the index does not exist."""


class TensorMismatchError(CheckpointError):
    """A tensor is missing or has the wrong shape or dtype."""


class UnsupportedCheckpointError(CheckpointError):
    """The checkpoint is valid but uses a format this engine cannot run (e.g. bits != 4)."""


def read_weight_map(model_dir: Path) -> tuple[dict[str, str], Path]:
    """``{tensor name: shard file name}`` and the file it came from (index or single file)."""
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        index = read_json(index_path)
        weight_map = (index or {}).get("weight_map")
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise CheckpointError(f"{index_path}: 'weight_map' must map tensor names to files")
        return weight_map, index_path
    single = model_dir / SINGLE_FILE
    if single.is_file():
        with _open_shard(single) as f:
            names = list(f.keys())
        return dict.fromkeys(names, SINGLE_FILE), single
    raise CheckpointError(f"{model_dir}: neither {INDEX_FILE} nor {SINGLE_FILE} found")


def _open_shard(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path}: cannot read safetensors file (truncated or corrupt): {e}"
        ) from e


def check_quantization(ckpt: CheckpointConfig) -> None:
    """Refuse GPTQ settings this engine cannot run."""
    q = ckpt.quantize
    if q is None:
        return
    where = ckpt.directory / "quantize_config.json"
    if q.quant_method != "gptq":
        raise UnsupportedCheckpointError(
            f"{where}: quant_method {q.quant_method!r} is not supported (only gptq)"
        )
    if q.bits != SUPPORTED_BITS:
        raise UnsupportedCheckpointError(
            f"{where}: bits={q.bits} is not supported; this engine runs {SUPPORTED_BITS}-bit GPTQ only"
        )


def build_model(
    ckpt: CheckpointConfig, weight_map: dict[str, str], dtype: torch.dtype
) -> QwenForCausalLM:
    """The model on the meta device, with int4 layers where the checkpoint is quantized."""
    with torch.device("meta"):
        model = QwenForCausalLM(ckpt.model)
    if ckpt.quantize is not None:
        swap_linears(
            model,
            ckpt.quantize.group_size,
            suffixes=QUANTIZED_LINEARS,
            has_bias=lambda name: f"{name}.bias" in weight_map,
            dtype=dtype,
        )
    return model


def expected_tensors(model: QwenForCausalLM) -> dict[str, torch.Tensor]:
    """Meta tensors (shape, dtype) the checkpoint must provide, by name."""
    expected = dict(model.state_dict(keep_vars=True))
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    return expected


def _check_entry(
    name: str, shape: list[int], st_dtype: str, want: torch.Tensor, shard: Path
) -> None:
    if tuple(shape) != tuple(want.shape):
        raise TensorMismatchError(
            f"{shard}: tensor {name} has shape {tuple(shape)}, expected {tuple(want.shape)}"
        )
    dtype = _ST_DTYPES.get(st_dtype)
    leaf = name.rpartition(".")[2]
    if leaf in _INT_BUFFERS and want.dtype == torch.int32:
        ok = dtype == torch.int32
    else:
        ok = dtype is not None and dtype.is_floating_point
    if not ok:
        expected = "int32" if leaf in _INT_BUFFERS and want.dtype == torch.int32 else "a float type"
        raise TensorMismatchError(
            f"{shard}: tensor {name} has dtype {st_dtype}, expected {expected}"
        )


def _shards(
    model_dir: Path, weight_map: dict[str, str], names: list[str], source: Path
) -> dict[str, list[str]]:
    by_file: dict[str, list[str]] = {}
    for name in names:
        if name not in weight_map:
            raise TensorMismatchError(f"{source}: tensor {name} is missing from the checkpoint")
        by_file.setdefault(weight_map[name], []).append(name)
    for fname, held in by_file.items():
        if not (model_dir / fname).is_file():
            raise MissingShardError(
                f"{model_dir / fname}: shard file not found (named by {source.name} for {held[0]} "
                f"and {len(held) - 1} more tensors)"
            )
    return by_file


def _read_tensors(
    model_dir: Path,
    by_file: dict[str, list[str]],
    expected: dict[str, torch.Tensor],
    progress: bool,
) -> Iterator[tuple[str, torch.Tensor, Path]]:
    total = sum(len(v) for v in by_file.values())
    with (
        ExitStack() as stack,
        tqdm(total=total, desc="Loading weights", unit="tensor", disable=not progress) as bar,
    ):
        for fname, names in by_file.items():
            path = model_dir / fname
            f = stack.enter_context(_open_shard(path))
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise TensorMismatchError(f"{path}: tensor {name} is not in this shard")
                sl = f.get_slice(name)
                _check_entry(name, sl.get_shape(), sl.get_dtype(), expected[name], path)
                try:
                    tensor = f.get_tensor(name)
                except (SafetensorError, OSError, RuntimeError) as e:
                    raise CheckpointError(f"{path}: cannot read tensor {name}: {e}") from e
                yield name, tensor, path
                bar.update(1)


def _convert(
    name: str, tensor: torch.Tensor, want: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    leaf = name.rpartition(".")[2]
    if want.dtype == torch.int32:
        return tensor
    if leaf == "scales":
        return tensor.to(torch.float16)
    return tensor.to(dtype)


def _check_g_idx(model: QwenForCausalLM, path_of: dict[str, Path]) -> None:
    for name, m in model.named_modules():
        if isinstance(m, GPTQLinear):
            groups = num_groups(m.in_features, m.group_size)
            g = m.g_idx
            if g.numel() and (int(g.min()) < 0 or int(g.max()) >= groups):
                raise TensorMismatchError(
                    f"{path_of[name + '.g_idx']}: tensor {name}.g_idx has groups outside 0..{groups - 1}"
                )


def load_model(
    model_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[QwenForCausalLM, CheckpointConfig]:
    """Read ``model_dir`` and return the model (eval mode, on ``device``) and its configs.

    Float tensors are converted to ``dtype``; GPTQ buffers keep their stored types (int32
    packs, fp16 scales). Raises ``CheckpointError`` subclasses naming the file at fault.
    """
    model_dir = Path(model_dir).expanduser()
    ckpt = load_checkpoint_config(model_dir)
    check_quantization(ckpt)
    weight_map, source = read_weight_map(model_dir)
    model = build_model(ckpt, weight_map, dtype)
    expected = expected_tensors(model)
    unexpected = sorted(set(weight_map) - set(expected) - {"lm_head.weight"})
    if unexpected:
        log.warning(
            "%s: ignoring %d unexpected tensors, e.g. %s", source, len(unexpected), unexpected[0]
        )
    by_file = _shards(model_dir, weight_map, list(expected), source)

    state: dict[str, torch.Tensor] = {}
    path_of: dict[str, Path] = {}
    for name, tensor, path in _read_tensors(model_dir, by_file, expected, progress):
        state[name] = _convert(name, tensor, expected[name], dtype)
        path_of[name] = path
    model.load_state_dict(state, strict=not ckpt.model.tie_word_embeddings, assign=True)
    if ckpt.model.tie_word_embeddings:
        model.tie_weights()
    _check_g_idx(model, path_of)
    model = model.to(device).eval().requires_grad_(False)
    return model, ckpt
