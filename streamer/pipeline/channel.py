"""Bounded channel between two pipeline stages, with close semantics and statistics.

Modelled on trio's memory channels: the producer *closes* the channel when it has
nothing more to send, and the consumer drains what is left and then sees
:class:`~streamer.errors.ChannelClosed`; a consumer that dies *breaks* the channel so
that a producer blocked on it fails at once with :class:`~streamer.errors.ChannelBroken`
instead of waiting forever. There are no sentinel values.

Overflow policies (per edge):

* ``block``: lossless. ``put`` waits for room (deterministic; the default for files,
  replay and tests).
* ``drop_oldest``: ``put`` never waits for a :class:`~streamer.types.Packet`; when the
  channel is full it drops the oldest queued packet (freshness for live cameras).
  Drops are counted per source. In-band events (stream start/end/gap) are never
  dropped; an event that meets a channel full of events waits like ``block``.

Per-source lanes: the channel out of the sources can give each source its own
capacity and policy (``lanes``), so a live camera keeps only its newest frames
(``drop_oldest``) while a file in the same pipeline stays lossless (``block``), and
one source's backlog never takes another's room. Items still leave in arrival order.

Every blocking call takes a timeout and a stop event and returns within the
timeout, so no thread can hang on a channel.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from streamer.errors import ChannelBroken, ChannelClosed
from streamer.types import Item, Packet

OverflowPolicy = Literal["block", "drop_oldest"]
OVERFLOW_POLICIES: tuple[str, ...] = ("block", "drop_oldest")


@dataclass
class ChannelStats:
    """Counters of one channel (read them with :meth:`Channel.stats`).

    Attributes:
        name: Channel name (``"<producer> -> <consumer>"``).
        capacity: Maximum number of queued items.
        policy: Overflow policy.
        depth: Items queued now.
        peak_depth: Highest depth seen.
        puts: Items accepted.
        gets: Items handed to the consumer.
        drops: Packets dropped by ``drop_oldest``, per source id.
    """

    name: str
    capacity: int
    policy: str
    depth: int = 0
    peak_depth: int = 0
    puts: int = 0
    gets: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())


class Channel:
    """A bounded FIFO of pipeline items between one producer and one consumer.

    Thread-safety: every method may be called from any thread.

    Args:
        name: Name used in statistics and errors.
        capacity: Maximum queued items, >= 1.
        policy: ``"block"`` or ``"drop_oldest"``.
        lanes: Optional ``{source_id: (capacity, policy)}``: items of a listed source
            are limited by their lane (and ``capacity`` is the sum of the lanes);
            several producers (one per source) may then share the channel.

    Raises:
        ValueError: on a capacity < 1 or an unknown policy.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy = "block",
        lanes: Mapping[str, tuple[int, OverflowPolicy]] | None = None,
    ) -> None:
        for cap, pol in [(capacity, policy), *(lanes or {}).values()]:
            if cap < 1:
                raise ValueError(f"channel '{name}': capacity must be >= 1, got {cap}")
            if pol not in OVERFLOW_POLICIES:
                raise ValueError(
                    f"channel '{name}': policy must be one of {OVERFLOW_POLICIES}, got {pol!r}"
                )
        self._lanes = dict(lanes or {})
        self._lane_depth: Counter[str] = Counter()
        if self._lanes:
            capacity = sum(c for c, _ in self._lanes.values())
        self.name = name
        self.capacity = capacity
        self.policy: OverflowPolicy = policy
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._broken = False
        self._peak = 0
        self._puts = 0
        self._gets = 0
        self._drops: Counter[str] = Counter()

    # -- producer side -------------------------------------------------------------
    def put(self, item: Item, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Queue ``item``, waiting for room as the policy says.

        Args:
            item: A packet or an in-band event.
            stop: When set, a waiting ``put`` gives up and returns False.
            poll_s: How often a wait re-checks ``stop``, seconds.

        Returns:
            True if the item was queued, False if ``stop`` was set first.

        Raises:
            ChannelBroken: the consumer has gone away.
            RuntimeError: the channel was already closed by its producer.
        """
        lane = item.source_id if item.source_id in self._lanes else None
        capacity, policy = self._lanes[lane] if lane is not None else (self.capacity, self.policy)
        with self._lock:
            while True:
                if self._broken:
                    raise ChannelBroken(f"channel '{self.name}': consumer has stopped")
                if self._closed:
                    raise RuntimeError(f"channel '{self.name}': put after close")
                depth = self._lane_depth[lane] if lane is not None else len(self._items)
                if depth < capacity:
                    break
                if policy == "drop_oldest" and isinstance(item, Packet):
                    if self._drop_oldest_packet(lane):
                        break
                    # Full of events only: drop the newcomer rather than an event.
                    self._drops[item.source_id] += 1
                    return True
                if stop.is_set():
                    return False
                self._not_full.wait(poll_s)
            self._items.append(item)
            if lane is not None:
                self._lane_depth[lane] += 1
            self._puts += 1
            self._peak = max(self._peak, len(self._items))
            self._not_empty.notify()
            return True

    def _drop_oldest_packet(self, lane: str | None) -> bool:
        for i, queued in enumerate(self._items):
            if isinstance(queued, Packet) and (lane is None or queued.source_id == lane):
                del self._items[i]
                self._drops[queued.source_id] += 1
                if lane is not None:
                    self._lane_depth[lane] -= 1
                return True
        return False

    def _taken(self, item: Item) -> None:
        """Bookkeeping after the consumer took ``item`` (lock held)."""
        self._gets += 1
        if self._lanes and item.source_id in self._lanes:
            self._lane_depth[item.source_id] -= 1
        # Producers of several lanes may wait on one condition: wake them all.
        if self._lanes:
            self._not_full.notify_all()
        else:
            self._not_full.notify()

    def close(self) -> None:
        """Producer side: no more items. The consumer drains, then sees ChannelClosed."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()

    # -- consumer side -------------------------------------------------------------
    def get(self, timeout_s: float) -> Item | None:
        """Take the oldest item.

        Args:
            timeout_s: Longest wait for an item, seconds.

        Returns:
            The item, or None if none arrived within ``timeout_s``.

        Raises:
            ChannelClosed: the channel is closed and drained.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not self._items:
                if self._closed:
                    raise ChannelClosed(f"channel '{self.name}' closed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._not_empty.wait(remaining)
            item = self._items.popleft()
            self._taken(item)
            return item

    def get_batch(self, max_items: int, max_wait_s: float, timeout_s: float) -> list[Item]:
        """Take up to ``max_items`` packets, or one event, in order.

        Waits up to ``timeout_s`` for the first item. If it is a packet, keeps taking
        packets until ``max_items`` are taken, ``max_wait_s`` has passed since the
        first, or the next item is an event (left queued, so order is kept).

        Returns:
            The items taken (empty on timeout).

        Raises:
            ChannelClosed: the channel is closed and drained.
        """
        first = self.get(timeout_s)
        if first is None:
            return []
        batch: list[Item] = [first]
        if not isinstance(first, Packet) or max_items <= 1:
            return batch
        deadline = time.monotonic() + max_wait_s
        with self._lock:
            while len(batch) < max_items:
                if self._items:
                    if not isinstance(self._items[0], Packet):
                        break
                    item = self._items.popleft()
                    batch.append(item)
                    self._taken(item)
                    continue
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    break
                self._not_empty.wait(remaining)
        return batch

    def break_(self) -> None:
        """Consumer side: stop consuming. Producers fail at once with ChannelBroken."""
        with self._lock:
            self._broken = True
            self._items.clear()
            self._lane_depth.clear()
            self._not_full.notify_all()

    # -- statistics ----------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def lanes(self) -> dict[str, tuple[int, OverflowPolicy]]:
        """Per-source ``(capacity, policy)`` of a channel with lanes (empty without)."""
        return dict(self._lanes)

    def stats(self) -> ChannelStats:
        """Return a snapshot of the channel's counters."""
        with self._lock:
            return ChannelStats(
                name=self.name,
                capacity=self.capacity,
                policy=self.policy,
                depth=len(self._items),
                peak_depth=self._peak,
                puts=self._puts,
                gets=self._gets,
                drops=dict(self._drops),
            )
