"""An image's width and height from the first bytes of its file (Replicate reports none)."""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator

from PIL import Image

#: how much of a file's start is kept to read its size: a PNG's or GIF's header is in the
#: first bytes, a JPEG's frame header (after its metadata) almost always in the first 64 KiB
HEAD_BYTES = 64 * 1024


class Head:
    """Passes chunks through unchanged and keeps the first ``HEAD_BYTES`` of them."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.data = bytearray()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            room = HEAD_BYTES - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            yield chunk


def image_size(head: bytes, content_type: str) -> tuple[int, int] | None:
    """An image's ``(width, height)`` from its header (Pillow reads no pixels), or None for
    anything that is not an image Pillow can read from these bytes."""
    if not content_type.startswith("image/"):
        return None
    try:
        with warnings.catch_warnings():  # a huge image's size is still its size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head)) as image:
                width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return (int(width), int(height)) if width > 0 and height > 0 else None
