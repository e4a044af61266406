"""ZeroMQ and MQTT sinks against real sockets and a real mosquitto broker on loopback.

Every wait is an explicit wait with a deadline; no assertion depends on a sleep.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("zmq", reason="pyzmq not installed (pip install pyzmq)")
pytest.importorskip("paho.mqtt", reason="paho-mqtt not installed (pip install paho-mqtt)")

import zmq
import zmq.auth
import zmq.utils.monitor
from brokers import Mosquitto, Subscriber, free_port

from streamer.errors import SinkError
from streamer.sinks.messages import (
    EVENT_SCHEMA,
    FRAME_SCHEMA,
    decode_message,
    frame_message,
)
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.zeromq import CurveKeys, ZmqSink
from streamer.types import (
    Frame,
    Packet,
    StreamEnd,
    StreamGap,
    StreamInfo,
    StreamStart,
    Tracks,
)

CLASS_NAMES = ("person", "car")
REPO_ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


# --------------------------------------------------------------------- helpers


def make_packet(seq: int, source_id: str = "cam1", n_tracks: int = 3) -> Packet:
    """A packet with ``n_tracks`` tracks whose boxes depend on ``seq``."""
    rng = np.random.default_rng(seq)
    xy = rng.uniform(0, 400, (n_tracks, 2)).astype(np.float32)
    tracks = Tracks(
        xyxy=np.hstack([xy, xy + 40]).astype(np.float32),
        confidence=rng.uniform(0.3, 1.0, n_tracks).astype(np.float32),
        class_id=(np.arange(n_tracks) % 2).astype(np.int32),
        track_id=np.arange(1, n_tracks + 1, dtype=np.int64),
        det_index=np.arange(n_tracks, dtype=np.int32),
    )
    frame = Frame(
        source_id, seq, seq * 40_000_000, 0, np.zeros((4, 4, 3), np.uint8), time.time_ns()
    )
    return Packet(frame, tracks=tracks)


def info(source_id: str = "cam1") -> StreamInfo:
    return StreamInfo(source_id=source_id, fps=25.0, width_px=480, height_px=360, uri="clip.mp4")


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


def recv_all(sock: Any, n: int, timeout_s: float) -> list[list[bytes]]:
    """Receive exactly ``n`` multipart messages within ``timeout_s``."""
    out: list[list[bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0 or not sock.poll(remaining_ms):
            raise AssertionError(f"received {len(out)} of {n} messages within {timeout_s} s")
        out.append(sock.recv_multipart())
    return out


def drain(sock: Any, idle_ms: int = 300) -> list[list[bytes]]:
    """Receive until nothing arrives for ``idle_ms``."""
    out: list[list[bytes]] = []
    while sock.poll(idle_ms):
        out.append(sock.recv_multipart())
    return out


@pytest.fixture
def zctx() -> Iterator[Any]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


# ------------------------------------------------------------------- ZeroMQ


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_zmq_push_pull_receives_every_message_in_order(zctx: Any, fmt: str) -> None:
    if fmt == "msgpack":
        pytest.importorskip("msgpack")
    pull = zctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sink = ZmqSink(f"tcp://127.0.0.1:{port}", mode="push", bind=False, fmt=fmt)
    n = 300
    packets = [make_packet(i) for i in range(n)]
    analytics = {"lines": {"door": {"in": 2, "out": 1}}, "zones": {}}
    packets[5].analytics = analytics  # as the analytics stage fills it
    sink.open(info(), CLASS_NAMES)
    sink.write_event(StreamStart(info()))
    for p in packets:
        sink.write(p)
    sink.write_event(StreamGap("cam1", 2))
    sink.write_event(StreamEnd("cam1", n))
    got = recv_all(pull, n + 3, timeout_s=10)
    sink.close()

    assert {parts[0] for parts in got} == {b"cam1"}
    messages = [decode_message(parts[1], fmt) for parts in got]
    assert [m["type"] for m in (messages[0], messages[-2], messages[-1])] == [
        "stream_start",
        "stream_gap",
        "stream_end",
    ]
    assert all(m["schema"] == EVENT_SCHEMA for m in (messages[0], messages[-2], messages[-1]))
    assert messages[0]["fps"] == 25.0 and messages[-1]["frames"] == n
    assert messages[-2]["missing_frames"] == 2
    frames = messages[1:-2]
    assert [m["seq"] for m in frames] == list(range(n))
    # exactly the schema message of each packet (msgpack keeps floats as doubles)
    assert frames == [frame_message(p, CLASS_NAMES) for p in packets]
    assert frames[0]["schema"] == FRAME_SCHEMA and len(frames[0]["tracks"]) == 3
    assert frames[5]["analytics"] == analytics and "analytics" not in frames[4]
    stats = sink.stats()
    assert (stats["written"], stats["sent"], stats["dropped"]) == (n + 3, n + 3, 0)


def test_zmq_push_without_consumer_waits_once_then_recovers(zctx: Any) -> None:
    """A dead consumer costs one send_timeout_ms, not one per frame; then it resumes."""
    sink = ZmqSink("tcp://127.0.0.1:*", mode="push", send_timeout_ms=500, send_hwm=50)
    sink.open(info(), CLASS_NAMES)
    t0 = time.perf_counter()
    sink.write(make_packet(0))
    first_s = time.perf_counter() - t0
    assert 0.4 <= first_s < 1.5, first_s
    longest_s = 0.0
    for i in range(1, 101):
        t0 = time.perf_counter()
        sink.write(make_packet(i))
        longest_s = max(longest_s, time.perf_counter() - t0)
    # No more waiting while the consumer is gone (waiting would cost 0.5 s a frame).
    assert longest_s < 0.3, longest_s
    stats = sink.stats()
    assert (stats["written"], stats["sent"], stats["dropped_timeout"]) == (101, 0, 101)

    pull = zctx.socket(zmq.PULL)
    assert sink.endpoint_bound is not None
    pull.connect(sink.endpoint_bound)
    seq = 101
    deadline = time.monotonic() + 5
    while sink.stats()["sent"] == 0:  # frames are dropped until the connection is up
        assert time.monotonic() < deadline, "PUSH never recovered after the consumer connected"
        sink.write(make_packet(seq))
        seq += 1
    for i in range(seq, seq + 20):
        sink.write(make_packet(i))
    got = [decode_message(p[1]) for p in recv_all(pull, 21, timeout_s=5)]
    assert [m["seq"] for m in got] == list(range(seq - 1, seq + 20))
    sink.close()
    stats = sink.stats()
    assert stats["sent"] == 21 and stats["sent"] + stats["dropped"] == stats["written"]


def test_zmq_pub_subscriber_gets_only_its_source(zctx: Any) -> None:
    sink = ZmqSink("tcp://127.0.0.1:*", mode="pub", topic_prefix="streamer/")
    sink.open(info("cam1"), CLASS_NAMES)
    sink.open(info("cam2"), CLASS_NAMES)
    sub = zctx.socket(zmq.SUB)
    sub.subscribe(b"streamer/cam2")
    assert sink.endpoint_bound is not None
    sub.connect(sink.endpoint_bound)
    assert sink.wait_for_subscriber("cam2", timeout_s=5)
    assert not sink.wait_for_subscriber("cam1", timeout_s=0)
    for i in range(50):
        sink.write(make_packet(i, "cam1"))
        sink.write(make_packet(i, "cam2"))
    got = recv_all(sub, 50, timeout_s=5)
    assert drain(sub, idle_ms=100) == []
    sink.close()
    assert {parts[0] for parts in got} == {b"streamer/cam2"}
    messages = [decode_message(parts[1]) for parts in got]
    assert [(m["source_id"], m["seq"]) for m in messages] == [("cam2", i) for i in range(50)]
    stats = sink.stats()
    assert stats["written"] == 100 and stats["sent"] == 50
    assert stats["dropped_no_subscriber"] == 50 and stats["dropped_hwm"] == 0


def test_zmq_pub_burst_over_hwm_counts_drops_and_delivers_the_rest(zctx: Any) -> None:
    """A subscriber that does not read during a burst: drops are counted, not silent."""
    sink = ZmqSink("tcp://127.0.0.1:*", mode="pub", send_hwm=10)
    sink.open(info(), CLASS_NAMES)
    sub = zctx.socket(zmq.SUB)
    sub.rcvhwm = 10
    sub.subscribe(b"")
    assert sink.endpoint_bound is not None
    sub.connect(sink.endpoint_bound)
    assert sink.wait_for_subscriber(timeout_s=5)
    n = 20_000
    packet = make_packet(0, n_tracks=10)  # ~1 kB per message
    t0 = time.perf_counter()
    for _ in range(n):
        sink.write(packet)
    burst_s = time.perf_counter() - t0
    stats = sink.stats()
    assert stats["written"] == n
    assert stats["dropped_hwm"] > 0
    assert stats["sent"] + stats["dropped"] == n
    # every accepted message reaches the (now reading) subscriber: nothing lost silently
    received = drain(sub)
    assert len(received) == stats["sent"]
    sink.close()
    print(
        f"\nPUB burst: {n} written in {burst_s:.2f} s, sent {stats['sent']}, "
        f"dropped at HWM {stats['dropped_hwm']}, received {len(received)}"
    )


def test_zmq_pub_without_subscriber_counts_every_frame_as_dropped() -> None:
    sink = ZmqSink("tcp://127.0.0.1:*", mode="pub")
    sink.open(info(), CLASS_NAMES)
    for i in range(100):
        sink.write(make_packet(i))
    sink.close()
    stats = sink.stats()
    assert (stats["sent"], stats["dropped_no_subscriber"], stats["written"]) == (0, 100, 100)


def test_zmq_curve_admits_only_authorized_clients(zctx: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    for name in ("server", "client", "intruder"):
        zmq.auth.create_certificates(keys, name)
    shutil.copy(keys / "client.key", allowed / "client.key")
    server_public, _ = zmq.auth.load_certificate(keys / "server.key")

    sink = ZmqSink(
        "tcp://127.0.0.1:*",
        mode="pub",
        curve=CurveKeys(keys / "server.key_secret", authorized_keys_dir=allowed),
    )
    sink.open(info(), CLASS_NAMES)
    endpoint = sink.endpoint_bound
    assert endpoint is not None

    def subscriber(name: str | None) -> Any:
        sub = zctx.socket(zmq.SUB)
        if name is not None:
            public, secret = zmq.auth.load_certificate(keys / f"{name}.key_secret")
            sub.curve_publickey, sub.curve_secretkey = public, secret
            sub.curve_serverkey = server_public
        sub.subscribe(b"")
        return sub

    good, intruder, plain = subscriber("client"), subscriber("intruder"), subscriber(None)
    monitor = intruder.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    for sub in (good, intruder, plain):
        sub.connect(endpoint)
    # the intruder's handshake is rejected by the ZAP handler (an explicit event)
    assert monitor.poll(5000), "intruder handshake was not rejected within 5 s"
    event = zmq.utils.monitor.recv_monitor_message(monitor)
    assert event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert sink.wait_for_subscriber(timeout_s=5)
    for i in range(20):
        sink.write(make_packet(i))
    got = recv_all(good, 20, timeout_s=5)
    assert [decode_message(p[1])["seq"] for p in got] == list(range(20))
    # everything has reached the authorized client; the others got nothing
    assert not intruder.poll(300) and not plain.poll(0)
    sink.close()
    assert sink.stats()["sent"] == 20


def test_zmq_curve_client_mode_connects_to_a_curve_server(zctx: Any, tmp_path: Path) -> None:
    server_public_file, server_secret_file = zmq.auth.create_certificates(tmp_path, "server")
    _, client_secret_file = zmq.auth.create_certificates(tmp_path, "client")
    public, secret = zmq.auth.load_certificate(server_secret_file)
    pull = zctx.socket(zmq.PULL)
    pull.curve_publickey, pull.curve_secretkey, pull.curve_server = public, secret, True
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sink = ZmqSink(
        f"tcp://127.0.0.1:{port}",
        mode="push",
        bind=False,
        curve=CurveKeys(Path(client_secret_file), server_public_key_path=Path(server_public_file)),
    )
    sink.open(info(), CLASS_NAMES)
    for i in range(10):
        sink.write(make_packet(i))
    got = recv_all(pull, 10, timeout_s=5)
    sink.close()
    assert [decode_message(p[1])["seq"] for p in got] == list(range(10))


def test_zmq_errors_name_the_problem(tmp_path: Path) -> None:
    first = ZmqSink("tcp://127.0.0.1:*")
    first.open(info(), CLASS_NAMES)
    taken = first.endpoint_bound
    assert taken is not None
    second = ZmqSink(taken)
    with pytest.raises(SinkError, match=rf"cannot bind '{taken}': Address already in use"):
        second.open(info(), CLASS_NAMES)
    second.close()
    first.close()
    first.close()  # idempotent
    with pytest.raises(SinkError, match="sink closed"):
        first.write(make_packet(0))
    with pytest.raises(SinkError, match="cannot bind 'nonsense'"):
        ZmqSink("nonsense").open(info(), CLASS_NAMES)
    unopened = ZmqSink("tcp://127.0.0.1:*")
    unopened.open(info("cam1"), CLASS_NAMES)
    with pytest.raises(SinkError, match=r"source 'cam2'.*not opened"):
        unopened.write(make_packet(0, "cam2"))
    unopened.close()
    with pytest.raises(SinkError, match="authorized_keys_dir"):
        ZmqSink(curve=CurveKeys(tmp_path / "x.key_secret"))
    with pytest.raises(SinkError, match="format must be one of"):
        ZmqSink(fmt="xml")
    with pytest.raises(SinkError, match="cannot load CURVE key pair"):
        ZmqSink(
            "tcp://127.0.0.1:*",
            curve=CurveKeys(tmp_path / "missing.key_secret", authorized_keys_dir=tmp_path),
        ).open(info(), CLASS_NAMES)


def test_zmq_subscriber_script_prints_one_line_per_message() -> None:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    sink = ZmqSink(endpoint, mode="pub")
    sink.open(info(), CLASS_NAMES)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "scripts/zmq_subscriber.py"),
            *("--endpoint", endpoint, "--topic", "cam1", "--count", "5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.wait_for_subscriber("cam1", timeout_s=10)
        for i in range(5):
            sink.write(make_packet(i))
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        sink.close()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines == [
        f"cam1 frame seq={i} pts_s={round(i * 40_000_000 / 1e9, 6)} tracks=3" for i in range(5)
    ]


# --------------------------------------------------------------------- MQTT


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    brokers: list[Mosquitto] = []

    def make(port: int | None = None, password_file: Path | None = None) -> Mosquitto:
        b = Mosquitto(tmp_path, port or free_port(), password_file)
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        b.kill()


def test_mqtt_subscriber_receives_every_frame_qos1(broker_factory: Callable[..., Any]) -> None:
    broker = broker_factory().start()
    sub = Subscriber(broker.port)
    sink = MqttSink("127.0.0.1", broker.port, qos=1)
    n = 300
    try:
        sink.open(info("cam/1"), CLASS_NAMES)  # '/' in a source id becomes '_' in the topic
        sink.write_event(StreamStart(info("cam/1")))
        for i in range(n):
            sink.write(make_packet(i, "cam/1"))
        sink.write_event(StreamEnd("cam/1", n))
        sink.close()  # waits for every PUBACK
        stats = sink.stats()
        assert stats["acknowledged"] == n + 2 and stats["unacknowledged_at_close"] == 0
        assert stats["dropped"] == 0
        wait_until(lambda: len(sub.received("/frames")) == n, 10, f"{n} frame messages")
        wait_until(lambda: len(sub.received("/events")) == 2, 5, "2 event messages")
    finally:
        sub.close()
    topics = {t for t, _ in sub.messages}
    assert topics == {"streamer/cam_1/frames", "streamer/cam_1/events"}
    frames = sub.received("/frames")
    assert [m["seq"] for m in frames] == list(range(n))
    assert all(m["schema"] == FRAME_SCHEMA and m["source_id"] == "cam/1" for m in frames)
    assert [m["type"] for m in sub.received("/events")] == ["stream_start", "stream_end"]


def test_mqtt_broker_down_at_start_queues_without_blocking_then_flows(
    broker_factory: Callable[..., Any],
) -> None:
    broker = broker_factory()  # chosen port, not started yet
    sink = MqttSink(
        "127.0.0.1",
        broker.port,
        qos=1,
        max_queued=100,
        reconnect_min_delay_s=1,
        reconnect_max_delay_s=1,
        flush_timeout_s=5,
    )
    t0 = time.perf_counter()
    sink.open(info(), CLASS_NAMES)
    open_s = time.perf_counter() - t0
    assert open_s < 0.5, open_s  # a refused connection does not wait connect_wait_s
    longest_s = 0.0
    for i in range(130):
        t0 = time.perf_counter()
        sink.write(make_packet(i))
        longest_s = max(longest_s, time.perf_counter() - t0)
    # A write that waited for the broker would take a reconnect delay (1 s) or
    # connect_wait_s (1 s); 0.5 s leaves room for a stalled 2-core CI machine
    # (one write once took 0.2 s there).
    assert longest_s < 0.5, longest_s
    stats = sink.stats()
    assert not stats["connected"] and stats["last_error"]
    # bounded queue: 100 held for the broker, 30 refused and counted
    assert (stats["written"], stats["pending"], stats["dropped"]) == (130, 100, 30)

    broker.start()
    sub = Subscriber(broker.port)
    try:
        assert sink.wait_connected(timeout_s=10), "no reconnect within 10 s"
        wait_until(lambda: sink.stats()["pending"] == 0, 10, "queued messages acknowledged")
        assert sink.stats()["acknowledged"] == 100
        for i in range(130, 180):
            sink.write(make_packet(i))
        sink.close()
        wait_until(
            lambda: [m["seq"] for m in sub.received("/frames")][-50:] == list(range(130, 180)),
            10,
            "the 50 frames written after the reconnect",
        )
    finally:
        sub.close()
    stats = sink.stats()
    assert (stats["acknowledged"], stats["dropped"], stats["unacknowledged_at_close"]) == (
        150,
        30,
        0,
    )


def test_mqtt_qos0_while_down_is_dropped_and_counted(broker_factory: Callable[..., Any]) -> None:
    broker = broker_factory()
    sink = MqttSink("127.0.0.1", broker.port, qos=0, flush_timeout_s=1)
    sink.open(info(), CLASS_NAMES)
    for i in range(20):
        sink.write(make_packet(i))
    t0 = time.perf_counter()
    sink.close()
    assert time.perf_counter() - t0 < 1.5
    stats = sink.stats()
    assert (stats["written"], stats["dropped"], stats["pending"]) == (20, 20, 0)


def test_mqtt_broker_killed_mid_run_close_is_bounded_and_reports(
    broker_factory: Callable[..., Any],
) -> None:
    broker = broker_factory().start()
    flush_timeout_s = 1.0
    sink = MqttSink(
        "127.0.0.1", broker.port, qos=1, flush_timeout_s=flush_timeout_s, reconnect_max_delay_s=2
    )
    sink.open(info(), CLASS_NAMES)
    assert sink.wait_connected(timeout_s=5)
    for i in range(50):
        sink.write(make_packet(i))
    wait_until(lambda: sink.stats()["acknowledged"] == 50, 5, "50 acknowledgements")
    broker.kill()
    wait_until(lambda: not sink.is_connected(), 5, "the sink to notice the dead broker")
    longest_s = 0.0
    for i in range(50, 80):
        t0 = time.perf_counter()
        sink.write(make_packet(i))
        longest_s = max(longest_s, time.perf_counter() - t0)
    assert longest_s < 0.5, longest_s  # never waits for the dead broker (seconds)
    t0 = time.perf_counter()
    sink.close()
    close_s = time.perf_counter() - t0
    assert flush_timeout_s - 0.05 <= close_s < flush_timeout_s + 0.25, close_s
    stats = sink.stats()
    assert stats["acknowledged"] == 50
    assert stats["unacknowledged_at_close"] == 30 and stats["disconnects"] == 1


def test_mqtt_credentials_are_used_and_never_logged(
    broker_factory: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd not installed (part of the mosquitto package)")
    secret = "s3cret-Pa55"
    password_file = tmp_path / "passwd"
    subprocess.run(
        [MOSQUITTO_PASSWD, "-b", "-c", str(password_file), "streamer", secret], check=True
    )
    password_file.chmod(0o600)
    broker = broker_factory(password_file=password_file).start()
    caplog.set_level(logging.DEBUG)

    good = MqttSink("127.0.0.1", broker.port, username="streamer", password=secret)
    good.open(info(), CLASS_NAMES)
    assert good.wait_connected(timeout_s=5)
    good.write(make_packet(0))
    good.close()
    assert good.stats()["acknowledged"] == 1

    bad = MqttSink(
        "127.0.0.1", broker.port, username="streamer", password="wrong-" + secret, flush_timeout_s=0
    )
    bad.open(info(), CLASS_NAMES)
    wait_until(lambda: bad.stats()["last_error"] is not None, 5, "the refused connection")
    bad.write(make_packet(0))
    bad.close()
    stats = bad.stats()
    assert not stats["connected"] and "refused" in stats["last_error"]
    assert stats["unacknowledged_at_close"] == 1
    assert secret not in caplog.text and secret not in repr(bad) and secret not in str(stats)


def test_mqtt_argument_errors() -> None:
    with pytest.raises(SinkError, match="qos must be 0, 1 or 2"):
        MqttSink(qos=3)
    with pytest.raises(SinkError, match="topic_prefix must not contain"):
        MqttSink(topic_prefix="a/+/b")
    with pytest.raises(SinkError, match="password needs a username"):
        MqttSink(password="x")
    sink = MqttSink("127.0.0.1", free_port(), connect_wait_s=0, flush_timeout_s=0)
    with pytest.raises(SinkError, match="not opened"):
        sink.write(make_packet(0))
    sink.open(info(), CLASS_NAMES)
    sink.close()
    sink.close()
    with pytest.raises(SinkError, match="sink closed"):
        sink.write(make_packet(0))
