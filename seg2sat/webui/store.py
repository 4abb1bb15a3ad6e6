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

from ..codec import png_bytes

_ID = re.compile(r"^[0-9a-f]{32}$")


class ImageStore:
    """A bounded, thread-safe map of id -> PNG bytes (least recently used dropped first)."""

    def __init__(self, capacity: int = 200):
        if capacity < 1:
            raise ValueError(f"STORE_SIZE must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, image: Image.Image) -> str:
        data = png_bytes(image)
        key = secrets.token_hex(16)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
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
