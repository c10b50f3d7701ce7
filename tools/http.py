"""``HttpGet``: fetch a web page as text, for the model (a plugin built on ``requests``).

Only URLs on the allow-list are fetched, redirects included (each hop is checked). A request
has a deadline, the body is read up to a size cap, HTML is reduced to its visible text, and
the text is cut to ``max_chars``. Without an explicit ``allow`` the list comes from the
environment variable ``QWEN_REACT_HTTP_ALLOW`` (comma-separated); an empty list allows nothing.

Allow-list entries: a host (``example.com``, also matching its subdomains), a wildcard host
(``*.example.com``, subdomains only), or a URL prefix (``https://api.example.com/v1/``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests
from pydantic import BaseModel, Field

from tools.tool import Tool

ALLOW_ENV = "QWEN_REACT_HTTP_ALLOW"
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg"}
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "main", "nav",
}  # fmt: skip
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")
_MAX_REDIRECTS = 5


class HttpGetArgs(BaseModel):
    """Fetch a web page (http or https) and return its text content."""

    url: str = Field(description="the full URL to fetch, starting with http:// or https://")


class FetchError(Exception):
    """A fetch that was refused or failed; the message is shown to the model."""


class HttpGet(Tool):
    """The ``http_get`` tool: GET a URL from the allow-list and return its text."""

    def __init__(
        self,
        allow: Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        max_bytes: int = 2_000_000,
        max_chars: int = 8_000,
        session: requests.Session | None = None,
    ) -> None:
        if allow is None:
            allow = [a for a in os.environ.get(ALLOW_ENV, "").split(",") if a.strip()]
        self.allow = tuple(a.strip().lower() for a in allow)
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.request_timeout = timeout
        self.session = session or requests.Session()
        super().__init__(
            self._fetch,
            HttpGetArgs,
            name="http_get",
            name_for_human="HTTP GET",
            description=(
                "Fetch a web page (http or https) and return its text content. "
                + self._allow_text()
            ),
            pass_model=True,
        )

    def allowed(self, url: str) -> bool:
        """Whether ``url`` is on the allow-list (scheme http/https only)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = parts.hostname.lower()
        for entry in self.allow:
            if "://" in entry:
                if url.lower().startswith(entry):
                    return True
            elif entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry or host.endswith("." + entry):
                return True
        return False

    def _allow_text(self) -> str:
        if not self.allow:
            return f"No site is allowed yet (set {ALLOW_ENV})."
        return "Allowed sites: " + ", ".join(self.allow) + "."

    def _fetch(self, args: HttpGetArgs) -> str:
        return self._get_text(args.url.strip())

    def _get_text(self, url: str) -> str:
        deadline = time.monotonic() + self.request_timeout
        for _ in range(_MAX_REDIRECTS + 1):
            if not self.allowed(url):
                raise FetchError(
                    f"{url} is not on the allow-list. {self._allow_text()} "
                    "Use an allowed URL or answer without fetching."
                )
            response = self._request(url, deadline)
            if response.is_redirect and response.headers.get("location"):
                url = urljoin(url, response.headers["location"])
                response.close()
                continue
            return self._read(url, response, deadline)
        raise FetchError(f"too many redirects (more than {_MAX_REDIRECTS}) from {url}")

    def _request(self, url: str, deadline: float) -> requests.Response:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            return self.session.get(
                url, timeout=remaining, stream=True, allow_redirects=False,
                headers={"User-Agent": "qwen-react http_get"},
            )  # fmt: skip
        except requests.Timeout:
            raise FetchError(f"{url} did not answer within {self.request_timeout:g} s") from None
        except requests.RequestException as exc:
            raise FetchError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None

    def _read(self, url: str, response: requests.Response, deadline: float) -> str:
        with response:
            if response.status_code >= 400:
                raise FetchError(f"{url} answered HTTP {response.status_code} {response.reason}")
            kind = response.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
            if not kind.startswith(_TEXT_TYPES):
                raise FetchError(f"{url} is {kind}, not text; only text pages can be read")
            body, cut = bytearray(), False
            for chunk in response.iter_content(chunk_size=65536):
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    del body[self.max_bytes :]
                    cut = True
                    break
                if time.monotonic() > deadline:
                    raise FetchError(f"{url} was too slow (over {self.request_timeout:g} s)")
            # requests assumes ISO-8859-1 for text/* without a charset; UTF-8 is the better guess.
            declared = "charset=" in response.headers.get("content-type", "").lower()
            encoding = (response.encoding if declared else None) or "utf-8"
            try:
                text = body.decode(encoding, errors="replace")
            except LookupError:  # a charset Python does not know
                text = body.decode("utf-8", errors="replace")
        if "html" in kind:
            text = html_to_text(text)
        return self._clip(text, cut)

    def _clip(self, text: str, cut: bool) -> str:
        if len(text) > self.max_chars:
            return text[: self.max_chars] + f"\n[... cut at {self.max_chars} characters]"
        if cut:
            return text + f"\n[... cut at {self.max_bytes} bytes]"
        return text


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(self._skip - 1, 0)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document: no scripts or styles, one block per line."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (
        re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n")
    )
    return "\n".join(line for line in lines if line)
