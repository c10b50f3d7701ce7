"""Checkpoint configuration: ``config.json``, ``quantize_config.json``, ``generation_config.json``.

Every value comes from the checkpoint's own files, never from its name. Errors name the file and
the field at fault. ``QWEN_SHAPES`` holds the named model shapes (the real 14B and a tiny one
for tests and examples).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
QUANTIZE_CONFIG_FILE = "quantize_config.json"
GENERATION_CONFIG_FILE = "generation_config.json"


class CheckpointError(ValueError):
    """A checkpoint directory cannot be used: a file or tensor is missing, malformed or unsupported."""


class ConfigError(CheckpointError):
    """A JSON configuration file is missing, malformed or holds an invalid value."""


# The keys of every ``QWEN_SHAPES`` entry; each must be a positive int.
SHAPE_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "kv_channels",
    "intermediate_size",
    "vocab_size",
    "seq_length",
    "max_position_embeddings",
)

QWEN_SHAPES: dict[str, dict[str, Any]] = {
    "qwen-14b": dict(
        hidden_size=5120,
        num_attention_heads=40,
        num_hidden_layers=40,
        kv_channels=128,
        intermediate_size=27392,
        vocab_size=152064,
        seq_length=2048,
        max_position_embeddings=8192,
    ),
    "qwen-7b": dict(
        hidden_size=4096,
        num_attention_heads=32,
        num_hidden_layers=32,
        kv_channels=128,
        intermediate_size=22016,
        vocab_size=151936,
        seq_length=8192,
        max_position_embeddings=32768,
    ),
    "tiny": dict(
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        kv_channels=16,
        intermediate_size=256,
        vocab_size=152064,
        seq_length=2048,
        max_position_embeddings=8192,
    ),
}


@dataclass(frozen=True)
class QuantizeConfig:
    """GPTQ settings (``quantize_config.json`` or config.json's ``quantization_config``)."""

    bits: int = 4
    group_size: int = 128
    damp_percent: float = 0.01
    desc_act: bool = False
    static_groups: bool = False
    sym: bool = True
    true_sequential: bool = True
    model_name_or_path: str | None = None
    model_file_base_name: str | None = "model"
    quant_method: str = "gptq"

    def __post_init__(self) -> None:
        _require_int(self, "bits", minimum=1)
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int):
            raise ValueError(f"group_size must be an int, got {self.group_size!r}")
        if self.group_size != -1 and self.group_size <= 0:
            raise ValueError(f"group_size must be positive or -1, got {self.group_size}")

    def to_json_dict(self, *, with_method: bool = False) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not with_method:
            d.pop("quant_method")
        return d


@dataclass(frozen=True)
class QwenConfig:
    """The model shape and behaviour read from ``config.json`` (Qwen v1 names)."""

    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    kv_channels: int
    intermediate_size: int  # the MLP inner width is half of it (Qwen convention)
    vocab_size: int
    seq_length: int = 2048
    max_position_embeddings: int = 8192
    layer_norm_epsilon: float = 1e-6
    rotary_emb_base: float = 10000.0
    rotary_pct: float = 1.0
    use_dynamic_ntk: bool = True
    use_logn_attn: bool = True
    no_bias: bool = True
    tie_word_embeddings: bool = False
    softmax_in_fp32: bool = False
    quantization: QuantizeConfig | None = None

    def __post_init__(self) -> None:
        for name in SHAPE_FIELDS:
            _require_int(self, name, minimum=1)
        if self.kv_channels * self.num_attention_heads != self.hidden_size:
            raise ValueError(
                f"kv_channels ({self.kv_channels}) * num_attention_heads "
                f"({self.num_attention_heads}) must equal hidden_size ({self.hidden_size})"
            )
        if self.kv_channels % 2:
            raise ValueError(
                f"kv_channels must be even for rotary embeddings, got {self.kv_channels}"
            )
        if self.intermediate_size % 2:
            raise ValueError(f"intermediate_size must be even, got {self.intermediate_size}")
        if self.rotary_pct != 1.0:
            raise ValueError(f"rotary_pct {self.rotary_pct} is not supported (only 1.0)")
        for name in ("layer_norm_epsilon", "rotary_emb_base"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.kv_channels

    @property
    def mlp_hidden(self) -> int:
        return self.intermediate_size // 2

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> QwenConfig:
        """A named shape from ``QWEN_SHAPES`` with ``overrides`` applied."""
        if name not in QWEN_SHAPES:
            raise KeyError(f"unknown model shape {name!r}; known: {', '.join(QWEN_SHAPES)}")
        return cls(**{**QWEN_SHAPES[name], **overrides})


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding defaults from ``generation_config.json`` (HF defaults for absent keys)."""

    chat_format: str = "chatml"
    eos_token_id: int = 151643
    pad_token_id: int = 151643
    max_window_size: int = 6144
    max_new_tokens: int = 512
    do_sample: bool = True
    top_k: int = 0
    top_p: float = 0.8
    temperature: float = 1.0
    repetition_penalty: float = 1.1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def sampling_params(self) -> Any:
        """These defaults as ``llm.types.SamplingParams``."""
        from llm.types import SamplingParams

        return SamplingParams(
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )


@dataclass(frozen=True)
class CheckpointConfig:
    """Everything a checkpoint directory says about itself."""

    model: QwenConfig
    quantize: QuantizeConfig | None
    generation: GenerationConfig
    directory: Path


def _require_int(obj: object, name: str, *, minimum: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def read_json(path: Path, *, required: bool = True) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``ConfigError`` naming the file if absent or malformed."""
    if not path.is_file():
        if required:
            raise ConfigError(f"{path}: configuration file not found")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: malformed JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _build(cls: type, data: dict[str, Any], path: Path, *, required: tuple[str, ...] = ()) -> Any:
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{path}: missing field(s) {', '.join(missing)}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: invalid value: {e}") from e


def parse_model_config(data: dict[str, Any], path: Path) -> QwenConfig:
    """``QwenConfig`` from the parsed ``config.json`` at ``path`` (for error messages)."""
    required = (
        "hidden_size",
        "num_attention_heads",
        "num_hidden_layers",
        "kv_channels",
        "intermediate_size",
        "vocab_size",
    )
    data = {k: v for k, v in data.items() if k != "quantization"}
    quant = data.get("quantization_config")
    cfg: QwenConfig = _build(QwenConfig, data, path, required=required)
    if quant is not None:
        if not isinstance(quant, dict):
            raise ConfigError(f"{path}: field quantization_config must be an object")
        cfg = dataclasses.replace(cfg, quantization=_build(QuantizeConfig, quant, path))
    return cfg


def load_checkpoint_config(model_dir: str | Path) -> CheckpointConfig:
    """Read and check the three JSON files of a checkpoint directory.

    ``quantize_config.json`` wins over config.json's ``quantization_config`` when both exist;
    they must agree on bits and group size. ``generation_config.json`` is optional.
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model directory not found")
    cfg_path = model_dir / CONFIG_FILE
    model = parse_model_config(read_json(cfg_path) or {}, cfg_path)

    q_path = model_dir / QUANTIZE_CONFIG_FILE
    q_data = read_json(q_path, required=False)
    quant = model.quantization
    if q_data is not None:
        quant = _build(QuantizeConfig, q_data, q_path)
        inner = model.quantization
        if inner is not None and (inner.bits, inner.group_size) != (quant.bits, quant.group_size):
            raise ConfigError(
                f"{q_path}: bits/group_size ({quant.bits}, {quant.group_size}) disagree with "
                f"{cfg_path} quantization_config ({inner.bits}, {inner.group_size})"
            )
        model = dataclasses.replace(model, quantization=quant)

    g_path = model_dir / GENERATION_CONFIG_FILE
    g_data = read_json(g_path, required=False) or {}
    names = {f.name for f in dataclasses.fields(GenerationConfig)}
    extra = {k: v for k, v in g_data.items() if k not in names}
    generation = _build(GenerationConfig, {**g_data, "extra": extra}, g_path)
    _check_generation(generation, g_path)
    return CheckpointConfig(model=model, quantize=quant, generation=generation, directory=model_dir)


def _check_generation(gen: GenerationConfig, path: Path) -> None:
    try:
        gen.sampling_params()
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from e
    if isinstance(gen.max_new_tokens, bool) or not isinstance(gen.max_new_tokens, int):
        raise ConfigError(f"{path}: max_new_tokens must be an int, got {gen.max_new_tokens!r}")
    if gen.max_new_tokens <= 0:
        raise ConfigError(f"{path}: max_new_tokens must be positive, got {gen.max_new_tokens}")
    if gen.chat_format != "chatml":
        raise ConfigError(f"{path}: chat_format {gen.chat_format!r} is not supported (only chatml)")
