"""Helpers for the single-request serving path: per-model caches, one BLAS thread.

A new visitor's request is mostly profile work: the segment popularity of their segment, the
neighbour aggregation of their encoded profile. Many visitors share a profile, so those rows are
computed once and kept in a bounded least-recently-used map, keyed by what they depend on (the
profile tokens), never by the visitor. Cached arrays are made read-only so that a caller that
forgets to copy fails loudly instead of corrupting every later request.

A strategy clears its caches whenever what they were computed from changes (fit, load, new
items); a pickled strategy carries none (the caches restart empty). Their size is a plain
number (``Strategy.set_score_cache_size``): the serving side passes ``RECOMMENDER["SCORE_CACHE_MB"]``
to every strategy it loads.

One request's matrix-vector products are too small to gain from several BLAS threads, and on a
busy machine the extra threads spin waiting for a core: a 10k × 128 product took 3 ms of CPU
with two OpenBLAS threads and 0.3 ms with one. ``one_blas_thread`` pins it for such a block.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

DEFAULT_MAX_ENTRIES = 1024
DEFAULT_CACHE_MB = 32


class LRUCache:
    """A bounded least-recently-used map, safe to share between threads.

    Parameters
    ----------
    max_entries
        Entries kept; the least recently used one goes first.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_rows(cls, n_items: int, rows_per_entry: int = 1, megabytes: float = DEFAULT_CACHE_MB) -> "LRUCache":
        """A cache of float32 score rows of ``n_items`` within ``megabytes`` (0: no cache)."""
        entry_bytes = 4 * max(int(n_items), 1) * max(int(rows_per_entry), 1)
        return cls(min(DEFAULT_MAX_ENTRIES, int(float(megabytes) * 2**20 // entry_bytes)))

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else ``compute()`` (stored; arrays made read-only)."""
        if self.max_entries <= 0:
            return compute()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()  # outside the lock: two threads may both compute a new key, never block
        for array in value if isinstance(value, tuple) else (value,):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __getstate__(self):
        return {"max_entries": self.max_entries}

    def __setstate__(self, state):
        self.__init__(state["max_entries"])


def profile_key(tokens: dict) -> tuple:
    """Hashable key of a profile's tokens (order-free)."""
    return tuple(sorted(tokens.items()))


_blas = threading.local()
_controller = None


@contextlib.contextmanager
def one_blas_thread():
    """Run the block with one BLAS thread (nested uses cost nothing; the limit is process-wide)."""
    global _controller
    if getattr(_blas, "depth", 0):
        yield
        return
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # scans the loaded libraries once per process
    _blas.depth = 1
    try:
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _blas.depth = 0
