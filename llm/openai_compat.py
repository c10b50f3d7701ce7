"""An LLM backend over any OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, ...).

This is how the agent scales out: the server runs Qwen-14B-Chat-Int4 on as many GPUs as it
likes, and ``OpenAICompatibleLLM`` sends it the raw ChatML prompt. Requests have connect and
read timeouts; 429, 5xx and connection failures are retried with bounded exponential
backoff; anything else raises a ``BackendError`` that names the URL and the HTTP status.
A read timeout is not retried: the server accepted the work and is too slow for the limit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from llm.stopping import StopGuard, StopStrings
from llm.tokenizer import QwenTokenizer
from llm.types import Completion, FinishReason, SamplingParams, Usage

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class BackendError(RuntimeError):
    """A request to the completion server failed; ``url`` and ``status`` say where and how."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(f"{message} [{url}" + (f", HTTP {status}]" if status else "]"))
        self.url = url
        self.status = status


class BackendHTTPError(BackendError):
    """The server answered with an error status (after any retries)."""


class BackendConnectionError(BackendError, ConnectionError):
    """The server could not be reached (after any retries)."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The server did not answer within the read timeout."""


class BackendResponseError(BackendError):
    """The server answered 200 with a body that is not a valid completion response."""


class _Choice(BaseModel):
    text: str
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM: the stop string or token id that matched


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Response(BaseModel):
    choices: list[_Choice]
    usage: _Usage | None = None


class OpenAICompatibleLLM:
    """The ``llm.types.LLM`` protocol over an OpenAI-compatible completion server.

    ``base_url`` may end in ``/v1`` or not (``http://host:8000`` and ``http://host:8000/v1``
    reach the same endpoint). ``sampling=None`` sends Qwen-14B-Chat's generation_config
    values (``SamplingParams()``); greedy sampling is sent as ``temperature=0``.
    ``top_k`` and ``repetition_penalty`` are vLLM/SGLang extensions, sent unless
    ``send_extensions=False``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        send_extensions: bool = True,
        tokenizer: QwenTokenizer | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive")
        self.url = _completions_url(base_url)
        self.model = model
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.send_extensions = send_extensions
        self._tokenizer = tokenizer
        self._session = session or requests.Session()
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    # the LLM protocol

    def complete(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Completion:
        """One completion; the text excludes any stop string, even one the server kept."""
        stops = StopStrings(stop)
        payload = self._payload(prompt, stops, max_new_tokens, sampling, stream=False)
        response = self._post(payload, stream=False)
        parsed = self._parse(response)
        choice = parsed.choices[0]
        text, matched = stops.cut(choice.text)
        if matched is None and isinstance(choice.stop_reason, str):
            matched = choice.stop_reason
        finish: FinishReason = "length" if choice.finish_reason == "length" else "stop"
        if matched is not None:
            finish = "stop"
        usage = self._usage(parsed.usage, prompt, text)
        return Completion(text=text, finish_reason=finish, usage=usage, stop=matched)

    def stream(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_new_tokens: int = 512,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        """Text deltas as the server streams them (SSE), ending before any stop string.

        The request is sent (and retried) by this call; failures while reading the stream
        surface during iteration.
        """
        stops = StopStrings(stop)
        payload = self._payload(prompt, stops, max_new_tokens, sampling, stream=True)
        response = self._post(payload, stream=True)
        return self._deltas(response, stops)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with Qwen's tokenizer (special-token text parsed)."""
        return len(self.tokenizer.encode(text))

    @property
    def tokenizer(self) -> QwenTokenizer:
        if self._tokenizer is None:
            self._tokenizer = QwenTokenizer.default()
        return self._tokenizer

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OpenAICompatibleLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(url={self.url!r}, model={self.model!r})"

    # request building and sending

    def _payload(
        self,
        prompt: str,
        stops: StopStrings,
        max_new_tokens: int,
        sampling: SamplingParams | None,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "stream": stream,
        }
        if stops.stops:
            payload["stop"] = list(stops.stops)
        payload.update(self._sampling_fields(sampling or SamplingParams()))
        return payload

    def _sampling_fields(self, s: SamplingParams) -> dict[str, Any]:
        fields: dict[str, Any]
        if s.do_sample:
            fields = {"temperature": s.temperature, "top_p": s.top_p}
        else:
            fields = {"temperature": 0.0, "top_p": 1.0}
        if s.seed is not None:
            fields["seed"] = s.seed
        if self.send_extensions:
            fields["repetition_penalty"] = s.repetition_penalty
            if s.do_sample and s.top_k > 0:
                fields["top_k"] = s.top_k
        return fields

    def _post(self, payload: dict[str, Any], *, stream: bool) -> requests.Response:
        """POST with retries; returns a 200 response or raises a ``BackendError``."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._session.post(
                    self.url,
                    json=payload,
                    headers=self._headers,
                    timeout=self.timeout,
                    stream=stream,
                )
            except requests.exceptions.ReadTimeout as e:
                raise BackendTimeoutError(
                    f"no answer within the read timeout of {self.timeout[1]} s", url=self.url
                ) from e
            except requests.exceptions.ConnectionError as e:
                # includes ConnectTimeout
                if attempt >= self.max_retries:
                    raise BackendConnectionError(
                        f"cannot connect after {attempt + 1} attempt(s): {e}", url=self.url
                    ) from e
                problem = f"connection failed ({type(e).__name__})"
            except requests.exceptions.RequestException as e:
                raise BackendError(f"request failed: {e}", url=self.url) from e
            else:
                if response.status_code == 200:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    raise self._http_error(response, attempt + 1)
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
                response.close()
            delay = self._delay(attempt, retry_after)
            attempt += 1
            log.warning(
                "%s from %s; retry %d/%d in %.2f s",
                problem,
                self.url,
                attempt,
                self.max_retries,
                delay,
            )
            time.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * (2**attempt))
        if retry_after is not None:
            delay = min(self.max_backoff, max(delay, retry_after))
        return delay

    def _http_error(self, response: requests.Response, attempts: int) -> BackendHTTPError:
        detail = _error_detail(response)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return BackendHTTPError(
            f"server error{tries}: {detail}", url=self.url, status=response.status_code
        )

    # response reading

    def _parse(self, response: requests.Response) -> _Response:
        try:
            body = response.content
        except requests.exceptions.RequestException as e:
            raise _read_failure(e, self) from e
        try:
            parsed = _Response.model_validate_json(body)
        except ValidationError as e:
            raise BackendResponseError(
                f"not a completion response ({_first_error(e)}); body starts {body[:200]!r}",
                url=self.url,
                status=response.status_code,
            ) from e
        if not parsed.choices:
            raise BackendResponseError("completion response has no choices", url=self.url)
        return parsed

    def _usage(self, usage: _Usage | None, prompt: str, text: str) -> Usage:
        if usage is not None:
            return Usage(usage.prompt_tokens, usage.completion_tokens)
        return Usage(self.count_tokens(prompt), len(self.tokenizer.encode(text)))

    def _deltas(self, response: requests.Response, stops: StopStrings) -> Iterator[str]:
        guard = StopGuard(stops)
        try:
            for chunk in self._sse_texts(response):
                delta = guard.feed(chunk)
                if delta:
                    yield delta
                if guard.stopped:
                    return
            tail = guard.finish()
            if tail:
                yield tail
        finally:
            response.close()

    def _sse_texts(self, response: requests.Response) -> Iterator[str]:
        """The ``choices[0].text`` of each SSE event, until ``data: [DONE]``."""
        try:
            for line in response.iter_lines(chunk_size=None):
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, "event:" lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield self._event_text(data)
        except requests.exceptions.RequestException as e:
            raise _read_failure(e, self) from e

    def _event_text(self, data: bytes) -> str:
        try:
            event = json.loads(data)
        except ValueError as e:
            raise BackendResponseError(
                f"stream event is not JSON: {data[:200]!r}", url=self.url
            ) from e
        if isinstance(event, dict) and "error" in event:
            raise BackendHTTPError(f"server error in stream: {event['error']}", url=self.url)
        try:
            return _Response.model_validate(event).choices[0].text
        except (ValidationError, IndexError) as e:
            raise BackendResponseError(
                f"stream event is not a completion chunk: {data[:200]!r}", url=self.url
            ) from e


def _completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    if base.endswith("/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/completions"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential delay is used instead


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:200]) if response.text else response.reason or "no body"
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return json.dumps(body)[:200]


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


def _read_failure(
    e: requests.exceptions.RequestException, llm: OpenAICompatibleLLM
) -> BackendError:
    if isinstance(e, requests.exceptions.ConnectionError) and "timed out" in str(e).lower():
        return BackendTimeoutError(
            f"no data within the read timeout of {llm.timeout[1]} s", url=llm.url
        )
    return BackendConnectionError(f"connection broke while reading the response: {e}", url=llm.url)
