"""The wire codec: images as they travel over HTTP, base64 (or a data: URL, or raw bytes) in, base64 PNG out.

One codec for both HTTP front ends (the endpoint protocol and the web UI API). An
image's size is checked against the server's :class:`~seg2sat.request.ImageLimits`
from its header, before its pixels are decompressed, so a decompression bomb costs
nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from PIL import Image

from .request import ImageLimits, RequestError, read_image

BASE64_STARTS = ("data:image/", "iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")
"""How a base64 PNG, JPEG, WebP or GIF (or a data: URL) starts: tells an image from a prompt."""
MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"GIF8")
"""The same, as the first bytes of a raw image."""


def decode_image(value: Any, name: str, limits: ImageLimits | None = None) -> Image.Image:
    """A loaded PIL image from base64 text, a ``data:`` URL, raw bytes or a PIL image (the toolkit's)."""
    if isinstance(value, Image.Image):
        return read_image(value, name, limits)
    if isinstance(value, bytes):
        raw = value
    else:
        if not isinstance(value, str) or not value.strip():
            raise RequestError(name, "must be a base64-encoded PNG image (a non-empty string)")
        text = value.strip()
        if text.startswith("data:"):
            head, sep, text = text.partition(",")
            if not sep or ";base64" not in head:
                raise RequestError(name, "a data: URL must be base64, like data:image/png;base64,iVBOR…")
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(name, "is not valid base64") from None
    if not raw.startswith(MAGIC) and not _opens(raw):
        raise RequestError(name, "the decoded bytes are not an image (PNG or JPEG expected)")
    return read_image(io.BytesIO(raw), name, limits)


def _opens(raw: bytes) -> bool:
    try:
        Image.open(io.BytesIO(raw))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


def looks_like_image(value: Any) -> bool:
    """Whether a field holds an image rather than text (Hugging Face's image-to-image puts the mask in ``inputs``)."""
    return isinstance(value, (bytes, Image.Image)) or (isinstance(value, str) and value.lstrip().startswith(BASE64_STARTS))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_png(image: Image.Image) -> str:
    """Base64 text of the image as PNG."""
    return base64.b64encode(png_bytes(image)).decode("ascii")
