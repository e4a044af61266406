"""Bounded channel: capacity, overflow policies, close/break semantics, timeouts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import ChannelBroken, ChannelClosed
from streamer.pipeline.channel import Channel
from streamer.types import Frame, Packet, StreamEnd, StreamInfo, StreamStart

NO_STOP = threading.Event()


def packet(seq: int, source_id: str = "cam") -> Packet:
    img = np.zeros((2, 2, 3), np.uint8)
    return Packet(Frame(source_id, seq, seq * 1000, time.monotonic_ns(), img))


def start(source_id: str = "cam") -> StreamStart:
    return StreamStart(StreamInfo(source_id, 10.0, 2, 2))


@pytest.mark.parametrize(
    ("capacity", "policy", "error"),
    [
        (1, "block", None),
        (0, "block", "capacity must be >= 1"),
        (4, "newest", "policy must be one of"),
    ],
)
def test_constructor_validates(capacity: int, policy: str, error: str | None) -> None:
    if error is None:
        Channel("x", capacity, policy)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=error):
            Channel("x", capacity, policy)  # type: ignore[arg-type]


def test_fifo_then_closed_after_drain() -> None:
    ch = Channel("a -> b", 4)
    for i in range(3):
        assert ch.put(packet(i), NO_STOP)
    ch.close()
    got = [ch.get(0.1) for _ in range(3)]
    assert [p.seq for p in got] == [0, 1, 2]  # type: ignore[union-attr]
    with pytest.raises(ChannelClosed):
        ch.get(0.1)


def test_get_times_out_with_none() -> None:
    ch = Channel("a -> b", 2)
    t0 = time.monotonic()
    assert ch.get(0.05) is None
    assert time.monotonic() - t0 < 1.0


def test_block_put_waits_for_room_and_honours_stop() -> None:
    ch = Channel("a -> b", 1)
    assert ch.put(packet(0), NO_STOP)
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    t0 = time.monotonic()
    assert ch.put(packet(1), stop, poll_s=0.02) is False  # gave up when stop was set
    assert 0.05 < time.monotonic() - t0 < 1.0
    assert len(ch) == 1


def test_block_put_resumes_when_consumer_takes() -> None:
    ch = Channel("a -> b", 1)
    ch.put(packet(0), NO_STOP)
    threading.Timer(0.05, lambda: ch.get(0.1)).start()
    assert ch.put(packet(1), NO_STOP, poll_s=0.01)
    assert ch.stats().peak_depth == 1


def test_break_fails_blocked_producer_at_once() -> None:
    ch = Channel("a -> b", 1)
    ch.put(packet(0), NO_STOP)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            ch.put(packet(1), NO_STOP, poll_s=5.0)
        except ChannelBroken as e:
            errors.append(e)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    ch.break_()
    t.join(2.0)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 0.5
    assert len(errors) == 1 and "consumer has stopped" in str(errors[0])


def test_drop_oldest_keeps_newest_and_counts_per_source() -> None:
    ch = Channel("cam -> detect", 3, "drop_oldest")
    for i in range(10):
        assert ch.put(packet(i, "cam1" if i % 2 else "cam0"), NO_STOP)
    assert [ch.get(0.1).seq for _ in range(3)] == [7, 8, 9]  # type: ignore[union-attr]
    stats = ch.stats()
    assert stats.total_drops == 7
    assert stats.drops == {"cam0": 4, "cam1": 3}


def test_drop_oldest_never_drops_events() -> None:
    ch = Channel("cam -> detect", 2, "drop_oldest")
    ch.put(start(), NO_STOP)
    ch.put(packet(0), NO_STOP)
    ch.put(packet(1), NO_STOP)  # drops packet 0, keeps the event
    ch.put(packet(2), NO_STOP)  # drops packet 1
    assert isinstance(ch.get(0.1), StreamStart)
    assert ch.get(0.1).seq == 2  # type: ignore[union-attr]


def test_get_batch_stops_at_event_and_keeps_order() -> None:
    ch = Channel("a -> b", 8)
    for i in range(3):
        ch.put(packet(i), NO_STOP)
    ch.put(StreamEnd("cam", 3), NO_STOP)
    ch.put(packet(3), NO_STOP)
    batch = ch.get_batch(8, max_wait_s=0.01, timeout_s=0.1)
    assert [p.seq for p in batch] == [0, 1, 2]  # type: ignore[union-attr]
    assert ch.get_batch(8, 0.01, 0.1) == [StreamEnd("cam", 3)]
    assert [p.seq for p in ch.get_batch(8, 0.01, 0.1)] == [3]  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 6),
    policy=st.sampled_from(["block", "drop_oldest"]),
    ops=st.lists(st.sampled_from(["put", "put_event", "get"]), max_size=60),
)
def test_never_exceeds_capacity_and_loses_no_event(
    capacity: int, policy: str, ops: list[str]
) -> None:
    ch = Channel("x", capacity, policy)  # type: ignore[arg-type]
    stop = threading.Event()
    stop.set()  # a put that would block gives up at once
    events_in = events_out = seq = 0
    queued_events = 0
    for op in ops:
        if op == "get":
            item = ch.get(0.0)
            if isinstance(item, StreamEnd):
                events_out += 1
                queued_events -= 1
        elif op == "put_event":
            if ch.put(StreamEnd("cam", seq), stop):
                events_in += 1
                queued_events += 1
        else:
            seq += 1
            ch.put(packet(seq), stop)
        assert len(ch) <= capacity
        assert ch.stats().peak_depth <= capacity
    ch.close()
    while True:
        try:
            item = ch.get(0.0)
        except ChannelClosed:
            break
        if isinstance(item, StreamEnd):
            events_out += 1
    assert events_out == events_in
