"""Protocols of pipeline stages and sources, driven by the runner.

A stage never starts threads, sleeps or polls: the runner calls it from the one
thread it owns for that stage. Stages are thin adapters around components that also
work on their own (a detector, a tracker, a sink).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from streamer.types import Event, Frame, Packet, StreamGap, StreamInfo


@runtime_checkable
class Stage(Protocol):
    """One processing step between two channels.

    Attributes:
        name: Unique name, used in statistics and errors.
        max_batch: Most packets handed to one ``process`` call (>= 1).
        max_wait_ms: Longest wait for a batch to fill after its first packet, ms.
    """

    name: str
    max_batch: int
    max_wait_ms: float

    def on_event(self, event: Event) -> None:
        """Handle an in-band event (it is forwarded downstream by the runner)."""

    def process(self, packets: list[Packet]) -> list[Packet]:
        """Process packets in order and return those to pass on (usually the same)."""
        ...

    def close(self) -> None:
        """Release resources; called once, on every exit path, from the stage thread."""


class BaseStage:
    """Defaults for :class:`Stage`: batch of one, events ignored, nothing to close."""

    name: str = "stage"
    max_batch: int = 1
    max_wait_ms: float = 0.0

    def on_event(self, event: Event) -> None:
        return None

    def process(self, packets: list[Packet]) -> list[Packet]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        return None


@runtime_checkable
class Source(Protocol):
    """A stream of frames from one place (file, camera, network).

    Attributes:
        source_id: Name carried by every frame and event of this source.
    """

    source_id: str

    def open(self) -> StreamInfo:
        """Open the stream. Raises SourceError with a one-line reason on failure."""
        ...

    def read(self) -> Frame | StreamGap | None:
        """Return the next frame, a gap event, or None at the end of the stream.

        Raises SourceError naming the source and frame when the stream is broken.
        """
        ...

    def close(self) -> None:
        """Release the stream; idempotent."""
