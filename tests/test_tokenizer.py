"""QwenTokenizer against Qwen's published token ids, its error handling and its round trips."""

from __future__ import annotations

import base64
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.tokenizer import QwenTokenizer, TokenizerError
from llm.vocab import VocabularyError, official_vocab_path


@pytest.fixture(scope="module")
def tok() -> QwenTokenizer:
    return QwenTokenizer.default()


# Published ids: the issue, Qwen's tokenization note and react_prompt.md comments.
PUBLISHED = {
    "你好": [108386],
    "Observation:": [37763, 367, 25],
    "Observation:\n": [37763, 367, 510],
    "Observation": [37763, 367],
    "\n": [198],
    "\n\n": [271],
    " ": [220],
    "system": [8948],
    "user": [872],
    "assistant": [77091],
    "You are a helpful assistant.": [2610, 525, 264, 10950, 17847, 13],
    "Thought:": [84169, 25],
    "Action:": [2512, 25],
    "Action Input:": [2512, 5571, 25],
    "Final Answer:": [19357, 21806, 25],
}


@pytest.mark.parametrize("text", sorted(PUBLISHED))
def test_published_ids(tok: QwenTokenizer, text: str) -> None:
    assert tok.encode(text) == PUBLISHED[text]
    assert tok.encode(text, allowed_special=set()) == PUBLISHED[text]
    assert tok.decode(PUBLISHED[text]) == text


def test_repeated_character_is_one_token_each(tok: QwenTokenizer) -> None:
    assert tok.encode("我") == [35946]
    assert tok.encode("我" * 7) == [35946] * 7


def test_special_text_is_parsed_by_default_and_plain_text_without_specials(
    tok: QwenTokenizer,
) -> None:
    text = 'print("<|endoftext|>")'
    assert tok.encode(text) == [1350, 445, 151643, 899]
    assert tok.encode(text, allowed_special="all") == [1350, 445, 151643, 899]
    safe = tok.encode(text, allowed_special=set())
    assert safe == [1350, 9639, 91, 8691, 723, 427, 91, 82598]
    assert tok.decode(safe) == text
    assert tok.encode(text, allowed_special=frozenset()) == safe


def test_special_token_ids(tok: QwenTokenizer) -> None:
    assert (tok.eod_id, tok.im_start_id, tok.im_end_id) == (151643, 151644, 151645)
    assert tok.n_vocab == 151851
    assert len(tok.special_tokens) == 208
    assert tok.special_tokens["<|extra_0|>"] == 151646
    assert tok.special_tokens["<|extra_204|>"] == 151850
    for name, token_id in tok.special_tokens.items():
        assert tok.encode(name) == [token_id]
        assert tok.decode([token_id]) == name
        assert tok.is_special(token_id)
    assert not tok.is_special(151642)


def test_allowed_special_subset(tok: QwenTokenizer) -> None:
    ids = tok.encode("<|im_end|><|endoftext|>", allowed_special={"<|im_end|>"})
    assert ids[0] == 151645
    assert 151643 not in ids
    assert tok.decode(ids) == "<|im_end|><|endoftext|>"


def test_unknown_special_name_is_a_clear_error(tok: QwenTokenizer) -> None:
    with pytest.raises(TokenizerError, match=r"<\|extra_205\|>"):
        tok.encode("x", allowed_special={"<|extra_205|>"})
    with pytest.raises(TokenizerError, match="string"):
        tok.encode("x", allowed_special="none")
    with pytest.raises(TokenizerError, match="str"):
        tok.encode(b"x")  # type: ignore[arg-type]


def test_nfc_normalisation(tok: QwenTokenizer) -> None:
    decomposed = "e\u0301t\u00e9"
    assert tok.encode(decomposed) == tok.encode("\u00e9t\u00e9")
    assert tok.decode(tok.encode(decomposed)) == "\u00e9t\u00e9"


def test_decode_skip_special_and_padding_ids(tok: QwenTokenizer) -> None:
    ids = [151644, 108386, 151645, 151643]
    assert tok.decode(ids) == "<|im_start|>你好<|im_end|><|endoftext|>"
    assert tok.decode(ids, skip_special_tokens=True) == "你好"
    # rows 151851..152063 of the embedding are padding the tokenizer cannot spell
    assert tok.decode([108386, 152000, 152063]) == "你好"
    with pytest.raises(TokenizerError, match="-1"):
        tok.decode([-1])


def test_decode_errors_mode(tok: QwenTokenizer) -> None:
    half = [124026]  # first three bytes of U+1D518
    assert tok.decode(half) == "\ufffd"
    assert tok.decode(half, errors="ignore") == ""
    with pytest.raises(UnicodeDecodeError):
        tok.decode(half, errors="strict")


def test_stream_decoder_holds_back_partial_characters(tok: QwenTokenizer) -> None:
    ids = tok.encode("a𝔘b")
    pieces = [tok.token_bytes(i) for i in ids]
    assert b"".join(pieces).decode("utf-8") == "a𝔘b"
    assert any(
        p.decode("utf-8", errors="replace") != p.decode("utf-8", errors="ignore") for p in pieces
    )
    dec = tok.stream_decoder()
    deltas = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(deltas) == "a𝔘b"
    assert all("\ufffd" not in d for d in deltas)
    assert "" in deltas  # the token with the first bytes of 𝔘 completes nothing


def test_stream_decoder_flushes_an_incomplete_tail(tok: QwenTokenizer) -> None:
    dec = tok.stream_decoder()
    assert dec.push(124026) == ""
    assert dec.flush() == "\ufffd"
    quiet = tok.stream_decoder(errors="ignore")
    assert quiet.push(124026) == "" and quiet.flush() == ""


def test_stream_decoder_skip_special(tok: QwenTokenizer) -> None:
    ids = [151644, *tok.encode("你好"), 151645]
    dec = tok.stream_decoder(skip_special_tokens=True)
    assert "".join(dec.push(i) for i in ids) + dec.flush() == "你好"
    assert dec.token_ids == ids


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=40))
def test_property_round_trip_and_streaming(tok: QwenTokenizer, s: str) -> None:
    ids = tok.encode(s, allowed_special=set())
    assert tok.decode(ids) == unicodedata.normalize("NFC", s)
    dec = tok.stream_decoder()
    assert "".join(dec.push(i) for i in ids) + dec.flush() == tok.decode(ids)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.integers(min_value=0, max_value=152063), max_size=12),
    st.sampled_from(["replace", "ignore"]),
)
def test_property_streaming_matches_decode_on_arbitrary_ids(
    tok: QwenTokenizer, ids: list[int], errors: str
) -> None:
    dec = tok.stream_decoder(errors=errors)
    assert "".join(dec.push(i) for i in ids) + dec.flush() == tok.decode(ids, errors=errors)


# loading and vocabulary errors


def _write_copy(tmp_path: Path, mutate=None) -> Path:
    lines = official_vocab_path().read_bytes().splitlines(keepends=True)
    if mutate is not None:
        lines = mutate(lines)
    path = tmp_path / "qwen.tiktoken"
    path.write_bytes(b"".join(lines))
    return path


def test_from_pretrained_reads_the_checkpoint_copy(tmp_path: Path) -> None:
    _write_copy(tmp_path)
    tok = QwenTokenizer.from_pretrained(tmp_path)
    assert tok.encode("你好") == [108386]
    assert tok.vocab_path == (tmp_path / "qwen.tiktoken").resolve()


def test_missing_vocabulary_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match=r"qwen\.tiktoken"):
        QwenTokenizer.from_pretrained(tmp_path)
    with pytest.raises(VocabularyError, match="not found"):
        QwenTokenizer.from_file(tmp_path / "nope.tiktoken")
    with pytest.raises(VocabularyError, match="model directory"):
        QwenTokenizer.from_pretrained(tmp_path / "absent")


def test_bad_line_format_names_file_and_line(tmp_path: Path) -> None:
    def break_line(lines: list[bytes]) -> list[bytes]:
        lines[41] = b"this-is-not base64 at all\n"
        return lines

    path = _write_copy(tmp_path, break_line)
    with pytest.raises(VocabularyError, match=r"qwen\.tiktoken: line 42"):
        QwenTokenizer.from_file(path, verify_sha256=False)


def test_unreadable_base64_is_reported(tmp_path: Path) -> None:
    def bad_b64(lines: list[bytes]) -> list[bytes]:
        lines[5] = b"@@@@ 5\n"
        return lines

    with pytest.raises(VocabularyError, match="line 6"):
        QwenTokenizer.from_file(_write_copy(tmp_path, bad_b64))


def test_wrong_sha256_is_reported_and_can_be_waived(tmp_path: Path) -> None:
    path = _write_copy(tmp_path, lambda lines: lines[:-1])  # well-formed, but not official
    with pytest.raises(VocabularyError, match="sha256"):
        QwenTokenizer.from_file(path)
    custom = QwenTokenizer.from_file(path, verify_sha256=False)
    assert custom.encode("你好") == [108386]


def _tiny_vocab(tmp_path: Path, tokens: list[bytes]) -> Path:
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tokens)))
    return path


def test_custom_vocabulary(tmp_path: Path) -> None:
    tokens = [bytes([b]) for b in range(256)] + [b"ab", b"abc"]
    tok = QwenTokenizer.from_file(_tiny_vocab(tmp_path, tokens), verify_sha256=False)
    assert tok.encode("abc") == [257]
    assert tok.encode("<|im_end|>") == [151645]
    assert tok.decode(tok.encode("abcab")) == "abcab"


def test_custom_vocabulary_needs_every_byte(tmp_path: Path) -> None:
    tokens = [bytes([b]) for b in range(1, 256)]
    with pytest.raises(VocabularyError, match="single-byte"):
        QwenTokenizer.from_file(_tiny_vocab(tmp_path, tokens), verify_sha256=False)


def test_rank_colliding_with_specials_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "v.tiktoken"
    path.write_bytes(base64.b64encode(b"x") + b" 151643\n")
    with pytest.raises(VocabularyError, match="rank 151643"):
        QwenTokenizer.from_file(path, verify_sha256=False)
