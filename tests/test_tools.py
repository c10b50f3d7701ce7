"""Tool, @tool, argument schemas and Action Input parsing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from enum import Enum
from typing import Annotated, Literal

import pytest
import requests
import requests.adapters
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from tools import ArgumentError, Tool, ToolDefinitionError, ToolOutput, parse_action_input, tool
from tools.docstring import parse_docstring
from tools.http import HttpGet


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Location(BaseModel):
    city: str = Field(description="city name")
    country: str = "CN"


@tool
def weather(location: str, unit: Unit = Unit.celsius, days: int = 1) -> str:
    """Get the weather forecast
    for a place.

    Args:
        location: The city and state, e.g. San Francisco, CA
        unit (Unit): temperature unit
        days: how many days,
            counted from today.
    """
    return f"{location}:{unit.value}:{days}"


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


# ---------------------------------------------------------------- schema the model sees


def test_schema_with_defaults_enums_and_docstring_help():
    assert weather.name == "weather"
    assert weather.name_for_human == "weather"
    assert weather.description == "Get the weather forecast for a place."
    assert weather.parameters == {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            },
            "unit": {
                "enum": ["celsius", "fahrenheit"],
                "type": "string",
                "default": "celsius",
                "description": "temperature unit",
            },
            "days": {
                "default": 1,
                "description": "how many days, counted from today.",
                "type": "integer",
            },
        },
        "required": ["location"],
    }


def test_schema_with_lists_literals_and_nested_models():
    @tool(name="plan_trip", name_for_human="Trip planner")
    def plan(
        stops: list[Location],
        mode: Literal["car", "train"] = "train",
        tags: list[str] | None = None,
        budget: Annotated[float, Field(gt=0, description="in CNY")] = 100.0,
    ) -> dict:
        """Plan a trip through several cities."""
        return {"n": len(stops), "mode": mode}

    props = plan.parameters["properties"]
    assert plan.name == "plan_trip" and plan.name_for_human == "Trip planner"
    assert props["stops"] == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "city": {"description": "city name", "type": "string"},
                "country": {"default": "CN", "type": "string"},
            },
            "required": ["city"],
        },
    }
    assert props["mode"] == {"enum": ["car", "train"], "type": "string", "default": "train"}
    assert props["tags"]["anyOf"] == [
        {"items": {"type": "string"}, "type": "array"},
        {"type": "null"},
    ]
    assert props["budget"] == {
        "default": 100.0,
        "description": "in CNY",
        "exclusiveMinimum": 0,
        "type": "number",
    }
    assert plan.parameters["required"] == ["stops"]
    assert "$defs" not in plan.parameters
    assert "title" not in json.dumps(plan.parameters)
    out = plan.invoke('{"stops": [{"city": "Hangzhou"}], "mode": "car"}')
    assert out == ToolOutput(text='{"n": 1, "mode": "car"}')


def test_tool_from_pydantic_model_class():
    class ImageGen(BaseModel):
        """Draw a picture from a text prompt."""

        prompt: str = Field(description="what to draw, in English")
        n: int = Field(default=1, ge=1, le=4)

    seen = []
    gen = Tool.from_model(ImageGen, lambda args: seen.append(args) or f"{args.n} image(s)")
    assert gen.name == "image_gen"
    assert gen.description == "Draw a picture from a text prompt."
    assert gen.parameters["properties"]["prompt"] == {
        "description": "what to draw, in English",
        "type": "string",
    }
    assert gen.parameters["properties"]["n"] == {
        "default": 1,
        "maximum": 4,
        "minimum": 1,
        "type": "integer",
    }
    assert gen.invoke('{"prompt": "cute black cat"}').text == "1 image(s)"
    assert isinstance(seen[0], ImageGen) and seen[0].prompt == "cute black cat"
    bad = gen.invoke('{"prompt": "cat", "n": 9}')
    assert bad.is_error and "n: Input should be less than or equal to 4" in bad.text


def test_recursive_model_keeps_its_definitions():
    class Node(BaseModel):
        """A tree node."""

        label: str
        children: list[Node] = []

    t = Tool.from_model(Node, lambda n: n.label)
    children = t.parameters["properties"]["children"]
    assert children["items"] == {"$ref": "#/$defs/Node"}
    assert set(t.parameters["$defs"]) == {"Node"}
    assert t.invoke('{"label": "a", "children": [{"label": "b"}]}').text == "a"


def test_bad_definitions_raise_clearly():
    def nodoc(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="no description"):
        tool(nodoc)

    def star(*args: int) -> int:
        """Sum."""
        return sum(args)

    with pytest.raises(ToolDefinitionError, match="args"):
        tool(star)
    with pytest.raises(ToolDefinitionError, match="invalid tool name"):
        tool(name="has space")(search.fn)
    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=0)(search.fn)


def test_docstring_styles():
    doc = parse_docstring(
        """Fetch a page.

        :param url: the address
        :param int limit: most characters
            to keep
        :returns: the text
        """
    )
    assert doc.description == "Fetch a page."
    assert doc.args == {"url": "the address", "limit": "most characters to keep"}


# ---------------------------------------------------------------- calling


def test_invoke_with_json_near_json_and_bare_string():
    assert weather.invoke('{"location": "Paris", "days": 3}').text == "Paris:celsius:3"
    assert weather.invoke("{'location': 'Paris', 'unit': 'fahrenheit',}").text == (
        "Paris:fahrenheit:1"
    )
    assert weather.invoke("{location: 'Oslo', /* comment */ days: 2}").text == "Oslo:celsius:2"
    # one required argument: a bare string is that argument
    assert weather.invoke("Berlin").text == "Berlin:celsius:1"
    assert search.invoke("周杰伦 老婆").text == "results for 周杰伦 老婆"
    assert search.invoke('"quoted"').text == "results for quoted"
    assert search.invoke("12345").text == "results for 12345"
    assert search.invoke("```\nmulti\nline\n```").text == "results for multi\nline"
    assert search.invoke('```json\n{"query": "x"}\n```').text == "results for x"


def test_invoke_never_evaluates_python():
    @tool
    def echo(a: str, b: str) -> str:
        """Echo."""
        return a + b

    # Python would evaluate both to a valid dict; a JSON reader must refuse them.
    for text in ("dict(a='x', b='y')", "{'a': 'x', 'b': 'y'} if True else None"):
        out = echo.invoke(text)
        assert out.is_error and "not valid JSON" in out.text


def test_model_errors_become_observations():
    missing = weather.invoke("")
    assert missing.is_error and "empty" in missing.text and '"location"' in missing.text
    wrong_type = weather.invoke('{"location": "X", "days": "many"}')
    assert wrong_type.is_error and "days: Input should be a valid integer" in wrong_type.text
    assert "JSON object matching this schema" in wrong_type.text
    extra = weather.invoke('{"location": "X", "colour": "red"}')
    assert extra.is_error and "colour: Extra inputs are not permitted" in extra.text
    wrong_key = search.invoke('{"prompt": "cat"}')
    assert wrong_key.is_error and "query: Field required" in wrong_key.text

    @tool
    def boom(x: int) -> int:
        """Always fails."""
        raise RuntimeError("disk on fire")

    out = boom.invoke('{"x": 1}')
    assert out.is_error
    assert "RuntimeError: disk on fire" in out.text and "try again" in out.text


def test_timeout_sync_and_async():
    @tool(timeout=0.1)
    def slow(x: int) -> int:
        """Sleeps."""
        time.sleep(0.5)
        return x

    cancelled = []

    @tool(timeout=0.1)
    async def aslow(x: int) -> int:
        """Sleeps asynchronously."""
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return x

    t0 = time.monotonic()
    out = slow.invoke('{"x": 1}')
    assert out.is_error and "did not finish within 0.1 s" in out.text
    assert time.monotonic() - t0 < 0.4
    out = aslow.invoke('{"x": 1}')
    assert out.is_error and "did not finish within 0.1 s" in out.text
    assert cancelled == [True]


def test_async_tool_runs_inside_and_outside_an_event_loop():
    @tool
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        await asyncio.sleep(0)
        return a + b

    assert add.invoke('{"a": 2, "b": 3}').text == "5"

    async def main() -> str:
        return add.invoke('{"a": 1, "b": 1}').text

    assert asyncio.run(main()) == "2"


def test_results_are_rendered_as_text():
    @tool
    def data(kind: str) -> object:
        """Return data."""
        return {"dict": {"城市": "杭州"}, "none": None, "list": [1, 2]}[kind]

    assert data.invoke("dict").text == '{"城市": "杭州"}'
    assert data.invoke("none").text.startswith("Done")
    assert data.invoke("list").text == "[1, 2]"
    assert data.call(kind="list") == [1, 2]
    assert data("list") == [1, 2]


# ---------------------------------------------------------------- parse_action_input


SCHEMA_2 = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


def test_parse_action_input_requires_an_object_for_several_arguments():
    assert parse_action_input('{"a": "x", "b": 1}', SCHEMA_2) == {"a": "x", "b": 1}
    with pytest.raises(ArgumentError, match="not valid JSON"):
        parse_action_input("a=x, b=1", SCHEMA_2)
    with pytest.raises(ArgumentError, match="JSON object"):
        parse_action_input("[1, 2]", SCHEMA_2)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_parse_action_input_never_raises_other_errors(text):
    with contextlib.suppress(ArgumentError):
        parse_action_input(text, SCHEMA_2)
    one = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    if text.strip():
        assert isinstance(parse_action_input(text, one)["q"], str)


# ---------------------------------------------------------------- http_get (no network)


class FakeWeb(requests.adapters.BaseAdapter):
    """Serves canned responses for URLs; records what was requested."""

    def __init__(self, pages: dict[str, tuple[int, dict[str, str], bytes]], delay: float = 0.0):
        super().__init__()
        self.pages = pages
        self.delay = delay
        self.requested: list[str] = []

    def send(self, request, **kwargs):
        self.requested.append(request.url)
        if self.delay:
            time.sleep(self.delay)
            if kwargs.get("timeout") and kwargs["timeout"] < self.delay:
                raise requests.Timeout("read timed out")
        status, headers, body = self.pages.get(request.url, (404, {}, b"missing"))
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status < 400 else "Not Found"
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url
        response.request = request
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response

    def close(self):
        pass


def _http(pages, allow=("example.com",), delay=0.0, **options):
    web = FakeWeb(pages, delay)
    session = requests.Session()
    session.mount("http://", web)
    session.mount("https://", web)
    return HttpGet(allow=allow, session=session, **options), web


HTML = (
    b"<html><head><title>Cats</title><style>p {color: red}</style>"
    b"<script>alert('x')</script></head><body><h1>About cats</h1>"
    b"<p>Cats are   <b>small</b> &amp; furry.</p><ul><li>purr</li><li>nap</li></ul></body></html>"
)


def test_http_get_extracts_text_from_html():
    http_get, web = _http(
        {"https://example.com/cats": (200, {"content-type": "text/html; charset=utf-8"}, HTML)}
    )
    out = http_get.invoke('{"url": "https://example.com/cats"}')
    assert not out.is_error
    assert out.text == "Cats\nAbout cats\nCats are small & furry.\npurr\nnap"
    assert http_get.name == "http_get" and "example.com" in http_get.description
    assert http_get.invoke("https://example.com/cats").text == out.text  # bare URL works too


def test_http_get_allow_list_and_redirects():
    pages = {
        "https://docs.example.com/a": (302, {"location": "https://evil.test/steal"}, b""),
        "https://example.com/b": (301, {"location": "/c"}, b""),
        "https://example.com/c": (200, {"content-type": "text/plain"}, "好".encode()),
    }
    http_get, web = _http(pages)
    refused = http_get.invoke("https://evil.test/")
    assert refused.is_error and "not on the allow-list" in refused.text and web.requested == []
    assert http_get.invoke("file:///etc/passwd").is_error
    assert http_get.invoke("https://notexample.com/").is_error  # a suffix is not a subdomain
    redirected = http_get.invoke("https://docs.example.com/a")
    assert (
        redirected.is_error
        and "https://evil.test/steal is not on the allow-list" in redirected.text
    )
    assert web.requested == ["https://docs.example.com/a"]
    assert http_get.invoke("https://example.com/b").text == "好"
    prefix, _ = _http(pages, allow=("https://example.com/c",))
    assert prefix.allowed("https://example.com/c") and not prefix.allowed("https://example.com/b")
    wildcard, _ = _http(pages, allow=("*.example.com",))
    assert wildcard.allowed("https://docs.example.com/") and not wildcard.allowed(
        "https://example.com/"
    )


def test_http_get_caps_size_and_length():
    big = b"x" * 50_000
    pages = {"https://example.com/big": (200, {"content-type": "text/plain"}, big)}
    by_bytes, _ = _http(pages, max_bytes=1000, max_chars=10_000)
    text = by_bytes.invoke("https://example.com/big").text
    assert text.startswith("x" * 1000) and text.endswith("[... cut at 1000 bytes]")
    by_chars, _ = _http(pages, max_chars=100)
    assert (
        by_chars.invoke("https://example.com/big").text
        == "x" * 100 + "\n[... cut at 100 characters]"
    )


def test_http_get_errors_are_observations(monkeypatch):
    pages = {
        "https://example.com/img": (200, {"content-type": "image/png"}, b"\x89PNG"),
        "https://example.com/slow": (200, {"content-type": "text/plain"}, b"late"),
    }
    http_get, _ = _http(pages)
    binary = http_get.invoke("https://example.com/img")
    assert binary.is_error and "image/png, not text" in binary.text
    missing = http_get.invoke("https://example.com/none")
    assert missing.is_error and "HTTP 404" in missing.text
    slow, _ = _http(pages, delay=0.2, timeout=0.05)
    out = slow.invoke("https://example.com/slow")
    assert out.is_error and "did not answer within 0.05 s" in out.text
    monkeypatch.setenv("QWEN_REACT_HTTP_ALLOW", " a.org , b.org ")
    assert HttpGet().allow == ("a.org", "b.org")
    monkeypatch.delenv("QWEN_REACT_HTTP_ALLOW")
    nothing = HttpGet()
    assert (
        nothing.invoke("https://example.com/").is_error
        and "QWEN_REACT_HTTP_ALLOW" in nothing.description
    )
