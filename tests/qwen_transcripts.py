"""Reading the recorded Qwen ReAct transcripts in ``tests/fixtures/qwen_react_transcripts``.

Each file has ``#`` header lines (source, model, decoding), then sections introduced by
``#### TITLE ####`` lines; a section's text runs to the line before the next marker.
"""

from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "qwen_react_transcripts"
_MARKER = re.compile(r"^#### (.+?) ####$", re.MULTILINE)


def transcript_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.txt"))


def read_sections(path: Path) -> list[tuple[str, str]]:
    """``(title, text)`` for each section, in file order."""
    raw = path.read_text(encoding="utf-8")
    marks = list(_MARKER.finditer(raw))
    sections = []
    for mark, nxt in zip(marks, [*marks[1:], None]):
        end = nxt.start() if nxt else len(raw)
        body = raw[mark.end() + 1 : end]
        sections.append((mark.group(1), body[:-1] if body.endswith("\n") else body))
    return sections


def section(path: Path, prefix: str, nth: int = 0) -> str:
    """The text of the ``nth`` section whose title starts with ``prefix``."""
    found = [text for title, text in read_sections(path) if title.startswith(prefix)]
    return found[nth]
