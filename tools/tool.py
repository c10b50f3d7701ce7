"""``Tool`` and ``@tool``: a typed Python function the model can call.

Everything the prompt needs is derived from the function: the name, the description (the
docstring's first part), and the JSON schema of the arguments (a pydantic model built from
the signature, with help text from the docstring's ``Args:``). ``Tool.from_model`` starts from
a pydantic model class instead. ``invoke`` never raises for model-caused problems: bad
arguments, an exception inside the tool or a timeout become an error observation that says
what went wrong and what to do next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import re
from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from tools.arguments import ArgumentError, parse_action_input
from tools.base import ArgsFormat, ToolOutput
from tools.docstring import parse_docstring
from tools.schema import model_parameters

logger = logging.getLogger(__name__)

_GRACE_S = 0.05  # lets an async tool's own cancellation report first
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class ToolDefinitionError(ValueError):
    """A tool was defined wrongly (a framework error, raised when the tool is built)."""


class ToolTimeoutError(TimeoutError):
    """A tool call ran past its deadline (reported to the model as an observation)."""


def check_tool_name(name: str) -> str:
    """``name`` if the model can write it after ``Action:``; otherwise ``ToolDefinitionError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolDefinitionError(
            f"invalid tool name {name!r}: use 1-64 characters from letters, digits, '_', '-', "
            "'.', starting with a letter or '_' (the model writes it after 'Action:')"
        )
    return name


class Tool:
    """A callable the agent can use, with everything the prompt shows about it.

    ``fn`` receives the validated arguments as keyword arguments (or, with
    ``pass_model=True``, the validated model instance). ``timeout`` (seconds) bounds each
    call made through ``invoke``/``call``; a sync function that overruns keeps running in its
    worker thread, but the agent moves on.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        args_model: type[BaseModel],
        *,
        name: str,
        description: str,
        name_for_human: str | None = None,
        args_format: ArgsFormat = "json",
        timeout: float | None = None,
        pass_model: bool = False,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"tool {name!r}: fn must be callable, got {fn!r}")
        if not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
            raise ToolDefinitionError(f"tool {name!r}: args_model must be a pydantic model class")
        if args_format not in ("json", "code"):
            raise ToolDefinitionError(f"tool {name!r}: args_format must be 'json' or 'code'")
        if timeout is not None and not timeout > 0:
            raise ToolDefinitionError(f"tool {name!r}: timeout must be > 0, got {timeout!r}")
        self.fn = fn
        self.args_model = args_model
        self.name = check_tool_name(name)
        self.description = " ".join(description.split())
        self.name_for_human = name_for_human or name
        self.args_format: ArgsFormat = args_format
        self.timeout = timeout
        self.pass_model = pass_model
        self.parameters: dict[str, Any] = model_parameters(args_model)
        self.is_async = inspect.iscoroutinefunction(fn)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        name_for_human: str | None = None,
        args_format: ArgsFormat = "json",
        timeout: float | None = None,
    ) -> Tool:
        """A tool from a typed function; the docstring gives the description and argument help."""
        doc = parse_docstring(inspect.getdoc(fn))
        tool_name = name or getattr(fn, "__name__", "")
        text = description or doc.description
        if not text:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: no description; write a docstring or pass description="
            )
        model = _model_from_signature(fn, tool_name, doc.args)
        return cls(
            fn,
            model,
            name=tool_name,
            description=text,
            name_for_human=name_for_human,
            args_format=args_format,
            timeout=timeout,
        )

    @classmethod
    def from_model(
        cls,
        args_model: type[BaseModel],
        fn: Callable[[Any], Any],
        *,
        name: str | None = None,
        description: str | None = None,
        name_for_human: str | None = None,
        args_format: ArgsFormat = "json",
        timeout: float | None = None,
    ) -> Tool:
        """A tool whose arguments are ``args_model``; ``fn`` receives the validated instance.

        The name defaults to the model's class name in snake_case, the description to the
        model's docstring.
        """
        text = description or parse_docstring(args_model.__doc__).description
        tool_name = name or _snake_case(args_model.__name__)
        if not text:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: no description; give {args_model.__name__} a docstring "
                "or pass description="
            )
        return cls(
            fn,
            args_model,
            name=tool_name,
            description=text,
            name_for_human=name_for_human,
            args_format=args_format,
            timeout=timeout,
            pass_model=True,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no timeout)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, parameters={list(self.parameters['properties'])})"

    def validate(self, arguments: dict[str, Any]) -> BaseModel:
        """The validated argument model; raises pydantic's ``ValidationError``."""
        return self.args_model.model_validate(arguments)

    def call(self, **arguments: Any) -> Any:
        """Validate ``arguments`` and run the tool; errors propagate (for programmatic use)."""
        return self._run(self.validate(arguments))

    def invoke(self, action_input: str) -> ToolOutput:
        """Run with the model's raw Action Input; problems become an error observation."""
        try:
            validated = self.validate(parse_action_input(action_input, self.parameters))
        except ArgumentError as exc:
            return self._error(f"could not read the Action Input: {exc}. {self._format_hint()}")
        except ValidationError as exc:
            return self._error(
                f"invalid arguments: {_validation_summary(exc)}. {self._format_hint()}"
            )
        try:
            result = self._run(validated)
        except ToolTimeoutError:
            return self._error(
                f"the call did not finish within {self.timeout:g} s and was abandoned. "
                "Try a smaller or simpler request, or answer without this tool."
            )
        except Exception as exc:
            logger.warning("tool %s raised", self.name, exc_info=True)
            return self._error(
                f"the tool raised {type(exc).__name__}: {exc}. Check the arguments and try "
                "again, or answer without this tool."
            )
        return to_output(result)

    def _run(self, validated: BaseModel) -> Any:
        if self.pass_model:
            args: tuple[Any, ...] = (validated,)
            kwargs: dict[str, Any] = {}
        else:
            args, kwargs = (
                (),
                {name: getattr(validated, name) for name in type(validated).model_fields},
            )
        if self.timeout is None and not self.is_async:
            return self.fn(*args, **kwargs)
        return _run_with_deadline(self.fn, args, kwargs, self.timeout, self.is_async)

    def _format_hint(self) -> str:
        if self.args_format == "code":
            return "Write the code after 'Action Input:', enclosed in triple backticks."
        schema = json.dumps(self.parameters, ensure_ascii=False)
        return f"Write the Action Input as a JSON object matching this schema: {schema}"

    def _error(self, message: str) -> ToolOutput:
        return ToolOutput(text=f"Error calling {self.name}: {message}", is_error=True)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    name_for_human: str | None = None,
    args_format: ArgsFormat = "json",
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a ``Tool`` from a typed function: ``@tool`` or ``@tool(name=..., timeout=...)``."""
    if fn is not None:
        return Tool.from_function(fn, **options)

    def decorate(func: Callable[..., Any]) -> Tool:
        return Tool.from_function(func, **options)

    return decorate


def to_output(result: Any) -> ToolOutput:
    """The observation for a tool's return value: text as is, structured data as JSON."""
    if isinstance(result, ToolOutput):
        return result
    if result is None:
        return ToolOutput(text="Done (the tool returned no output).")
    if isinstance(result, str):
        return ToolOutput(text=result)
    if isinstance(result, BaseModel):
        return ToolOutput(text=result.model_dump_json())
    if is_dataclass(result) and not isinstance(result, type):
        from dataclasses import asdict

        result = asdict(result)
    try:
        return ToolOutput(text=json.dumps(result, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return ToolOutput(text=str(result))


def _model_from_signature(
    fn: Callable[..., Any], tool_name: str, arg_help: dict[str, str]
) -> type[BaseModel]:
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {param.name!r} must be a plain or keyword "
                "argument (no *args, **kwargs or positional-only)"
            )
        annotation = hints.get(param.name, Any)
        fields[param.name] = (annotation, _field(param, arg_help.get(param.name)))
    model_name = "".join(part.capitalize() for part in re.split(r"[_.-]", tool_name)) + "Args"
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def _field(param: inspect.Parameter, help_text: str | None) -> Any:
    default = param.default
    if isinstance(default, FieldInfo):
        if help_text and default.description is None:
            default.description = help_text
        return default
    extra = {"description": help_text} if help_text else {}
    if default is inspect.Parameter.empty:
        return Field(**extra)
    return Field(default=default, **extra)


def _snake_case(name: str) -> str:
    name = re.sub(r"(Args|Arguments|Input|Params)$", "", name) or name
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "(arguments)"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _run_with_deadline(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
    is_async: bool,
) -> Any:
    """Run ``fn`` on a worker thread (async functions in their own event loop) with a deadline."""

    def target() -> Any:
        if is_async:
            # wait_for cancels the coroutine at the deadline, so nothing keeps running.
            return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout))
        return fn(*args, **kwargs)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool")
    future = pool.submit(target)
    try:
        return future.result(timeout=None if timeout is None else timeout + _GRACE_S)
    except TimeoutError as exc:  # also concurrent.futures' and asyncio's TimeoutError
        if future.done() and not is_async:
            raise  # the tool's own TimeoutError, not our deadline
        future.cancel()
        raise ToolTimeoutError(f"tool call exceeded {timeout} s") from exc
    finally:
        pool.shutdown(wait=False)
