"""OpenAICompatibleLLM against a real HTTP server on 127.0.0.1 that each test scripts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm.openai_compat import (
    BackendConnectionError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    OpenAICompatibleLLM,
)
from llm.types import LLM, SamplingParams


@dataclass
class Reply:
    """One scripted answer: a status with a body, or SSE events, optionally after a delay."""

    status: int = 200
    body: bytes | dict | None = None
    events: list[bytes | dict] | None = None
    delay: float = 0.0  # before the answer
    stall: float = 0.0  # after the SSE events, with the stream left open
    headers: dict[str, str] = field(default_factory=dict)


def completion(text: str, finish_reason: str = "stop", **choice: object) -> dict:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, **choice}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def chunk(text: str, finish_reason: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish_reason}]}


class _QuietServer(ThreadingHTTPServer):
    """A test server that does not print a traceback when a timed-out client hangs up."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class ScriptedServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict] = []
        self.release = threading.Event()
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                script.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": body}
                )
                reply = (
                    script.replies.pop(0) if script.replies else Reply(500, b"no reply scripted")
                )
                if reply.delay:
                    script.release.wait(reply.delay)
                if reply.events is not None:
                    self._send_events(reply)
                else:
                    self._send_body(reply)

            def _send_body(self, reply: Reply) -> None:
                data = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_events(self, reply: Reply) -> None:
                # chunked transfer encoding, as uvicorn-based servers (vLLM, SGLang) stream
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in reply.events or []:
                    data = event if isinstance(event, bytes) else json.dumps(event).encode()
                    self._chunk(b"data: " + data + b"\n\n")
                if reply.stall:
                    script.release.wait(reply.stall)
                self._chunk(b"")
                self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture
def make_llm(server: ScriptedServer) -> Callable[..., OpenAICompatibleLLM]:
    def make(**kwargs: object) -> OpenAICompatibleLLM:
        opts = {"backoff": 0.01, "max_backoff": 0.05, "read_timeout": 5.0, **kwargs}
        return OpenAICompatibleLLM(server.base_url, "qwen-14b-chat-int4", **opts)

    return make


def test_normal_completion(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(body=completion(" 4", finish_reason="length")))
    llm = make_llm(api_key="secret")
    assert isinstance(llm, LLM)
    result = llm.complete("<|im_start|>user\n2+2?", max_new_tokens=1)
    assert result.text == " 4"
    assert result.finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)
    (request,) = server.requests
    assert request["path"] == "/v1/completions"
    assert request["headers"]["Authorization"] == "Bearer secret"
    sent = request["json"]
    assert sent["model"] == "qwen-14b-chat-int4"
    assert sent["prompt"] == "<|im_start|>user\n2+2?"
    assert sent["max_tokens"] == 1
    assert sent["stream"] is False
    assert (sent["temperature"], sent["top_p"]) == (1.0, 0.8)  # Qwen's generation_config
    assert "stop" not in sent


def test_sampling_mapping_and_v1_base_url(server: ScriptedServer) -> None:
    server.replies += [Reply(body=completion("a")), Reply(body=completion("b"))]
    llm = OpenAICompatibleLLM(server.base_url + "/v1/", "m")
    llm.complete("p", sampling=SamplingParams.greedy())
    llm.complete("p", sampling=SamplingParams(temperature=0.7, top_p=0.9, top_k=5, seed=3))
    greedy, sampled = (r["json"] for r in server.requests)
    assert server.requests[0]["path"] == "/v1/completions"
    assert greedy["temperature"] == 0.0 and greedy["repetition_penalty"] == 1.0
    assert "top_k" not in greedy
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"], sampled["seed"]) == (
        0.7,
        0.9,
        5,
        3,
    )


def test_stop_strings_are_sent_and_stripped(server: ScriptedServer, make_llm) -> None:
    # a server that leaves the stop string (and more) in the text
    text = 'Thought: search\nAction: s\nAction Input: {"q": 1}\nObservation: x'
    server.replies.append(Reply(body=completion(text, finish_reason="stop")))
    result = make_llm().complete("p", stop=["Observation:", "Observation:\n"])
    assert server.requests[0]["json"]["stop"] == ["Observation:", "Observation:\n"]
    assert result.text == 'Thought: search\nAction: s\nAction Input: {"q": 1}\n'
    assert result.stop == "Observation:"
    assert result.finish_reason == "stop"


def test_stop_reason_reported_by_server(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(body=completion("Thought: hi\n", stop_reason="Observation:")))
    result = make_llm().complete("p", stop=["Observation:"])
    assert result.text == "Thought: hi\n"
    assert result.stop == "Observation:" and result.finish_reason == "stop"


def test_streaming(server: ScriptedServer, make_llm) -> None:
    events = [chunk("你"), chunk("好"), chunk("！", "stop"), b"[DONE]"]
    server.replies.append(Reply(events=events))
    deltas = list(make_llm().stream("p"))
    assert deltas == ["你", "好", "！"]
    assert server.requests[0]["json"]["stream"] is True


def test_streaming_stops_at_a_stop_string_split_over_chunks(
    server: ScriptedServer, make_llm
) -> None:
    events = [chunk("Action: s\nObs"), chunk("ervation: leaked"), chunk(" more"), b"[DONE]"]
    server.replies.append(Reply(events=events))
    deltas = list(make_llm().stream("p", stop=["Observation:"]))
    assert "".join(deltas) == "Action: s\n"
    assert all("Obs" not in d for d in deltas)


def test_streaming_releases_held_back_prefix(server: ScriptedServer, make_llm) -> None:
    events = [chunk("an Obs"), chunk("cure end"), b"[DONE]"]
    server.replies.append(Reply(events=events))
    assert "".join(make_llm().stream("p", stop=["Observation:"])) == "an Obscure end"


def test_retry_after_503_then_success(server: ScriptedServer, make_llm) -> None:
    server.replies += [
        Reply(503, {"error": {"message": "overloaded"}}),
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
        Reply(body=completion("ok")),
    ]
    assert make_llm().complete("p").text == "ok"
    assert len(server.requests) == 3


def test_retries_are_bounded(server: ScriptedServer, make_llm) -> None:
    server.replies += [Reply(503, {"error": {"message": "overloaded"}})] * 5
    llm = make_llm(max_retries=2)
    with pytest.raises(BackendHTTPError, match="overloaded") as info:
        llm.complete("p")
    assert info.value.status == 503
    assert llm.url in str(info.value) and "HTTP 503" in str(info.value)
    assert len(server.requests) == 3


def test_client_error_is_not_retried(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(400, {"error": {"message": "max_tokens is too large"}}))
    with pytest.raises(BackendHTTPError, match="max_tokens is too large") as info:
        make_llm().complete("p")
    assert info.value.status == 400
    assert len(server.requests) == 1


def test_streaming_retries_before_the_first_event(server: ScriptedServer, make_llm) -> None:
    server.replies += [Reply(502, b"bad gateway"), Reply(events=[chunk("x"), b"[DONE]"])]
    assert list(make_llm().stream("p")) == ["x"]


def test_read_timeout_does_not_hang(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(body=completion("late"), delay=30.0))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="read timeout") as info:
        make_llm(read_timeout=0.3).complete("p")
    assert time.monotonic() - start < 3.0
    assert isinstance(info.value, TimeoutError)
    assert len(server.requests) == 1


def test_stream_read_timeout_does_not_hang(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(events=[chunk("x")], stall=30.0))
    start = time.monotonic()
    deltas = []
    with pytest.raises(BackendTimeoutError):
        for delta in make_llm(read_timeout=0.3).stream("p"):
            deltas.append(delta)
    assert deltas == ["x"]
    assert time.monotonic() - start < 3.0


def test_malformed_json_is_a_clear_error(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(body=b"{'choices': [oops"))
    with pytest.raises(BackendResponseError, match=r"not a completion response.*oops") as info:
        make_llm().complete("p")
    assert server.base_url in str(info.value)


def test_json_without_choices_is_a_clear_error(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(body={"object": "text_completion"}))
    with pytest.raises(BackendResponseError, match="choices"):
        make_llm().complete("p")


def test_malformed_stream_event(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(events=[chunk("a"), b"{not json"]))
    with pytest.raises(BackendResponseError, match="not JSON"):
        list(make_llm().stream("p"))


def test_error_event_in_stream(server: ScriptedServer, make_llm) -> None:
    server.replies.append(Reply(events=[{"error": {"message": "engine died"}}]))
    with pytest.raises(BackendHTTPError, match="engine died"):
        list(make_llm().stream("p"))


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}", "m", max_retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(BackendConnectionError, match="3 attempt") as info:
        llm.complete("p")
    assert time.monotonic() - start < 3.0
    assert f"127.0.0.1:{port}" in str(info.value)


def test_count_tokens_uses_qwen_tokenizer(make_llm) -> None:
    assert make_llm().count_tokens("你好") == 1
    assert make_llm().count_tokens("<|im_start|>user\n你好<|im_end|>") == 5


def test_bad_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleLLM("127.0.0.1:8000", "m")
