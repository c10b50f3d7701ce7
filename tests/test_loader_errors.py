"""A broken checkpoint gives one clear error naming the file or tensor at fault."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llm.config import CheckpointError, ConfigError
from llm.loader import (
    MissingShardError,
    TensorMismatchError,
    UnsupportedCheckpointError,
    load_model,
)

SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


def linked_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        os.symlink(f, dst / f.name)
    return dst


def rewrite_shard(d: Path, shard: str, change) -> None:
    tensors = load_file(str(d / shard))
    change(tensors)
    (d / shard).unlink()
    save_file(tensors, str(d / shard), metadata={"format": "pt"})


def load(d: Path) -> None:
    load_model(d, progress=False)


def test_the_intact_checkpoint_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    load(linked_copy(tiny_model_dir, tmp_path / "ok"))


def test_missing_shard(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / SHARD2).unlink()
    with pytest.raises(MissingShardError, match=f"{SHARD2}: shard file not found"):
        load(d)


def test_wrong_shape(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    name = "transformer.h.0.attn.c_proj.scales"

    def shrink(t: dict[str, torch.Tensor]) -> None:
        t[name] = t[name][:1].clone()

    rewrite_shard(d, SHARD1, shrink)
    with pytest.raises(TensorMismatchError) as info:
        load(d)
    msg = str(info.value)
    assert SHARD1 in msg and name in msg and "shape (1, 64), expected (2, 64)" in msg


def test_wrong_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    name = "transformer.h.0.mlp.w1.qweight"

    def to_float(t: dict[str, torch.Tensor]) -> None:
        t[name] = t[name].float()

    rewrite_shard(d, SHARD1, to_float)
    with pytest.raises(TensorMismatchError, match=f"{name} has dtype F32, expected int32"):
        load(d)


def test_missing_tensor(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    del index["weight_map"]["transformer.h.1.ln_2.weight"]
    (d / "model.safetensors.index.json").unlink()
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(TensorMismatchError, match=r"transformer\.h\.1\.ln_2\.weight is missing"):
        load(d)


def test_wrong_bits(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    for name in ("quantize_config.json", "config.json"):
        data = json.loads((d / name).read_text())
        (data.get("quantization_config") or data)["bits"] = 8
        (d / name).unlink()
        (d / name).write_text(json.dumps(data))
    with pytest.raises(UnsupportedCheckpointError, match="bits=8 is not supported"):
        load(d)


def test_truncated_safetensors(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    data = (tiny_model_dir / SHARD1).read_bytes()
    (d / SHARD1).unlink()
    (d / SHARD1).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{SHARD1}: cannot read safetensors file"):
        load(d)


def test_garbage_safetensors_header(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / SHARD2).unlink()
    (d / SHARD2).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match=SHARD2):
        load(d)


def test_no_weights_at_all(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors.index.json nor"):
        load(d)


def test_malformed_index(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / "model.safetensors.index.json").unlink()
    (d / "model.safetensors.index.json").write_text('{"weight_map": [1]}')
    with pytest.raises(CheckpointError, match="'weight_map' must map tensor names"):
        load(d)


def test_g_idx_out_of_range(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    name = "transformer.h.0.attn.c_attn.g_idx"

    def corrupt(t: dict[str, torch.Tensor]) -> None:
        t[name] = t[name] + 5

    rewrite_shard(d, SHARD1, corrupt)
    with pytest.raises(TensorMismatchError, match=f"{name} has groups outside"):
        load(d)


def test_missing_config_is_a_config_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json"):
        load(d)


def test_errors_are_value_errors() -> None:
    for cls in (CheckpointError, ConfigError, MissingShardError, TensorMismatchError):
        assert issubclass(cls, ValueError)
    assert issubclass(UnsupportedCheckpointError, CheckpointError)
