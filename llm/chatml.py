"""ChatML, the chat format of Qwen-Chat: building prompts and reading responses back.

``make_context`` reproduces Qwen's reference layout token for token, including its history
truncation. ``render_messages`` writes a list of chat messages as ChatML text for the chat
model adapters; ``response_from_generation`` turns a generated continuation into the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm.tokenizer import ENDOFTEXT, IM_END, IM_START, QwenTokenizer

DEFAULT_SYSTEM = "You are a helpful assistant."
ROLES = ("system", "user", "assistant")
_END_MARKERS = (IM_END, IM_START, ENDOFTEXT)

History = Sequence[tuple[str, str]]


def make_context(
    tok: QwenTokenizer,
    query: str,
    history: History | None = None,
    system: str = DEFAULT_SYSTEM,
    max_window_size: int = 6144,
) -> tuple[str, list[int]]:
    """Qwen's ChatML prompt for ``query`` after ``history``, as ``(raw_text, token_ids)``.

    Role names and contents are encoded with no special tokens allowed, so special-token text
    in user input stays plain text. History turns are kept newest first while
    ``len(system) + len(kept turns) < max_window_size``; older turns are dropped. The system
    prompt and the query are always kept whole.
    """
    _check_text("query", query)
    _check_text("system", system)
    if isinstance(max_window_size, bool) or not isinstance(max_window_size, int):
        raise TypeError(f"max_window_size must be an int, got {max_window_size!r}")
    nl = tok.encode("\n")
    start, end = [tok.im_start_id], [tok.im_end_id]

    system_tokens = start + _role_tokens(tok, "system", system) + end
    turns_text, turns_tokens = _kept_history(
        tok, history or (), len(system_tokens), max_window_size
    )

    raw_text = f"{IM_START}system\n{system}{IM_END}{turns_text}"
    raw_text += f"\n{IM_START}user\n{query}{IM_END}\n{IM_START}assistant\n"
    ids = system_tokens + turns_tokens
    ids += nl + start + _role_tokens(tok, "user", query) + end
    ids += nl + start + tok.encode("assistant") + nl
    return raw_text, ids


def _kept_history(
    tok: QwenTokenizer, history: History, system_len: int, max_window_size: int
) -> tuple[str, list[int]]:
    """The newest history turns that fit the window (strict ``<``), oldest first."""
    nl = tok.encode("\n")
    start, end = [tok.im_start_id], [tok.im_end_id]
    kept_text: list[str] = []
    kept_tokens: list[list[int]] = []
    kept_len = 0
    for index in range(len(history) - 1, -1, -1):
        query, response = _turn(history, index)
        tokens = nl + start + _role_tokens(tok, "user", query) + end
        tokens += nl + start + _role_tokens(tok, "assistant", response) + end
        if system_len + len(tokens) + kept_len >= max_window_size:
            break
        kept_tokens.append(tokens)
        kept_len += len(tokens)
        kept_text.append(
            f"\n{IM_START}user\n{query}{IM_END}\n{IM_START}assistant\n{response}{IM_END}"
        )
    text = "".join(reversed(kept_text))
    ids = [i for tokens in reversed(kept_tokens) for i in tokens]
    return text, ids


def _turn(history: History, index: int) -> tuple[str, str]:
    item = history[index]
    if isinstance(item, (str, bytes)) or len(item) != 2:
        raise ValueError(f"history[{index}] must be a (query, response) pair, got {item!r}")
    query, response = item
    _check_text(f"history[{index}] query", query)
    _check_text(f"history[{index}] response", response)
    return query, response


def _role_tokens(tok: QwenTokenizer, role: str, content: str) -> list[int]:
    # role and content are encoded separately, as the reference does, joined by "\n".
    return (
        tok.encode(role, allowed_special=set())
        + tok.encode("\n")
        + tok.encode(content, allowed_special=set())
    )


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")


def render_messages(messages: Sequence[Any], *, continue_last: bool = False) -> str:
    """ChatML text for a list of messages (dicts or objects with ``role`` and ``content``).

    Without a leading system message, ``DEFAULT_SYSTEM`` is used. With ``continue_last=False``
    the text ends with an open assistant turn (the generation prompt); with
    ``continue_last=True`` the last message must be from the assistant and is left open so
    the model continues it. Special-token text inside contents stays in the text; use
    ``encode_messages`` where it must not act as a control token.
    """
    closed, open_content = _conversation(messages, continue_last)
    blocks = [f"{IM_START}{role}\n{content}{IM_END}" for role, content in closed]
    return "\n".join(blocks) + f"\n{IM_START}assistant\n{open_content}"


def encode_messages(
    tok: QwenTokenizer, messages: Sequence[Any], *, continue_last: bool = False
) -> list[int]:
    """Token ids of ``render_messages(messages, ...)`` with contents encoded injection-safe.

    Roles and contents are encoded with no special tokens allowed, as in ``make_context``,
    so a message cannot close its own turn or open another.
    """
    closed, open_content = _conversation(messages, continue_last)
    nl = tok.encode("\n")
    start, end = [tok.im_start_id], [tok.im_end_id]
    ids: list[int] = []
    for index, (role, content) in enumerate(closed):
        ids += (nl if index else []) + start + _role_tokens(tok, role, content) + end
    ids += nl + start + tok.encode("assistant") + nl
    return ids + tok.encode(open_content, allowed_special=set())


def _conversation(
    messages: Sequence[Any], continue_last: bool
) -> tuple[list[tuple[str, str]], str]:
    """Closed (role, content) turns with the system prompt first, and the open assistant text."""
    pairs = [_role_content(m, i) for i, m in enumerate(messages)]
    if not pairs or pairs[0][0] != "system":
        pairs.insert(0, ("system", DEFAULT_SYSTEM))
    if not continue_last:
        return pairs, ""
    if len(pairs) < 2 or pairs[-1][0] != "assistant":
        last = pairs[-1][0] if len(pairs) > 1 else "none"
        raise ValueError(
            f"continue_last=True needs an assistant message last, the last role is {last!r}"
        )
    return pairs[:-1], pairs[-1][1]


def _role_content(message: Any, index: int) -> tuple[str, str]:
    if isinstance(message, dict):
        role, content = message.get("role"), message.get("content")
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if role not in ROLES:
        raise ValueError(f"messages[{index}]: role must be one of {ROLES}, got {role!r}")
    if not isinstance(content, str):
        raise TypeError(f"messages[{index}]: content must be a str, got {type(content).__name__}")
    return role, content


def response_from_generation(text: str) -> str:
    """The reply in a generated continuation: cut at the first ChatML marker, stripped."""
    cut = len(text)
    for marker in _END_MARKERS:
        pos = text.find(marker)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut].strip()
