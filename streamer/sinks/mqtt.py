"""MQTT sink: per-frame messages and stream events to an MQTT broker (paho-mqtt 2.x).

Topics, per source (the source id made topic-safe: characters outside
``[A-Za-z0-9._-]`` become ``_``)::

    {topic_prefix}/{source_id}/frames   one frame message per frame
    {topic_prefix}/{source_id}/events   stream_start / stream_gap / stream_end
                                        (and, later, analytics events)

Payloads are the messages of :mod:`streamer.sinks.messages` (JSON by default, or
msgpack), published with the configured QoS (0, 1 or 2) and retain flag.

Delivery and back-pressure:

* paho's network thread (``loop_start``; the library's thread, not ours) connects,
  reconnects with exponential backoff (``reconnect_min_delay_s`` doubling up to
  ``reconnect_max_delay_s``) and sends.
* ``write`` never waits for the broker. With QoS 1/2 a message is queued in
  memory until the broker acknowledges it (PUBACK/PUBCOMP), also while the
  broker is down; at most ``max_queued`` unacknowledged messages are held, and a
  message beyond that is refused and counted as ``dropped``. With QoS 0 a
  message is handed to the socket when connected and dropped (counted) when not;
  QoS 0 has no acknowledgement, so a QoS 0 message lost with a dropped
  connection is not seen.
* ``close`` waits up to ``flush_timeout_s`` for the broker to acknowledge what is
  still queued, disconnects, and reports what was not acknowledged
  (``stats()["unacknowledged_at_close"]``, logged as a warning): everything the
  broker acknowledged is the broker's; nothing else is promised.

Credentials: ``username``/``password`` (from config, e.g. ``${env:MQTT_PASSWORD}``)
are sent in the CONNECT packet; the password never appears in logs, ``repr`` or
``stats``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from streamer.errors import SinkError
from streamer.sinks.base import safe_source_id
from streamer.sinks.messages import event_message, frame_message, make_encoder
from streamer.types import Event, Packet, StreamInfo

logger = logging.getLogger(__name__)

_NAME = "mqtt sink"


class MqttSink:
    """Publish frame messages and stream events to an MQTT broker.

    Args:
        host: Broker host name or address.
        port: Broker TCP port.
        topic_prefix: First topic level(s), e.g. ``"streamer"`` or ``"site1/streamer"``;
            no wildcards, no leading ``$`` or ``/``; ``""`` for none.
        qos: MQTT QoS of every publish: 0 (at most once), 1 (at least once) or
            2 (exactly once).
        retain: Publish with the retain flag (the broker keeps each topic's last
            message for new subscribers).
        client_id: MQTT client id; ``""`` lets paho pick a random one.
        username: Broker user name, or None for anonymous.
        password: Broker password (needs ``username``); never logged.
        keepalive_s: MQTT keep-alive interval, seconds.
        max_queued: Most messages held unacknowledged (in flight or waiting for a
            connection); beyond it a message is dropped and counted.
        reconnect_min_delay_s: First reconnect delay, whole seconds.
        reconnect_max_delay_s: Longest reconnect delay, whole seconds.
        connect_wait_s: How long the first ``open`` waits for the first connection
            attempt to finish (refused at once when the broker is down), seconds.
        flush_timeout_s: Longest time ``close`` waits for outstanding
            acknowledgements, seconds.
        fmt: Payload encoding, ``"json"`` or ``"msgpack"``.
        tags: Added to every message under ``"tags"`` (e.g. camera and node in a
            fleet); the public attribute ``tags`` may be set before the first write.

    Raises:
        SinkError: if an argument is out of range or the format is unavailable.

    Thread-safety: one writer thread calls ``open``/``write``/``write_event``;
    ``close`` may come from another thread after writes stopped; ``stats`` may be
    called from any thread. paho's network thread runs the callbacks, which only
    touch state guarded by an internal lock. Nothing is started in the
    constructor: the first ``open`` creates the client and its thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        topic_prefix: str = "streamer",
        qos: int = 1,
        retain: bool = False,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        max_queued: int = 1000,
        reconnect_min_delay_s: int = 1,
        reconnect_max_delay_s: int = 30,
        connect_wait_s: float = 1.0,
        flush_timeout_s: float = 5.0,
        fmt: str = "json",
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        if not host:
            raise SinkError(f"{_NAME}: host must not be empty")
        if not 1 <= port <= 65535:
            raise SinkError(f"{_NAME}: port must be in [1, 65535], got {port}")
        if qos not in (0, 1, 2):
            raise SinkError(f"{_NAME}: qos must be 0, 1 or 2, got {qos}")
        prefix = topic_prefix.rstrip("/")
        if any(c in prefix for c in "+#\0") or prefix.startswith(("$", "/")):
            raise SinkError(
                f"{_NAME}: topic_prefix must not contain '+', '#' or NUL, nor start with "
                f"'$' or '/', got {topic_prefix!r}"
            )
        if password is not None and username is None:
            raise SinkError(f"{_NAME}: a password needs a username")
        if not 5 <= keepalive_s <= 65535:
            raise SinkError(f"{_NAME}: keepalive_s must be in [5, 65535], got {keepalive_s}")
        if not 1 <= max_queued <= 10_000_000:
            raise SinkError(f"{_NAME}: max_queued must be in [1, 10000000], got {max_queued}")
        if not 1 <= reconnect_min_delay_s <= reconnect_max_delay_s <= 3600:
            raise SinkError(
                f"{_NAME}: need 1 <= reconnect_min_delay_s <= reconnect_max_delay_s <= 3600, "
                f"got {reconnect_min_delay_s} and {reconnect_max_delay_s}"
            )
        if not 0.0 <= connect_wait_s <= 60.0:
            raise SinkError(f"{_NAME}: connect_wait_s must be in [0, 60], got {connect_wait_s}")
        if not 0.0 <= flush_timeout_s <= 600.0:
            raise SinkError(f"{_NAME}: flush_timeout_s must be in [0, 600], got {flush_timeout_s}")
        self.host = host
        self.port = port
        self.topic_prefix = prefix
        self.qos = qos
        self.retain = retain
        self.client_id = client_id
        self.username = username
        self._password = password
        self.keepalive_s = keepalive_s
        self.max_queued = max_queued
        self.reconnect_min_delay_s = reconnect_min_delay_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.connect_wait_s = connect_wait_s
        self.flush_timeout_s = flush_timeout_s
        self.fmt = fmt
        self.tags: dict[str, Any] | None = dict(tags) if tags else None
        self._encode = make_encoder(fmt, _NAME)

        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._topics: dict[str, tuple[str, str]] = {}  # source id -> (frames, events)
        self._closed = False

        # Shared with paho's network thread: everything below is guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self._connected = False
        self._first_attempt_done = False
        self._connects = 0
        self._disconnects = 0
        self._last_error: str | None = None
        self._pending: set[int] = set()  # mids queued in paho, not yet acknowledged
        self._acked_early: set[int] = set()  # acknowledged before write() registered them
        self._written = 0
        self._acknowledged = 0
        self._dropped = 0
        self._dropping = False  # inside a run of drops (log once per run)
        self._dropped_in_run = 0
        self._unacknowledged_at_close: int | None = None

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username is not None else ""
        return f"MqttSink(host={self.host!r}, port={self.port}, qos={self.qos}{user})"

    @property
    def broker(self) -> str:
        """``host:port`` of the broker, for messages."""
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Register a source; the first call creates the client and starts connecting.

        The first call waits up to ``connect_wait_s`` for the first connection
        attempt; a broker that is down does not fail ``open``: messages queue (QoS
        1/2) while paho reconnects.

        Raises:
            SinkError: if the sink is closed or the client cannot be created.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        if self._client is None:
            self._start()
        self._class_names[info.source_id] = tuple(class_names)
        base = f"{self.topic_prefix}/" if self.topic_prefix else ""
        level = safe_source_id(info.source_id)
        self._topics[info.source_id] = (f"{base}{level}/frames", f"{base}{level}/events")

    def _start(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.username is not None:
            client.username_pw_set(self.username, self._password)
        client.max_queued_messages_set(self.max_queued)
        client.reconnect_delay_set(self.reconnect_min_delay_s, self.reconnect_max_delay_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        if self.qos > 0:
            client.on_publish = self._on_publish
        try:
            client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        except (ValueError, OSError) as exc:
            raise SinkError(f"{_NAME}: cannot connect to {self.broker}: {exc}") from exc
        client.loop_start()
        thread = getattr(client, "_thread", None)  # paho's network thread, for a bounded join
        self._thread = thread if isinstance(thread, threading.Thread) else None
        self._client = client
        with self._cond:
            self._cond.wait_for(lambda: self._first_attempt_done, timeout=self.connect_wait_s)
            connected, error = self._connected, self._last_error
        if connected:
            logger.info("%s: connected to %s", _NAME, self.broker)
        else:
            logger.warning(
                "%s: broker %s not reachable yet (%s); queueing up to %d messages while "
                "reconnecting",
                _NAME,
                self.broker,
                error or f"no answer within {self.connect_wait_s} s",
                self.max_queued,
            )

    def close(self) -> None:
        """Wait up to ``flush_timeout_s`` for acknowledgements, disconnect; idempotent.

        Never raises for a broker that is down or slow: what was not acknowledged
        within ``flush_timeout_s`` is counted in ``stats()["unacknowledged_at_close"]``
        and logged as a warning. Returns within ``flush_timeout_s`` (plus a few
        milliseconds); paho's thread, if it is still inside a reconnect wait then,
        ends by itself within about a second.
        """
        if self._closed:
            return
        self._closed = True
        client, thread = self._client, self._thread
        if client is None:
            return
        deadline = time.monotonic() + self.flush_timeout_s
        with self._cond:
            self._cond.wait_for(lambda: not self._pending, timeout=self.flush_timeout_s)
            unacked = len(self._pending)
            self._unacknowledged_at_close = unacked
            self._closing = True
        client.disconnect()
        if thread is None:
            client.loop_stop()
        else:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                client.disconnect()  # in case a reconnect raced with the first one
            else:
                client.loop_stop()  # thread already ended: returns at once
        stats = self.stats()
        if unacked:
            logger.warning(
                "%s: %d message(s) not acknowledged by %s within flush_timeout_s=%.1f s were "
                "lost: %s",
                _NAME,
                unacked,
                self.broker,
                self.flush_timeout_s,
                stats,
            )
        else:
            logger.info("%s: closed %s: %s", _NAME, self.broker, stats)

    # ---------------------------------------------------------------------- writes

    def write(self, packet: Packet) -> None:
        """Publish the frame message of ``packet`` to ``.../{source_id}/frames``; never waits.

        Raises:
            SinkError: if the source was not opened or the sink is closed.
        """
        client, topics = self._target(packet.source_id, f"frame {packet.seq}")
        names = self._class_names[packet.source_id]
        payload = self._encode(frame_message(packet, names, self.tags))
        self._publish(client, topics[0], payload)

    def write_event(self, event: Event) -> None:
        """Publish the event message of a StreamStart/StreamEnd/StreamGap to ``.../events``.

        Raises:
            SinkError: if the source was not opened or the sink is closed.
        """
        client, topics = self._target(event.source_id, type(event).__name__)
        self._publish(client, topics[1], self._encode(event_message(event, tags=self.tags)))

    def _target(self, source_id: str, what: str) -> tuple[mqtt.Client, tuple[str, str]]:
        topics = self._topics.get(source_id)
        if self._closed or self._client is None or topics is None:
            state = "closed" if self._closed else "not opened"
            raise SinkError(f"{_NAME}: write for source '{source_id}' ({what}): sink {state}")
        return self._client, topics

    def _publish(self, client: mqtt.Client, topic: str, payload: bytes) -> None:
        try:
            info = client.publish(topic, payload, qos=self.qos, retain=self.retain)
        except ValueError as exc:  # invalid topic or payload too large
            raise SinkError(f"{_NAME}: cannot publish to '{topic}': {exc}") from exc
        rc = info.rc
        with self._cond:
            self._written += 1
            if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                accepted = False
            elif self.qos == 0:
                accepted = rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                if accepted:
                    self._acknowledged += 1
            else:
                # QoS 1/2: paho holds the message (sent now, or when reconnected) until
                # the broker acknowledges it; the callback may already have run.
                accepted = True
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                    self._acknowledged += 1
                else:
                    self._pending.add(info.mid)
            if accepted:
                if self._dropping:
                    self._dropping = False
                    logger.warning(
                        "%s: publishing to %s again after dropping %d message(s)",
                        _NAME,
                        self.broker,
                        self._dropped_in_run,
                    )
                return
            self._dropped += 1
            self._dropped_in_run = 1 if not self._dropping else self._dropped_in_run + 1
            first = not self._dropping
            self._dropping = True
        if first:
            reason = (
                f"{self.max_queued} messages unacknowledged (max_queued)"
                if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                else f"not connected ({mqtt.error_string(rc)})"
            )
            logger.warning("%s: dropping messages to %s: %s", _NAME, self.broker, reason)

    # ------------------------------------------------------- paho callbacks (its thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        failed = bool(getattr(reason_code, "is_failure", False))
        reconnect = False
        with self._cond:
            self._first_attempt_done = True
            if failed:
                self._last_error = f"connection refused by broker: {reason_code}"
            else:
                self._connected = True
                self._connects += 1
                reconnect = self._connects > 1
            closing = self._closing
            self._cond.notify_all()
        if closing:
            client.disconnect()
        elif failed:
            logger.warning("%s: %s refused the connection: %s", _NAME, self.broker, reason_code)
        elif reconnect:
            logger.info("%s: reconnected to %s", _NAME, self.broker)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._cond:
            self._first_attempt_done = True
            self._last_error = f"cannot connect to {self.broker}"
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        disconnect_flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            closing = self._closing
            if was_connected and not closing:
                self._disconnects += 1
            if not closing and was_connected:
                self._last_error = f"connection lost: {reason_code}"
            pending = len(self._pending)
        if was_connected and not closing:
            logger.warning(
                "%s: lost the connection to %s (%s); %d message(s) unacknowledged, reconnecting",
                _NAME,
                self.broker,
                reason_code,
                pending,
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
                self._acknowledged += 1
                if not self._pending:
                    self._cond.notify_all()
            else:
                self._acked_early.add(mid)

    # ---------------------------------------------------------------------- stats

    def is_connected(self) -> bool:
        """True while the client holds an accepted connection to the broker."""
        with self._cond:
            return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for a connection; True if connected."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout=timeout_s)

    def stats(self) -> dict[str, Any]:
        """Return the message counters (safe from any thread).

        Returns:
            ``written`` (frames + events given to the sink), ``acknowledged``
            (QoS 1/2: acknowledged by the broker; QoS 0: handed to the socket),
            ``dropped`` (refused: queue full, or QoS 0 while disconnected),
            ``pending`` (queued or in flight, not yet acknowledged); ``written ==
            acknowledged + dropped + pending``. Also ``unacknowledged_at_close``
            (None before ``close``), ``connected``, ``connects``, ``disconnects``
            (lost connections), ``last_error`` and ``broker``.
        """
        with self._cond:
            return {
                "broker": self.broker,
                "written": self._written,
                "acknowledged": self._acknowledged,
                "dropped": self._dropped,
                "pending": len(self._pending),
                "unacknowledged_at_close": self._unacknowledged_at_close,
                "connected": self._connected,
                "connects": self._connects,
                "disconnects": self._disconnects,
                "last_error": self._last_error,
            }


__all__ = ["MqttSink"]
