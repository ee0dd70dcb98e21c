"""Admission by sequences in flight: what keeps the engine's batch full without overfilling it.

A CPU engine is efficient only with a full batch, and a job count says little about how
full: one best-of-16 job decodes 16 sequences, a ``direct`` job one. ``StreamSlots`` admits
work by the sequences it decodes at once (its ``parallel_streams``) up to a capacity, in
arrival order, so a wide job is not starved by a stream of narrow ones. Work wider than the
capacity runs alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


@dataclass
class _Waiter:
    weight: int
    admitted: anyio.Event = field(default_factory=anyio.Event)


class StreamSlots:
    """A first-come, first-served weighted semaphore over sequences in flight.

    Example::

        slots = StreamSlots(128)
        async with slots.hold(16):  # a best-of-16 job
            ...
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_flight = 0
        self._waiting: deque[_Waiter] = deque()

    @asynccontextmanager
    async def hold(self, streams: int) -> AsyncIterator[int]:
        """Wait until ``streams`` more sequences fit (at most the capacity), hold them, release on exit."""
        weight = max(1, min(streams, self.capacity))
        await self._acquire(weight)
        try:
            yield weight
        finally:
            self._release(weight)

    async def _acquire(self, weight: int) -> None:
        if not self._waiting and self.in_flight + weight <= self.capacity:
            self.in_flight += weight
            return
        waiter = _Waiter(weight)
        self._waiting.append(waiter)
        try:
            await waiter.admitted.wait()
        except BaseException:  # cancelled while waiting, or just after being admitted
            if waiter.admitted.is_set():
                self._release(weight)
            else:
                self._waiting.remove(waiter)
                self._admit()  # a narrower waiter behind it may fit now
            raise

    def _release(self, weight: int) -> None:
        self.in_flight -= weight
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.in_flight + self._waiting[0].weight <= self.capacity:
            waiter = self._waiting.popleft()
            self.in_flight += waiter.weight
            waiter.admitted.set()
