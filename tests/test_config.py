"""Checkpoint configuration: values read from the files, errors that name the file and field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llm.config import (
    ConfigError,
    QuantizeConfig,
    QwenConfig,
    load_checkpoint_config,
)
from llm.types import SamplingParams


def linked_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        os.symlink(f, dst / f.name)
    return dst


def replace_file(d: Path, name: str, text: str) -> Path:
    (d / name).unlink()
    (d / name).write_text(text)
    return d / name


def edited_copy(src: Path, dst: Path, name: str, change: dict) -> Path:
    """A linked copy of ``src`` whose JSON file ``name`` has ``change`` applied (None drops a key)."""
    d = linked_copy(src, dst)
    data = json.loads((src / name).read_text())
    for k, v in change.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    replace_file(d, name, json.dumps(data))
    return d


def test_reads_the_three_files(tiny_model_dir: Path) -> None:
    ckpt = load_checkpoint_config(tiny_model_dir)
    m = ckpt.model
    assert (m.hidden_size, m.num_attention_heads, m.num_hidden_layers) == (64, 4, 2)
    assert (m.kv_channels, m.mlp_hidden, m.vocab_size, m.seq_length) == (16, 128, 152064, 2048)
    assert m.use_dynamic_ntk and m.use_logn_attn and m.no_bias and not m.tie_word_embeddings
    assert ckpt.quantize == QuantizeConfig(group_size=32)
    g = ckpt.generation
    assert (g.top_p, g.top_k, g.repetition_penalty, g.max_new_tokens) == (0.8, 0, 1.1, 512)
    assert g.max_window_size == 6144 and g.eos_token_id == 151643
    assert g.sampling_params() == SamplingParams()  # the shipped defaults are the API defaults


def test_named_shapes() -> None:
    big = QwenConfig.from_name("qwen-14b")
    assert (big.hidden_size, big.num_hidden_layers, big.mlp_hidden, big.seq_length) == (
        5120,
        40,
        13696,
        2048,
    )
    assert QwenConfig.from_name("tiny", num_hidden_layers=3).num_hidden_layers == 3
    with pytest.raises(KeyError, match="unknown model shape"):
        QwenConfig.from_name("qwen-1000b")


def test_missing_config_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json: configuration file not found"):
        load_checkpoint_config(d)


@pytest.mark.parametrize("name", ["config.json", "quantize_config.json", "generation_config.json"])
def test_malformed_json_names_the_file(tiny_model_dir: Path, tmp_path: Path, name: str) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    replace_file(d, name, '{"hidden_size": 64,')
    with pytest.raises(ConfigError, match=rf"{name}: malformed JSON"):
        load_checkpoint_config(d)


def test_non_object_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    replace_file(d, "config.json", "[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_checkpoint_config(d)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_size": None}, "missing field.*hidden_size"),
        ({"num_hidden_layers": "two"}, "num_hidden_layers must be an int"),
        ({"kv_channels": 8}, "kv_channels .8. . num_attention_heads"),
        ({"layer_norm_epsilon": -1}, "layer_norm_epsilon must be a positive"),
        ({"rotary_pct": 0.5}, "rotary_pct 0.5 is not supported"),
        ({"quantization_config": 4}, "quantization_config must be an object"),
    ],
)
def test_bad_model_fields(tiny_model_dir: Path, tmp_path: Path, change: dict, message: str) -> None:
    d = edited_copy(tiny_model_dir, tmp_path / "c", "config.json", change)
    with pytest.raises(ConfigError, match=message) as info:
        load_checkpoint_config(d)
    assert "config.json" in str(info.value)


def test_quantize_files_must_agree(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = edited_copy(tiny_model_dir, tmp_path / "c", "quantize_config.json", {"group_size": 64})
    with pytest.raises(ConfigError, match="disagree"):
        load_checkpoint_config(d)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens must be positive"),
        ({"chat_format": "raw"}, "chat_format"),
    ],
)
def test_bad_generation_fields(
    tiny_model_dir: Path, tmp_path: Path, change: dict, message: str
) -> None:
    d = edited_copy(tiny_model_dir, tmp_path / "c", "generation_config.json", change)
    with pytest.raises(ConfigError, match=message) as info:
        load_checkpoint_config(d)
    assert "generation_config.json" in str(info.value)


def test_generation_config_is_optional(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = linked_copy(tiny_model_dir, tmp_path / "c")
    (d / "generation_config.json").unlink()
    assert load_checkpoint_config(d).generation.top_p == 0.8


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model directory not found"):
        load_checkpoint_config(tmp_path / "nowhere")
