"""The versioned message schema shared by the message sinks (ZeroMQ, MQTT).

One message per frame and one per stream event, each a flat JSON object (or the
same object in msgpack). The ``schema`` key names the layout and its version; a
consumer should check it and ignore keys it does not know (new keys may be added
within a version; removing or changing one bumps the version).

Frame message (``"schema": "streamer.frame/1"``); the fields after ``schema`` are
exactly those of a JSON-lines record (:mod:`streamer.sinks.jsonl`)::

    {"schema": "streamer.frame/1", "source_id": "cam1", "seq": 4, "pts_s": 0.4,
     "timestamp": "2024-05-01T12:00:00.123Z", "wall_time_s": 1714564800.123457,
     "tracks": [{"track_id": 3, "xyxy": [10.0, 20.5, 30.25, 40.0],
                 "confidence": 0.9, "class_id": 0, "class_name": "person"}]}

A detector-only pipeline sends ``"detections"`` (same rows without ``track_id``)
instead of ``"tracks"``. ``xyxy`` is in original-frame pixels; ``pts_s`` is the
container time in seconds; ``timestamp``/``wall_time_s`` are the wall clock at
capture (None when not recorded). When a stage has attached analytics results
(``packet.analytics``: line crossings, zone counts) they travel under
``"analytics"``.

Event message (``"schema": "streamer.event/1"``)::

    {"schema": "streamer.event/1", "type": "stream_start", "source_id": "cam1",
     "timestamp": "...", "wall_time_s": 1714564800.1, "fps": 25.0,
     "width_px": 640, "height_px": 480, "frame_count": 750, "uri": "clip.mp4"}
    {"schema": "streamer.event/1", "type": "stream_gap", "source_id": "cam1",
     "timestamp": "...", "wall_time_s": ..., "missing_frames": 3}
    {"schema": "streamer.event/1", "type": "stream_end", "source_id": "cam1",
     "timestamp": "...", "wall_time_s": ..., "frames": 750, "error": null}

An event's ``timestamp``/``wall_time_s`` is the wall clock when the sink built
the message (events carry no capture time).

Optional ``"tags"`` (both message kinds, same version: consumers ignore keys they do
not know): a flat object of who produced the message, set by the sink's ``tags``
argument. ``streamer fleet`` sets ``{"fleet": ..., "camera": ..., "node": <Ray node
id>, "host": ..., "attempt": <restarts so far>}``; a plain ``streamer run`` sends no
``tags``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from streamer.errors import SinkError
from streamer.sinks.jsonl import format_timestamp, packet_to_record
from streamer.types import Event, Packet, StreamEnd, StreamGap, StreamStart

FRAME_SCHEMA = "streamer.frame/1"
EVENT_SCHEMA = "streamer.event/1"

MessageFormat = Literal["json", "msgpack"]
FORMATS: tuple[MessageFormat, ...] = ("json", "msgpack")

_JSON_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def frame_message(
    packet: Packet, class_names: Sequence[str], tags: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the frame message of one packet (layout in the module docstring).

    Args:
        packet: A packet after detection and/or tracking.
        class_names: Detector class names indexed by ``class_id``.
        tags: Added under ``"tags"`` (the last key) when not empty.

    Returns:
        A dict of plain Python values (str, int, float, None, list, dict), keys in
        schema order.
    """
    message: dict[str, Any] = {"schema": FRAME_SCHEMA}
    message.update(packet_to_record(packet, class_names))
    # --- analytics hook ---------------------------------------------------------
    # Analytics stages (line counts, zones) attach their per-frame results as the
    # JSON-ready dict ``Packet.analytics``; it travels under "analytics" (the JSONL
    # record already carries it; this keeps the message right if that changes).
    analytics = getattr(packet, "analytics", None)
    if analytics is not None and "analytics" not in message:
        message["analytics"] = analytics
    # -----------------------------------------------------------------------------
    if tags:
        message["tags"] = dict(tags)
    return message


def event_message(
    event: Event, wall_ns: int | None = None, tags: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the event message of a stream event (layout in the module docstring).

    Args:
        event: A :class:`StreamStart`, :class:`StreamEnd` or :class:`StreamGap`.
        wall_ns: Wall clock of the message, ``time.time_ns()``; now when None.
        tags: Added under ``"tags"`` (the last key) when not empty.

    Returns:
        A dict of plain Python values, keys in schema order.

    Raises:
        TypeError: if ``event`` is not one of the three event types.
    """
    now_ns = time.time_ns() if wall_ns is None else wall_ns
    if isinstance(event, StreamStart):
        kind = "stream_start"
    elif isinstance(event, StreamEnd):
        kind = "stream_end"
    elif isinstance(event, StreamGap):
        kind = "stream_gap"
    else:
        raise TypeError(
            f"event_message: expected StreamStart, StreamEnd or StreamGap, got {event!r}"
        )
    message: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "type": kind,
        "source_id": event.source_id,
        "timestamp": format_timestamp(now_ns),
        "wall_time_s": round(now_ns / 1e9, 6) if now_ns else None,
    }
    if isinstance(event, StreamStart):
        info = event.info
        message.update(
            fps=info.fps,
            width_px=info.width_px,
            height_px=info.height_px,
            frame_count=info.frame_count,
            uri=info.uri,
        )
    elif isinstance(event, StreamEnd):
        message.update(frames=event.frames, error=event.error)
    else:
        message["missing_frames"] = event.missing_frames
    if tags:
        message["tags"] = dict(tags)
    return message


def make_encoder(fmt: str, what: str) -> Callable[[Mapping[str, Any]], bytes]:
    """Return the function that turns a message into bytes.

    Args:
        fmt: ``"json"`` (compact, UTF-8) or ``"msgpack"`` (needs the ``msgpack``
            package).
        what: Name of the calling sink, for error messages.

    Returns:
        ``encode(message) -> bytes``.

    Raises:
        SinkError: if ``fmt`` is unknown, or is ``"msgpack"`` and the package is
            not installed.
    """
    if fmt == "json":
        return lambda message: _JSON_ENCODE(message).encode("utf-8")
    if fmt == "msgpack":
        try:
            import msgpack
        except ImportError as exc:
            raise SinkError(
                f"{what}: format 'msgpack' needs the msgpack package (pip install msgpack)"
            ) from exc
        packer = msgpack.Packer(use_bin_type=True)

        def encode_msgpack(message: Mapping[str, Any]) -> bytes:
            return bytes(packer.pack(message))

        return encode_msgpack
    raise SinkError(f"{what}: format must be one of {list(FORMATS)}, got {fmt!r}")


def decode_message(payload: bytes, fmt: str = "json") -> dict[str, Any]:
    """Decode a payload made by :func:`make_encoder` (for consumers and tests).

    Args:
        payload: The message bytes.
        fmt: ``"json"`` or ``"msgpack"``.

    Returns:
        The message dict.

    Raises:
        ValueError: if the payload is not a message of that format.
        ImportError: if ``fmt`` is ``"msgpack"`` and the package is missing.
    """
    if fmt == "msgpack":
        import msgpack

        obj = msgpack.unpackb(payload, raw=False)
    else:
        obj = json.loads(payload.decode("utf-8"))
    if not isinstance(obj, dict) or "schema" not in obj:
        raise ValueError(f"not a streamer message: {payload[:80]!r}")
    return obj


__all__ = [
    "EVENT_SCHEMA",
    "FORMATS",
    "FRAME_SCHEMA",
    "MessageFormat",
    "decode_message",
    "event_message",
    "frame_message",
    "make_encoder",
]
