"""Saving rich display images (PNG, JPEG, SVG) from kernel messages into the work dir."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

_IMAGE_TYPES = (
    ("image/png", ".png", True),
    ("image/jpeg", ".jpg", True),
    ("image/svg+xml", ".svg", False),
)


class ImageSaver:
    """Writes images to ``directory`` as image_001.png, image_002.png, ... never overwriting."""

    def __init__(self, directory: Path, max_per_execution: int = 20) -> None:
        self.directory = directory
        self.max_per_execution = max_per_execution
        self._counter = 0

    def save(self, data: Mapping[str, object]) -> Path | None:
        """Save the best image in a display bundle; None when it holds no image."""
        for mime, suffix, is_base64 in _IMAGE_TYPES:
            payload = data.get(mime)
            if isinstance(payload, str):
                return self._write(payload, suffix, is_base64, mime)
        return None

    def _write(self, payload: str, suffix: str, is_base64: bool, mime: str) -> Path | None:
        try:
            raw = base64.b64decode(payload, validate=False) if is_base64 else payload.encode()
        except (binascii.Error, ValueError) as exc:
            log.warning("dropping undecodable %s output: %s", mime, exc)
            return None
        path = self._next_path(suffix)
        path.write_bytes(raw)
        return path

    def _next_path(self, suffix: str) -> Path:
        while True:
            self._counter += 1
            path = self.directory / f"image_{self._counter:03d}{suffix}"
            if not path.exists():
                return path
