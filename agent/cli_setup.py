"""What the CLI builds from its options: the LLM backend, the tools and the sampling settings.

Problems with the options or the files they name raise ``CliError`` with a one-line message,
a hint and exit code 2; the CLI prints them without a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from llm.types import LLM, SamplingParams

DEFAULT_SERVED_MODEL = "Qwen/Qwen-14B-Chat-Int4"
API_KEY_ENV = "OPENAI_API_KEY"
DOWNLOAD_HINT = (
    "download the weights with 'huggingface-cli download Qwen/Qwen-14B-Chat-Int4 --local-dir DIR' "
    "and pass --model DIR (or set QWEN_REACT_MODEL); 'qwen-react demo' runs the small demo model"
)


class CliError(Exception):
    """A failure to show as ``error: message`` and ``hint: hint``, exiting with ``code``."""

    def __init__(self, message: str, hint: str = "", code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


# -- model -----------------------------------------------------------------------------------


def demo_dir() -> Path | None:
    """The embedded demo checkpoint, or None when it is not installed."""
    try:
        from llm.demo import demo_model_dir
    except ImportError:
        return None
    path = demo_model_dir()
    return path if (path / "config.json").is_file() else None


def demo_banner() -> str:
    from llm.demo import BANNER

    return BANNER


def model_dir(args: argparse.Namespace, *, allow_demo: bool) -> tuple[Path, str | None]:
    """The checkpoint to load and a banner to show (set when it is the demo model).

    ``--model`` and ``$QWEN_REACT_MODEL`` must name a checkpoint; only when neither is given
    and the default location is empty does ``allow_demo`` fall back to the demo model.
    """
    from agent.defaults import MODEL_ENV, ModelNotFoundError, resolve_model_dir

    configured = args.model is not None or bool(os.environ.get(MODEL_ENV, "").strip())
    try:
        return resolve_model_dir(args.model), None
    except ModelNotFoundError as exc:
        demo = None if configured or not allow_demo else demo_dir()
        if demo is not None:
            return demo, demo_banner()
        first = str(exc).splitlines()[0].replace("(model_dir)", "(--model)")
        raise CliError(first, DOWNLOAD_HINT) from exc


def torch_device(name: str | None) -> Any:
    """``--device`` as a ``torch.device`` (None: CUDA when available, else CPU)."""
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CliError(
            f"--device {name!r} is not a device name", "use cpu, cuda or cuda:N"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available here", "use --device cpu")
    return device


def load_local(path: Path, args: argparse.Namespace, *, device: str | None = None) -> LLM:
    """The local engine on ``path`` with ``--device``/``--dtype`` and a loading progress bar."""
    import torch

    from llm.config import CheckpointError
    from llm.engine import load_engine
    from llm.tokenizer import TokenizerError
    from llm.vocab import VocabularyError

    dev = torch_device(args.device or device)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    try:
        return load_engine(path, device=dev, dtype=dtype, progress=not args.quiet)
    except (CheckpointError, TokenizerError, VocabularyError) as exc:
        raise CliError(
            str(exc).splitlines()[0],
            f"is {path} a complete Qwen-14B-Chat-Int4 checkpoint? 'qwen-react make-tiny DIR' "
            "writes a small one for testing",
        ) from exc


def open_llm(
    args: argparse.Namespace, *, allow_demo: bool, announce: Callable[[str], None] | None = None
) -> LLM:
    """The backend named by the options: ``--base-url`` server, else the local engine.

    ``announce`` receives the demo banner before the demo model loads (when it is the one).
    """
    if args.base_url:
        from llm.openai_compat import OpenAICompatibleLLM

        name = args.served_model or DEFAULT_SERVED_MODEL
        return OpenAICompatibleLLM(args.base_url, name, api_key=os.environ.get(API_KEY_ENV))
    path, banner = model_dir(args, allow_demo=allow_demo)
    if banner and announce is not None:
        announce(banner)
    return load_local(path, args, device="cpu" if banner else None)


# -- tools -----------------------------------------------------------------------------------


def make_tools(args: argparse.Namespace, stack: ExitStack) -> list[Any]:
    """The tools of ``--tools`` (closed by ``stack``); unknown names are a usage error."""
    names = [n.strip() for n in (args.tools or "").split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    from tools import ToolRegistry

    try:
        plugins = ToolRegistry.from_entry_points()
    except Exception as exc:  # a broken third-party plugin must not hide the real problem
        raise CliError(
            f"loading tool plugins failed: {exc}", "uninstall the broken plugin"
        ) from exc
    available = ["code_interpreter", *plugins.names]
    made = []
    for name in names:
        if name == "code_interpreter":
            made.append(stack.enter_context(_code_interpreter(args)))
        elif name == "http_get" and args.http_allow is not None:
            from tools.http import HttpGet

            made.append(HttpGet(allow=[a for a in args.http_allow.split(",") if a.strip()]))
        elif name in plugins.names:
            made.append(plugins.get(name))
        else:
            raise CliError(
                f"--tools: unknown tool {name!r}",
                f"available tools: {', '.join(available)} (or 'none')",
            )
    return made


def _code_interpreter(args: argparse.Namespace) -> Any:
    from sandbox import IsolationUnavailableError, resolve_isolation
    from tools import CodeInterpreter

    try:
        isolation = resolve_isolation(args.isolation)
    except IsolationUnavailableError as exc:
        raise CliError(
            str(exc), "install bubblewrap, or pass --isolation process (limits only)"
        ) from exc
    return CodeInterpreter(workdir=args.workdir, isolation=isolation, timeout=args.tool_timeout)


# -- sampling --------------------------------------------------------------------------------


def sampling(args: argparse.Namespace) -> dict[str, SamplingParams]:
    """``{"sampling": ...}`` for ``Agent`` when a sampling option was given, else ``{}``."""
    chosen = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
    }
    given = {k: v for k, v in chosen.items() if v is not None}
    if not given and not args.greedy:
        return {}
    try:
        if args.greedy:
            given.pop("seed", None)
            return {
                "sampling": SamplingParams(
                    do_sample=False, repetition_penalty=given.get("repetition_penalty", 1.1)
                )
            }
        return {"sampling": SamplingParams(do_sample=True, **given)}
    except ValueError as exc:
        raise CliError(f"sampling option: {exc}", "see 'qwen-react run --help'") from exc
