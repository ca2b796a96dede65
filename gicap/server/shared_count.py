"""The connections of every worker process, counted in memory they share.

The kernel spreads connections over the workers' SO_REUSEPORT sockets by a hash of
the addresses, not evenly: with a per-process share of ``server.max_connections``,
a proxy that kept within the ``Max-Connections`` an OPTIONS answer advertises still
met 503s. Each worker writes its own count in its slot; the limit is checked against
the sum. (Slots are written by one process each and read by all: a read may miss a
change a moment old, which lets the limit be passed by a connection or two at most.)
"""

from __future__ import annotations

import mmap


class SharedCount:
    """One slot per worker process, in shared anonymous memory made before forking."""

    def __init__(self, processes: int) -> None:
        self._memory = mmap.mmap(-1, 8 * max(1, processes))
        self._slots = memoryview(self._memory).cast("q")

    def set(self, slot: int, connections: int) -> None:
        self._slots[slot] = connections

    def total(self) -> int:
        return sum(self._slots)
