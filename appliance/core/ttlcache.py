"""What a web process keeps for a few seconds instead of asking the database on every request.

One rule for every such cache: an entry lives ``APPLIANCE_GATEWAY_CACHE_SECONDS`` (read when it is
stored; 0 keeps nothing), so a revoked key, a stopped replica, a changed quota or an edited word list
takes at most that long to be seen by each process, in chat and ``/v1`` alike. Each cache is bounded
(``max_entries``) and emptied whole when full: far more than the keys, users and departments in use
at once, so the bound guards memory, not hit rates. Safe to share between the event loop and the
database threads: an entry is read and written with single dictionary operations.
"""

from __future__ import annotations

import time
import weakref
from typing import Generic, TypeVar

from django.conf import settings

K = TypeVar("K")
V = TypeVar("V")

_caches: weakref.WeakSet[TtlCache[object, object]] = weakref.WeakSet()


class TtlCache(Generic[K, V]):
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        _caches.add(self)  # type: ignore[arg-type]

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, value) while the entry lives; (False, None) otherwise (a value may itself be None)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def put(self, key: K, value: V) -> None:
        seconds = settings.APPLIANCE_GATEWAY_CACHE_SECONDS
        if seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        self._entries.clear()


def clear_all() -> None:
    """Every cache of the process (tests; a change that must be seen at once)."""
    for cache in list(_caches):
        cache.clear()
