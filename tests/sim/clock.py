"""Virtual time: a heap of (time, seq, event).

`seq` is a global insertion counter, so events scheduled for the same instant fire in the order
they were scheduled: ties never fall back to comparing event objects, and the same seed always
produces the same interleaving.
"""

from __future__ import annotations

import heapq
from typing import Any


class VirtualClock:
    def __init__(self) -> None:
        self.now: float = 0.0
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0

    def schedule(self, at: float, event: Any) -> None:
        # Never schedule into the past: a timer armed for an instant already gone fires "now".
        if at < self.now:
            at = self.now
        heapq.heappush(self._heap, (at, self._seq, event))
        self._seq += 1

    def after(self, delay: float, event: Any) -> None:
        self.schedule(self.now + delay, event)

    def pop(self) -> Any | None:
        """Advance to the next event and return it, or None when nothing is left."""
        if not self._heap:
            return None
        at, _, event = heapq.heappop(self._heap)
        self.now = at
        return event

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
