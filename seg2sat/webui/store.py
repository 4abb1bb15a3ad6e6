"""Generated images kept in memory under random ids, oldest dropped first.

Clients only ever name an image by the id the server gave them: there are no
file paths in the API, so nothing a client sends can reach the file system.
"""

from __future__ import annotations

import io
import re
import secrets
import threading
from collections import OrderedDict

from PIL import Image

from ..wire import png_bytes

_ID = re.compile(r"^[0-9a-f]{32}$")


class ImageStore:
    """A bounded, thread-safe map of id -> PNG bytes (least recently used dropped first).

    Bounded in count and in bytes: 200 noisy 2048² PNGs are ~1.8 GB, so a count alone does
    not bound memory. The newest image is always kept, whatever its size.
    """

    def __init__(self, capacity: int = 200, max_bytes: int | None = None):
        if capacity < 1:
            raise ValueError(f"STORE_SIZE must be at least 1, got {capacity}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"STORE_MB must be positive, got {max_bytes / 2**20:g}")
        self.capacity, self.max_bytes = capacity, max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of PNG held now."""
        return self._bytes

    def put(self, image: Image.Image) -> str:
        data = png_bytes(image)
        key = secrets.token_hex(16)
        with self._lock:
            self._items[key] = data
            self._bytes += len(data)
            while len(self._items) > 1 and (len(self._items) > self.capacity
                                            or (self.max_bytes is not None and self._bytes > self.max_bytes)):
                self._bytes -= len(self._items.popitem(last=False)[1])
        return key

    def png(self, key: str) -> bytes | None:
        """The PNG bytes, or None for an unknown, expired or malformed id."""
        if not isinstance(key, str) or not _ID.match(key):
            return None
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def image(self, key: str) -> Image.Image | None:
        data = self.png(key)
        if data is None:
            return None
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    def __len__(self) -> int:
        return len(self._items)
