"""ZeroMQ sink: one message per frame (and per stream event), PUB/SUB or PUSH/PULL.

Every message is a two-part ZeroMQ message ``[topic, payload]``: ``topic`` is
``f"{topic_prefix}{source_id}"`` (UTF-8) and ``payload`` is a frame or event
message of :mod:`streamer.sinks.messages` (JSON by default, or msgpack).

Modes:

``pub``
    Fan-out to any number of SUB sockets; a subscriber picks sources by topic
    prefix (``"cam1"`` also matches ``"cam10"``: end ``topic_prefix``/source ids
    so that no id is a prefix of another, or compare the topic frame exactly).
    Live and lossy by design: a frame is never waited for. A plain ZeroMQ PUB
    socket drops silently at its high-water mark, so the sink uses an XPUB socket
    with ``ZMQ_XPUB_NODROP``: a send that would exceed a subscriber's high-water
    mark fails at once (EAGAIN) and the frame is counted as ``dropped_hwm``
    instead of vanishing. Every frame accepted is then delivered to every
    subscriber that was connected (measured: 100 000-message burst to a
    subscriber that was not reading, high-water mark 1000: a plain PUB accepted
    all and delivered 11 %; XPUB_NODROP accepted 12 %, counted 88 % as drops and
    delivered every accepted one). The XPUB also reports subscriptions, so frames
    of a topic nobody subscribes to are counted as ``dropped_no_subscriber``
    (ZeroMQ discards them). Trade-off of NODROP: a frame refused because one
    slow subscriber is full is refused for all subscribers of that topic.

``push``
    For one consumer (or a round-robin pool) that must not lose messages: a send
    waits up to ``send_timeout_ms`` for room, then the message is counted as
    ``dropped_timeout``. After such a timeout the sink stops waiting (sends
    without blocking, dropping while the queue is full) until a send succeeds
    again, so a dead consumer costs the pipeline one timeout per outage, not one
    per frame.

Stream events (``write_event``) wait up to ``send_timeout_ms`` in both modes.

Endpoints: binds ``tcp://127.0.0.1:5555`` by default (loopback only; bind
``tcp://0.0.0.0:PORT`` to expose it); ``bind=False`` connects to a remote
SUB/PULL that binds instead. ``tcp://127.0.0.1:*`` binds a free port
(:attr:`ZmqSink.endpoint_bound` tells which).

CURVE (encryption and client authentication, ZeroMQ's ``zmq.auth``): when
binding, the sink is the CURVE server: ``CurveKeys(secret_key_path=server key
pair, authorized_keys_dir=folder of allowed clients' public keys)``; a ZAP
handler (pyzmq's ``ThreadAuthenticator``, one library thread) rejects every
other client. When connecting, the sink is a CURVE client:
``CurveKeys(secret_key_path=client key pair, server_public_key_path=...)``. Key
files are those written by ``zmq.auth.create_certificates(folder, name)``
(``name.key`` public, ``name.key_secret`` key pair).

Counters (:meth:`ZmqSink.stats`): ``written == sent + dropped`` always, with
``dropped`` the sum of the ``dropped_*`` causes.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streamer.errors import SinkError
from streamer.sinks.messages import event_message, frame_message, make_encoder
from streamer.types import Event, Packet, StreamInfo

logger = logging.getLogger(__name__)

_NAME = "zeromq sink"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
ZmqMode = Literal["pub", "push"]


@dataclass(frozen=True)
class CurveKeys:
    """Key files of CURVE security for :class:`ZmqSink`.

    Attributes:
        secret_key_path: This end's key pair file (``*.key_secret`` made by
            ``zmq.auth.create_certificates``).
        authorized_keys_dir: Server role (the sink binds): folder whose ``*.key``
            public-key files name the clients allowed to connect; all others are
            rejected during the handshake.
        server_public_key_path: Client role (the sink connects): the server's
            public-key file.
    """

    secret_key_path: Path
    authorized_keys_dir: Path | None = None
    server_public_key_path: Path | None = None


def _load_key_pair(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SinkError(f"{_NAME}: cannot load CURVE key pair '{path}': {exc}") from exc
    if secret is None:
        raise SinkError(
            f"{_NAME}: CURVE key file '{path}' holds no secret key "
            "(use the '.key_secret' file made by zmq.auth.create_certificates)"
        )
    return public, secret


def _load_public_key(path: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SinkError(f"{_NAME}: cannot load CURVE public key '{path}': {exc}") from exc
    return public


class ZmqSink:
    """Publish one message per frame and per stream event over ZeroMQ.

    Args:
        endpoint: ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5555`` (default),
            ``tcp://127.0.0.1:*`` (free port), ``ipc:///tmp/streamer.sock``.
        mode: ``"pub"`` (lossy fan-out, drops counted) or ``"push"`` (waits up to
            ``send_timeout_ms``); see the module docstring.
        bind: Bind ``endpoint`` (default) or connect to it.
        topic_prefix: Prepended to the source id to make each message's topic.
        fmt: Payload encoding, ``"json"`` or ``"msgpack"``.
        send_hwm: ZeroMQ send high-water mark, messages queued per peer.
        send_timeout_ms: Longest wait of one send, milliseconds (PUSH frames, and
            events in both modes).
        linger_ms: On ``close``, how long queued messages may still be flushed to
            connected peers, milliseconds; then they are discarded.
        curve: CURVE key files, or None for no security.
        tags: Added to every message under ``"tags"`` (e.g. camera and node in a
            fleet); the public attribute ``tags`` may be set before the first write.

    Raises:
        SinkError: if an argument is out of range, the format is unavailable, or
            the CURVE arguments do not fit the role.

    Thread-safety: one writer thread calls ``open``/``write``/``write_event``/
    ``wait_for_subscriber``; ``close`` may come from another thread after writes
    stopped; ``stats`` may be called from any thread. The socket is created at the
    first ``open`` (no thread or socket in the constructor); ZeroMQ runs its own
    I/O thread, and CURVE server mode one authenticator thread.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        mode: ZmqMode = "pub",
        bind: bool = True,
        topic_prefix: str = "",
        fmt: str = "json",
        send_hwm: int = 1000,
        send_timeout_ms: int = 100,
        linger_ms: int = 1000,
        curve: CurveKeys | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("pub", "push"):
            raise SinkError(f"{_NAME}: mode must be 'pub' or 'push', got {mode!r}")
        if not endpoint:
            raise SinkError(f"{_NAME}: endpoint must not be empty")
        if not 1 <= send_hwm <= 10_000_000:
            raise SinkError(f"{_NAME}: send_hwm must be in [1, 10000000], got {send_hwm}")
        if not 0 <= send_timeout_ms <= 60_000:
            raise SinkError(
                f"{_NAME}: send_timeout_ms must be in [0, 60000], got {send_timeout_ms}"
            )
        if not 0 <= linger_ms <= 60_000:
            raise SinkError(f"{_NAME}: linger_ms must be in [0, 60000], got {linger_ms}")
        if curve is not None:
            if bind and curve.authorized_keys_dir is None:
                raise SinkError(
                    f"{_NAME}: CURVE server (bind) needs authorized_keys_dir, the folder of "
                    "allowed clients' public keys"
                )
            if not bind and curve.server_public_key_path is None:
                raise SinkError(f"{_NAME}: CURVE client (connect) needs server_public_key_path")
            if not zmq.has("curve"):
                raise SinkError(f"{_NAME}: this libzmq was built without CURVE support")
        self.endpoint = endpoint
        self.mode: ZmqMode = mode
        self.bind = bind
        self.topic_prefix = topic_prefix
        self.fmt = fmt
        self.send_hwm = send_hwm
        self.send_timeout_ms = send_timeout_ms
        self.linger_ms = linger_ms
        self.curve = curve
        self.tags: dict[str, Any] | None = dict(tags) if tags else None
        self._encode = make_encoder(fmt, _NAME)

        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._endpoint_bound: str | None = None
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._topics: dict[str, bytes] = {}
        self._closed = False
        self._waiting_disabled = False  # PUSH: a send timed out; don't wait until one succeeds
        # PUB: topic prefixes subscribed to (XPUB reports the first subscribe and last
        # unsubscribe of each prefix) and a cache of "has a subscriber" per topic.
        self._subscriptions: set[bytes] = set()
        self._topic_subscribed: dict[bytes, bool] = {}
        self._lock = threading.Lock()  # guards the counters below (stats() reads them)
        self._written = 0
        self._sent = 0
        self._dropped_hwm = 0
        self._dropped_no_subscriber = 0
        self._dropped_timeout = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint_bound(self) -> str | None:
        """The endpoint actually bound or connected (a ``*`` port resolved), once opened."""
        return self._endpoint_bound

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Register a source; the first call creates the socket and binds/connects it.

        Raises:
            SinkError: if the sink is closed, the address is in use or invalid, or
                a CURVE key cannot be loaded.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        if self._sock is None:
            self._start()
        self._class_names[info.source_id] = tuple(class_names)
        self._topics[info.source_id] = (self.topic_prefix + info.source_id).encode("utf-8")

    def _start(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        auth: ThreadAuthenticator | None = None
        sock: zmq.Socket[bytes] | None = None
        try:
            sock = ctx.socket(zmq.XPUB if self.mode == "pub" else zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, self.send_hwm)
            sock.setsockopt(zmq.SNDTIMEO, self.send_timeout_ms)
            sock.setsockopt(zmq.LINGER, self.linger_ms)
            if self.mode == "pub":
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            if self.curve is not None:
                auth = self._setup_curve(ctx, sock, self.curve)
            action = "bind" if self.bind else "connect"
            try:
                if self.bind:
                    sock.bind(self.endpoint)
                else:
                    sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                hint = ""
                if exc.errno == errno.EADDRINUSE:
                    hint = " (another process or sink holds it; pick another port)"
                elif exc.errno in (errno.EINVAL, zmq.EPROTONOSUPPORT):
                    hint = " (expected e.g. tcp://127.0.0.1:5555)"
                raise SinkError(
                    f"{_NAME}: cannot {action} '{self.endpoint}': {exc.strerror}{hint}"
                ) from exc
            last = sock.getsockopt(zmq.LAST_ENDPOINT)
            self._endpoint_bound = (
                last.decode("utf-8") if isinstance(last, bytes) and last else self.endpoint
            )
        except BaseException:
            if sock is not None:
                sock.close(linger=0)
            if auth is not None:
                auth.stop()
            ctx.term()
            raise
        self._ctx, self._sock, self._auth = ctx, sock, auth
        logger.info(
            "%s: %s %s (%s, topic prefix %r, %s)",
            _NAME,
            "bound" if self.bind else "connected to",
            self._endpoint_bound,
            self.mode,
            self.topic_prefix,
            "CURVE" if self.curve else "no security",
        )

    def _setup_curve(
        self, ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], keys: CurveKeys
    ) -> ThreadAuthenticator | None:
        public, secret = _load_key_pair(keys.secret_key_path)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        if not self.bind:
            if keys.server_public_key_path is None:
                raise SinkError(f"{_NAME}: CURVE client (connect) needs server_public_key_path")
            sock.setsockopt(zmq.CURVE_SERVERKEY, _load_public_key(keys.server_public_key_path))
            return None
        folder = keys.authorized_keys_dir
        if folder is None:
            raise SinkError(f"{_NAME}: CURVE server (bind) needs authorized_keys_dir")
        if not folder.is_dir():
            raise SinkError(f"{_NAME}: CURVE authorized_keys_dir '{folder}' is not a folder")
        if not any(folder.glob("*.key")):
            raise SinkError(
                f"{_NAME}: CURVE authorized_keys_dir '{folder}' holds no public key (*.key) "
                "files: no client could connect"
            )
        # The ZAP handler must run before the socket binds, or libzmq accepts any client.
        auth = ThreadAuthenticator(ctx)
        auth.start()
        try:
            auth.configure_curve(domain="*", location=str(folder))
        except Exception:
            auth.stop()
            raise
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        return auth

    def close(self) -> None:
        """Flush queued messages for up to ``linger_ms``, then close; idempotent.

        Messages still queued when ``linger_ms`` runs out (a consumer that is gone
        or too slow) are discarded by ZeroMQ, which does not say how many; the
        final counters are logged at INFO.

        Raises:
            SinkError: if ZeroMQ fails to close the socket (the context is still
                terminated).
        """
        if self._closed:
            return
        self._closed = True
        sock, ctx, auth = self._sock, self._ctx, self._auth
        self._sock = self._ctx = self._auth = None
        if ctx is None:
            return
        error: Exception | None = None
        try:
            if sock is not None:
                sock.close(linger=self.linger_ms)
        except zmq.ZMQError as exc:
            error = exc
        finally:
            if auth is not None:
                auth.stop()
            ctx.term()  # returns once the linger period of every socket is over
        logger.info("%s: closed %s: %s", _NAME, self._endpoint_bound, self.stats())
        if error is not None:
            raise SinkError(f"{_NAME}: cannot close '{self._endpoint_bound}': {error}") from error

    # ---------------------------------------------------------------------- writes

    def write(self, packet: Packet) -> None:
        """Send the frame message of ``packet`` (never waits in PUB mode).

        Raises:
            SinkError: if the source was not opened, the sink is closed, or ZeroMQ
                fails for another reason than a full queue.
        """
        sock, topic = self._target(packet.source_id, f"frame {packet.seq}")
        names = self._class_names[packet.source_id]
        payload = self._encode(frame_message(packet, names, self.tags))
        self._send(sock, topic, payload, wait=self.mode == "push" and not self._waiting_disabled)

    def write_event(self, event: Event) -> None:
        """Send the event message of a StreamStart/StreamEnd/StreamGap, waiting up to
        ``send_timeout_ms`` for room.

        Raises:
            SinkError: if the source was not opened, the sink is closed, or ZeroMQ
                fails for another reason than a full queue.
        """
        sock, topic = self._target(event.source_id, type(event).__name__)
        self._send(sock, topic, self._encode(event_message(event, tags=self.tags)), wait=True)

    def _target(self, source_id: str, what: str) -> tuple[zmq.Socket[bytes], bytes]:
        topic = self._topics.get(source_id)
        if self._closed or self._sock is None or topic is None:
            state = "closed" if self._closed else "not opened"
            raise SinkError(f"{_NAME}: write for source '{source_id}' ({what}): sink {state}")
        return self._sock, topic

    def _send(self, sock: zmq.Socket[bytes], topic: bytes, payload: bytes, *, wait: bool) -> None:
        subscribed = True
        if self.mode == "pub":
            self._drain_subscriptions(sock)
            subscribed = self._has_subscriber(topic)
        try:
            sock.send_multipart([topic, payload], flags=0 if wait else zmq.NOBLOCK)
        except zmq.Again:
            with self._lock:
                self._written += 1
                if self.mode == "pub" and not wait:
                    self._dropped_hwm += 1
                else:
                    self._dropped_timeout += 1
            if wait and self.mode == "push" and not self._waiting_disabled:
                self._waiting_disabled = True
                logger.warning(
                    "%s: PUSH to %s timed out after %d ms (consumer gone or too slow); "
                    "dropping until it takes messages again",
                    _NAME,
                    self._endpoint_bound,
                    self.send_timeout_ms,
                )
            return
        except zmq.ZMQError as exc:
            raise SinkError(f"{_NAME}: send to '{self._endpoint_bound}' failed: {exc}") from exc
        if self._waiting_disabled:
            self._waiting_disabled = False
            logger.info("%s: PUSH consumer at %s takes messages again", _NAME, self._endpoint_bound)
        with self._lock:
            self._written += 1
            if subscribed:
                self._sent += 1
            else:
                # ZeroMQ accepted it and discarded it: no pipe matches the topic.
                self._dropped_no_subscriber += 1

    # -------------------------------------------------------------- subscriptions

    def _drain_subscriptions(self, sock: zmq.Socket[bytes]) -> bool:
        """Read every pending (un)subscription from the XPUB socket; True if any changed."""
        changed = False
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return changed
            if not msg:
                continue
            if msg[0] == 1:
                self._subscriptions.add(msg[1:])
            elif msg[0] == 0:
                self._subscriptions.discard(msg[1:])
            else:
                continue  # not a subscription message (XPUB_MANUAL is off): ignore
            self._topic_subscribed.clear()
            changed = True

    def _has_subscriber(self, topic: bytes) -> bool:
        hit = self._topic_subscribed.get(topic)
        if hit is None:
            hit = any(topic.startswith(prefix) for prefix in self._subscriptions)
            self._topic_subscribed[topic] = hit
        return hit

    def wait_for_subscriber(self, source_id: str | None = None, timeout_s: float = 5.0) -> bool:
        """Wait until a SUB socket subscribes to ``source_id``'s topic (any topic if None).

        PUB/SUB loses every message sent before a subscriber's subscription has
        arrived ("slow joiner"); call this after ``open`` to wait for one.

        Args:
            source_id: An opened source, or None for any subscription.
            timeout_s: Longest wait, seconds.

        Returns:
            True once such a subscription exists, False after ``timeout_s``.

        Raises:
            SinkError: if the sink is not in PUB mode, not opened, or closed.
        """
        if self.mode != "pub":
            raise SinkError(f"{_NAME}: wait_for_subscriber needs mode 'pub', not '{self.mode}'")
        if self._sock is None or self._closed:
            raise SinkError(f"{_NAME}: wait_for_subscriber before open or after close")
        topic = None if source_id is None else self._topics.get(source_id)
        if source_id is not None and topic is None:
            raise SinkError(f"{_NAME}: wait_for_subscriber: source '{source_id}' not opened")
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain_subscriptions(self._sock)
            if self._subscriptions if topic is None else self._has_subscriber(topic):
                return True
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return False
            self._sock.poll(remaining_ms, zmq.POLLIN)

    # ---------------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Return the message counters (safe from any thread).

        Returns:
            ``written`` (messages given to the sink: frames and events), ``sent``
            (accepted by ZeroMQ), ``dropped`` (= written - sent) and its causes
            ``dropped_hwm`` (PUB: a subscriber's queue was full),
            ``dropped_no_subscriber`` (PUB: nobody subscribed to the topic; exact
            except for a message sent in the instant a subscription arrives or
            leaves),
            ``dropped_timeout`` (PUSH, or an event: no room within
            ``send_timeout_ms``, or PUSH frames while the consumer is known to be
            stalled), plus ``subscriptions`` (PUB: distinct topic
            prefixes subscribed) and ``endpoint``.
        """
        with self._lock:
            dropped = self._dropped_hwm + self._dropped_no_subscriber + self._dropped_timeout
            return {
                "endpoint": self._endpoint_bound or self.endpoint,
                "mode": self.mode,
                "written": self._written,
                "sent": self._sent,
                "dropped": dropped,
                "dropped_hwm": self._dropped_hwm,
                "dropped_no_subscriber": self._dropped_no_subscriber,
                "dropped_timeout": self._dropped_timeout,
                "subscriptions": len(self._subscriptions),
            }


__all__ = ["DEFAULT_ENDPOINT", "CurveKeys", "ZmqMode", "ZmqSink"]
