"""Recordings in flight on one instance: a fixed number of slots, shared between owners.

A pipeline takes about a core and its memory for its whole run, so an instance runs at
most ``total`` at once and refuses more (429) before reading the body. When the service
has several owners (API keys), one owner may hold at most ``total - 1`` slots: a slow
or busy tenant cannot take every slot, and another owner always finds one free.
"""

from __future__ import annotations

import threading
from collections import Counter


class Slots:
    def __init__(self, total: int, owners: int) -> None:
        self.total = max(1, total)
        self.per_owner = self.total - 1 if owners > 1 and self.total > 1 else self.total
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def try_take(self, owner: str) -> bool:
        """Take a slot for ``owner`` if one is free and the owner is within its share."""
        with self._lock:
            if sum(self._held.values()) >= self.total or self._held[owner] >= self.per_owner:
                return False
            self._held[owner] += 1
            return True

    def give_back(self, owner: str) -> None:
        with self._lock:
            if self._held[owner] <= 0:
                raise RuntimeError(f"{owner} holds no slot")
            self._held[owner] -= 1
            if not self._held[owner]:
                del self._held[owner]
