"""The local engine: load a Qwen Int4 checkpoint and complete, stream or chat with it.

``load_engine(model_dir)`` reads the checkpoint; ``Engine.complete(prompt)`` takes ChatML text
(special tokens written as text) or token ids and returns a ``Completion``. Generation always
stops at ``<|im_end|>``, ``<|im_start|>`` and ``<|endoftext|>``, and at caller stop strings
matched on the decoded text. The KV cache of the previous call is reused for the longest common
token prefix (``Completion.usage.cached_tokens``).
"""

from __future__ import annotations

import logging
from collections.abc import Generator as PyGenerator
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from llm.chatml import DEFAULT_SYSTEM, make_context
from llm.config import CheckpointConfig, GenerationConfig, QwenConfig
from llm.generate import Generator
from llm.loader import load_model
from llm.model import QwenForCausalLM
from llm.quant import GPTQLinear
from llm.stopping import StopStrings
from llm.tokenizer import QwenTokenizer
from llm.types import Completion, SamplingParams, Usage

log = logging.getLogger(__name__)

History = list[tuple[str, str]]


class Engine:
    """A loaded model with its tokenizer, generation defaults and reusable KV cache."""

    def __init__(
        self,
        model: QwenForCausalLM,
        tokenizer: QwenTokenizer,
        checkpoint: CheckpointConfig,
        *,
        device: torch.device,
        dtype: torch.dtype,
        max_seq_len: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.config: QwenConfig = checkpoint.model
        self.generation_config: GenerationConfig = checkpoint.generation
        self.device = device
        self.dtype = dtype
        max_len = max_seq_len or self.config.max_position_embeddings
        self.generator = Generator(model, max_len=max_len, device=device, dtype=dtype)
        self.stop_token_ids = frozenset(
            {
                tokenizer.im_end_id,
                tokenizer.im_start_id,
                tokenizer.eod_id,
                self.generation_config.eos_token_id,
            }
        )

    # -- prompts ------------------------------------------------------------------------

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, allowed_special="all")
        else:
            ids = [int(i) for i in prompt]
            bad = [i for i in ids if not 0 <= i < self.config.vocab_size]
            if bad:
                raise ValueError(
                    f"token id {bad[0]} is outside the vocabulary 0..{self.config.vocab_size - 1}"
                )
        if not ids:
            raise ValueError("the prompt is empty: nothing to condition on")
        return ids

    def _sampling(self, sampling: SamplingParams | None) -> SamplingParams:
        if sampling is None:
            return self.generation_config.sampling_params()
        if not isinstance(sampling, SamplingParams):
            raise TypeError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
        return sampling

    # -- generation ---------------------------------------------------------------------

    def _run(
        self,
        prompt: str | Sequence[int],
        stop: Sequence[str],
        max_new_tokens: int,
        sampling: SamplingParams | None,
    ) -> PyGenerator[str, None, Completion]:
        """Yield text deltas; return the ``Completion``."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        params = self._sampling(sampling)
        stops = StopStrings(stop)
        ids = self._prompt_ids(prompt)
        tokens = self.generator.generate(
            ids, max_new_tokens=max_new_tokens, sampling=params, stop_ids=self.stop_token_ids
        )
        decoder = self.tokenizer.stream_decoder()
        out_ids: list[int] = []
        text, emitted, hit = "", 0, None
        finish, stop_text = "length", None
        for token in tokens:
            out_ids.append(token)
            if token in self.stop_token_ids:
                finish, stop_text = "stop", self.tokenizer.decode([token])
                break
            before = len(text)
            text += decoder.push(token)
            hit = stops.search(text, before)
            if hit is not None:
                break
            safe = len(text) - stops.holdback(text)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        tokens.close()
        if finish == "length" and hit is None:
            before = len(text)
            text += decoder.flush()
            hit = stops.search(text, before)
        if hit is not None:
            text, finish, stop_text = text[: hit.index], "stop", hit.stop
        if len(text) > emitted:
            yield text[emitted:]
        usage = Usage(
            prompt_tokens=len(ids),
            completion_tokens=len(out_ids),
            cached_tokens=self.generator.last_cached_tokens,
        )
        return Completion(text, out_ids, finish, usage, stop_text)

    def complete(
        self,
        prompt: str | Sequence[int],
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion:
        """Continue ``prompt`` (ChatML text or ids) until a stop or ``max_new_tokens``."""
        run = self._run(prompt, stop, max_new_tokens, sampling)
        while True:
            try:
                next(run)
            except StopIteration as done:
                return done.value

    def stream(
        self,
        prompt: str | Sequence[int],
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        """Like ``complete`` but yields text deltas as they are decoded."""
        yield from self._run(prompt, stop, max_new_tokens, sampling)

    # -- chat (Qwen's model.chat semantics) ------------------------------------------------

    def _chat_request(
        self, query: str, history: History | None, system: str, max_new_tokens: int | None
    ) -> tuple[list[int], int]:
        """Qwen's ChatML context ids for one turn, and the new-token limit to use."""
        _, ids = make_context(
            self.tokenizer,
            query,
            history=history,
            system=system,
            max_window_size=self.generation_config.max_window_size,
        )
        return ids, max_new_tokens or self.generation_config.max_new_tokens

    def chat(
        self,
        query: str,
        history: History | None = None,
        system: str = DEFAULT_SYSTEM,
        *,
        sampling: SamplingParams | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[str, History]:
        """One chat turn: ``(response, history + [(query, response)])``."""
        ids, limit = self._chat_request(query, history, system, max_new_tokens)
        result = self.complete(ids, max_new_tokens=limit, sampling=sampling)
        response = result.text.strip()
        return response, [*(history or []), (query, response)]

    def chat_stream(
        self,
        query: str,
        history: History | None = None,
        system: str = DEFAULT_SYSTEM,
        *,
        sampling: SamplingParams | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str]:
        """Deltas of the response of one chat turn (leading whitespace dropped)."""
        ids, limit = self._chat_request(query, history, system, max_new_tokens)
        started = False
        for delta in self.stream(ids, max_new_tokens=limit, sampling=sampling):
            if not started:
                delta = delta.lstrip()
                started = bool(delta)
            if delta:
                yield delta

    # -- scoring ----------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, token_ids: Sequence[int]) -> torch.Tensor:
        """Logits ``[T, vocab]`` (float32) of one full causal forward, without the cache."""
        ids = self._prompt_ids(list(token_ids))
        x = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
        return self.model(x)[0].float()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (ChatML special-token text counted as one token each)."""
        return len(self.tokenizer.encode(text, allowed_special="all"))


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_engine(
    model_dir: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    progress: bool = True,
    max_seq_len: int | None = None,
) -> Engine:
    """Load the checkpoint in ``model_dir``.

    ``device`` None: CUDA when available, else CPU. ``dtype`` None: float16 on CUDA, float32
    on CPU. ``max_seq_len`` (default ``max_position_embeddings``) sizes the KV cache.
    """
    dev = _resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    model, ckpt = load_model(model_dir, device=dev, dtype=dtype, progress=progress)
    tokenizer = QwenTokenizer.from_pretrained(model_dir)
    if dev.type == "cuda":
        model = _accelerate(model)
    engine = Engine(model, tokenizer, ckpt, device=dev, dtype=dtype, max_seq_len=max_seq_len)
    if dev.type == "cuda" and not isinstance(model.transformer.h[0].attn.c_attn, GPTQLinear):
        from llm.cuda_graph import install

        install(engine.generator)
    return engine


def _accelerate(model: QwenForCausalLM) -> QwenForCausalLM:
    try:
        from llm.kernels import accelerate
    except ImportError as e:
        log.warning("CUDA kernels unavailable (%s); using the PyTorch int4 path", e)
        return model
    return accelerate(model)
