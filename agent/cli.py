"""``qwen-react``: run the ReAct agent from a terminal (see ``USAGE``).

The model is ``--model DIR``, else ``$QWEN_REACT_MODEL``, else the default location (see
``agent.defaults``); ``run`` and ``chat`` fall back to the demo model, with a banner, when none
is configured. ``--base-url`` talks to an OpenAI-compatible server instead. Errors are one line
and a hint (exit 2 for usage and configuration, 1 at run time); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from agent.cli_render import EventPrinter, Style, render_run, use_color
from agent.cli_setup import (
    CliError,
    demo_banner,
    demo_dir,
    load_local,
    make_tools,
    model_dir,
    open_llm,
    sampling,
)
from llm.types import LLM

log = logging.getLogger(__name__)

USAGE = """\
examples:
  qwen-react run "What is 3817 * 292?"    one question, each step printed as it happens
  qwen-react chat                          a conversation with tools (/reset, /exit)
  qwen-react demo                          one episode of the small embedded demo model
  qwen-react bench --model DIR             prefill/decode speed of the local engine
  qwen-react make-tiny DIR                 a tiny random checkpoint for tests

model: --model DIR, else $QWEN_REACT_MODEL, else ~/.cache/qwen-react/Qwen-14B-Chat-Int4;
without any, run and chat use the small demo model. --base-url uses an OpenAI-compatible
server (vLLM, SGLang) instead."""


class _Parser(argparse.ArgumentParser):
    """argparse with our error format: one line and a hint, exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message, f"see '{self.prog} --help'")


def _common(debug_default: Any) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--debug", action="store_true", default=debug_default, help="show tracebacks")
    g.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=debug_default,
        help="also print raw model text and timings",
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=debug_default,
        help="no progress bar; print only the final answer",
    )
    g.add_argument("--no-color", action="store_true", default=debug_default, help="plain text")
    return p


def _model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="DIR", help="checkpoint directory (else $QWEN_REACT_MODEL)")
    g.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    g.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        help="activation dtype (default: float16 on cuda, float32 on cpu)",
    )
    return p


def _agent_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("server")
    g.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://localhost:8000/v1")
    g.add_argument(
        "--served-model", help="model name on that server (default Qwen/Qwen-14B-Chat-Int4)"
    )
    g = p.add_argument_group("agent and tools")
    g.add_argument(
        "--tools",
        default="code_interpreter",
        help="comma-separated: code_interpreter, http_get, plugins, or 'none'",
    )
    g.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "process"),
        default="auto",
        help="code interpreter sandbox (default: bwrap when it works)",
    )
    g.add_argument("--workdir", help="code interpreter work dir (default: a temporary dir)")
    g.add_argument("--tool-timeout", type=float, default=30.0, help="seconds per code run")
    g.add_argument("--http-allow", help="hosts http_get may fetch (else $QWEN_REACT_HTTP_ALLOW)")
    g.add_argument("--max-steps", type=int, default=8, help="model calls per question")
    g.add_argument("--max-new-tokens", type=int, default=512, help="tokens per model call")
    g = p.add_argument_group("sampling (default: greedy, as Qwen's ReAct demo)")
    g.add_argument("--greedy", action="store_true", help="always the most likely token")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("--seed", type=int)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``qwen-react`` argument parser with its sub-commands."""
    parser = _Parser(
        prog="qwen-react",
        description="A ReAct tool-using agent on a local Int4 Qwen-14B-Chat.",
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(False)],
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True
    common, model, agent = _common(argparse.SUPPRESS), _model_options(), _agent_options()
    run = subs.add_parser("run", parents=[common, model, agent], help="answer one question")
    run.add_argument("query", help="the question ('-' reads it from stdin)")
    subs.add_parser("chat", parents=[common, model, agent], help="interactive conversation")
    demo = subs.add_parser("demo", parents=[common, agent], help="run the embedded demo model")
    demo.add_argument("query", nargs="?", help="a question of its domain (default: a product)")
    demo.set_defaults(model=None, device="cpu", dtype=None, max_steps=4)
    bench = subs.add_parser("bench", parents=[common, model], help="engine speed benchmark")
    bench.add_argument("--prompt-tokens", type=int, default=512)
    bench.add_argument("--new-tokens", type=int, default=128)
    bench.add_argument("--repeats", type=int, default=3)
    tiny = subs.add_parser("make-tiny", parents=[common], help="write a tiny random checkpoint")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--force", action="store_true", help="write into a non-empty directory")
    return parser


# -- commands --------------------------------------------------------------------------------


def _agent(args: argparse.Namespace, llm: LLM | None, stack: ExitStack, *, demo: bool) -> Any:
    """The agent of ``run``/``chat``/``demo``: options are checked before the model loads."""
    from agent.agent import Agent

    for name in ("max_steps", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1", "")
    options = {"max_steps": args.max_steps, "max_new_tokens": args.max_new_tokens}
    options.update(sampling(args))
    tools = make_tools(args, stack)
    if llm is None and demo:
        path = demo_dir()
        if path is None:
            raise CliError(
                "the demo model checkpoint is not installed",
                "reinstall qwen-react, or use 'qwen-react run --model DIR'",
            )
        _banner(demo_banner(), args)
        llm = load_local(path, args)
    elif llm is None:
        llm = open_llm(args, allow_demo=True, announce=lambda text: _banner(text, args))
    return Agent(llm, tools, **options)


def _banner(text: str | None, args: argparse.Namespace) -> None:
    if text:
        style = Style(use_color(sys.stderr, False if args.no_color else None))
        print(style(f"*** {text} ***", "yellow", "bold"), file=sys.stderr, flush=True)


def _printer(args: argparse.Namespace) -> EventPrinter:
    return EventPrinter(color=False if args.no_color else None, verbose=args.verbose)


def _answer(args: argparse.Namespace, agent: Any, query: str, history: Any = None) -> Any:
    printer = _printer(args)
    if args.quiet:
        result = agent.run(query, history=history)
        print(result.answer, flush=True)
        return result
    result = render_run(agent, query, printer=printer, history=history)
    printer.summary(result, out=sys.stderr)
    return result


def cmd_run(args: argparse.Namespace, llm: LLM | None) -> int:
    query = sys.stdin.read().strip() if args.query == "-" else args.query
    if not query.strip():
        raise CliError("the question is empty", 'usage: qwen-react run "your question"')
    with ExitStack() as stack:
        _answer(args, _agent(args, llm, stack, demo=False), query)
    return 0


def cmd_demo(args: argparse.Namespace, llm: LLM | None) -> int:
    from llm.demo import DEFAULT_QUERY

    with ExitStack() as stack:
        _answer(args, _agent(args, llm, stack, demo=True), args.query or DEFAULT_QUERY)
    return 0


def cmd_chat(args: argparse.Namespace, llm: LLM | None) -> int:
    with ExitStack() as stack:
        agent = _agent(args, llm, stack, demo=False)
        tools = ", ".join(agent.tools.names) or "none"
        print(
            f"qwen-react chat (tools: {tools}). /reset forgets, /exit or Ctrl-D leaves.",
            file=sys.stderr,
            flush=True,
        )
        while True:
            try:
                line = input("you> " if sys.stdin.isatty() else "").strip()
            except EOFError:
                break
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                agent.reset()
                continue
            if line:
                result = _answer(args, agent, line, history=agent.history)
                agent.history.append((line, result.transcript or result.answer))
    return 0


def cmd_bench(args: argparse.Namespace, llm: LLM | None) -> int:
    from agent.cli_bench import format_report, run_bench

    engine = llm if llm is not None else load_local(model_dir(args, allow_demo=False)[0], args)
    try:
        report = run_bench(
            engine,
            prompt_tokens=args.prompt_tokens,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
        )
    except ValueError as exc:
        raise CliError(str(exc), "choose smaller --prompt-tokens/--new-tokens") from exc
    print(format_report(report), flush=True)
    return 0


def cmd_make_tiny(args: argparse.Namespace, llm: LLM | None) -> int:
    from llm.testing import make_tiny_checkpoint

    target: Path = args.dir
    if target.exists() and not target.is_dir():
        raise CliError(f"{target} exists and is not a directory", "choose another path")
    if target.is_dir() and any(target.iterdir()) and not args.force:
        raise CliError(f"{target} is not empty", "choose an empty directory or pass --force")
    if args.layers < 1:
        raise CliError("--layers must be at least 1", "")
    make_tiny_checkpoint(target, num_hidden_layers=args.layers, seed=args.seed)
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    print(f"wrote a {args.layers}-layer random checkpoint to {target} ({size / 2**20:.1f} MiB)")
    print(f'try: qwen-react run --model {target} --max-steps 2 "hello"')
    return 0


COMMANDS = {
    "run": cmd_run,
    "chat": cmd_chat,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "make-tiny": cmd_make_tiny,
}


# -- entry point -----------------------------------------------------------------------------


def _report(message: str, hint: str, no_color: bool) -> None:
    style = Style(use_color(sys.stderr, False if no_color else None))
    print(f"{style('error:', 'red', 'bold')} {message}", file=sys.stderr)
    if hint:
        print(f"{style('hint:', 'yellow')} {hint}", file=sys.stderr)


def _runtime_hint(exc: BaseException) -> str:
    from llm.openai_compat import BackendError

    if isinstance(exc, BackendError):
        return "check that the server at --base-url is running and serves /v1/completions"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "the model does not fit: try --device cpu, a smaller --max-new-tokens, or a GPU"
    return "run again with --debug for the traceback"


def main(argv: list[str] | None = None, *, llm: LLM | None = None) -> int:
    """Run the CLI; returns the exit code. ``llm`` replaces the backend (for tests)."""
    args = argparse.Namespace(debug="--debug" in (argv if argv is not None else sys.argv))
    try:
        args = build_parser().parse_args(argv)
        level = logging.DEBUG if args.debug else logging.WARNING
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](args, llm)
    except CliError as exc:
        if args.debug:
            raise
        _report(exc.message, exc.hint, getattr(args, "no_color", False))
        return exc.code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _report(
            f"{type(exc).__name__}: {first}", _runtime_hint(exc), getattr(args, "no_color", False)
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
