"""Pipeline runner: ordering, drain on end, failure propagation and timing, stop."""

from __future__ import annotations

import threading
import time

import pytest

from streamer.pipeline.runner import EdgeSpec, Pipeline
from streamer.pipeline.stage import BaseStage
from streamer.sources.synthetic import SyntheticSource
from streamer.types import Event, Packet, StreamEnd, StreamStart


class Recorder(BaseStage):
    """Records what reaches it (a real terminal stage, like a sink)."""

    def __init__(self, name: str = "record", delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.seen: list[tuple[str, int]] = []
        self.events: list[Event] = []
        self.closed = 0

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def process(self, packets: list[Packet]) -> list[Packet]:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.seen.extend((p.source_id, p.seq) for p in packets)
        return packets

    def close(self) -> None:
        self.closed += 1


class Fails(BaseStage):
    def __init__(self, at_seq: int, name: str = "boom") -> None:
        self.name = name
        self.at_seq = at_seq
        self.closed = 0

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            if p.seq == self.at_seq:
                raise ValueError("bad value in frame")
        return packets

    def close(self) -> None:
        self.closed += 1


class Batcher(BaseStage):
    def __init__(self) -> None:
        self.name = "batch"
        self.max_batch = 4
        self.max_wait_ms = 50.0
        self.sizes: list[int] = []

    def process(self, packets: list[Packet]) -> list[Packet]:
        self.sizes.append(len(packets))
        return packets


def test_all_frames_flow_in_order_and_stages_close() -> None:
    rec = Recorder()
    src = SyntheticSource("cam", frames=50)
    result = Pipeline([src], [Recorder("first"), rec], [EdgeSpec(2), EdgeSpec(2)]).run()
    assert result.ok, result.errors
    assert rec.seen == [("cam", i) for i in range(50)]
    assert isinstance(rec.events[0], StreamStart)
    assert rec.events[-1] == StreamEnd("cam", 50, None)
    assert rec.closed == 1 and src.closed
    assert result.frames == {"cam": 50} and result.packets_out == 50
    assert all(c.peak_depth <= 2 for c in result.channel_stats)
    assert result.latency_ms.count == 50


def test_two_sources_keep_per_source_order() -> None:
    rec = Recorder()
    srcs = [SyntheticSource("a", frames=30), SyntheticSource("b", frames=20)]
    result = Pipeline(srcs, [rec]).run()
    assert result.ok
    for sid, n in (("a", 30), ("b", 20)):
        assert [s for i, s in rec.seen if i == sid] == list(range(n))
    ends = [e for e in rec.events if isinstance(e, StreamEnd)]
    assert sorted(e.source_id for e in ends) == ["a", "b"]


def test_batching_groups_packets_but_not_across_events() -> None:
    b = Batcher()
    result = Pipeline([SyntheticSource("cam", frames=40)], [b], [EdgeSpec(8)]).run()
    assert result.ok
    assert sum(b.sizes) == 40
    assert max(b.sizes) <= 4
    assert result.stage_stats[0].batches == len(b.sizes)


def test_stage_error_stops_pipeline_fast_and_names_stage_source_frame() -> None:
    # An endless-looking source: the failure must stop it.
    rec = Recorder()
    fails = Fails(at_seq=5)
    src = SyntheticSource("cam7", frames=10**9)
    t0 = time.monotonic()
    result = Pipeline([src], [Recorder("pre"), fails, rec]).run()
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    assert not result.ok
    assert result.errors == ["stage 'boom', source 'cam7', frame 5: ValueError: bad value in frame"]
    # Everything before the failure was passed on and the downstream stage was closed.
    assert rec.seen == [("cam7", i) for i in range(5)]
    assert rec.closed == 1 and fails.closed == 1 and src.closed


def test_error_in_last_stage_unblocks_upstream_producers() -> None:
    src = SyntheticSource("cam", frames=10**9)
    slow_upstream = Recorder("up")
    t0 = time.monotonic()
    result = Pipeline([src], [slow_upstream, Fails(at_seq=0)], [EdgeSpec(1), EdgeSpec(1)]).run()
    assert time.monotonic() - t0 < 2.0
    assert result.errors and "stage 'boom'" in result.errors[0]


def test_source_error_keeps_frames_before_it_and_reports() -> None:
    rec = Recorder()
    result = Pipeline([SyntheticSource("cam", frames=20, fail_at=7)], [rec]).run()
    assert rec.seen == [("cam", i) for i in range(7)]
    assert result.errors == ["source 'cam': synthetic failure at frame 7"]
    end = rec.events[-1]
    assert isinstance(end, StreamEnd) and end.frames == 7 and "frame 7" in (end.error or "")
    assert rec.closed == 1


def test_one_failing_source_does_not_stop_the_other() -> None:
    rec = Recorder()
    srcs = [SyntheticSource("bad", frames=20, fail_at=3), SyntheticSource("good", frames=40)]
    result = Pipeline(srcs, [rec]).run()
    assert [s for i, s in rec.seen if i == "good"] == list(range(40))
    assert len(result.errors) == 1 and "bad" in result.errors[0]


def test_request_stop_drains_what_was_read() -> None:
    rec = Recorder(delay_s=0.005)
    src = SyntheticSource("cam", frames=10**9)
    pipe = Pipeline([src], [rec], [EdgeSpec(4)])
    threading.Timer(0.2, pipe.request_stop).start()
    result = pipe.run()
    assert result.ok  # a requested stop is not an error
    assert result.frames["cam"] == len(rec.seen) > 0  # nothing read was lost
    assert rec.closed == 1


def test_hard_stop_returns_quickly_with_slow_stage() -> None:
    rec = Recorder(delay_s=0.05)
    pipe = Pipeline([SyntheticSource("cam", frames=10**9)], [rec], [EdgeSpec(64)])
    threading.Timer(0.2, lambda: pipe.request_stop(hard=True)).start()
    t0 = time.monotonic()
    pipe.run()
    assert time.monotonic() - t0 < 2.0
    assert rec.closed == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sources": [], "stages": [Recorder()]}, "at least one source"),
        ({"sources": [SyntheticSource("a")], "stages": []}, "at least one stage"),
        (
            {"sources": [SyntheticSource("a"), SyntheticSource("a")], "stages": [Recorder()]},
            "source ids must be unique",
        ),
        (
            {"sources": [SyntheticSource("a")], "stages": [Recorder("x"), Recorder("x")]},
            "stage names must be unique",
        ),
    ],
)
def test_pipeline_validates_its_graph(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Pipeline(**kwargs)


class FailsOnStart(BaseStage):
    name = "sink"

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamStart):
            raise OSError("disk full")

    def process(self, packets: list[Packet]) -> list[Packet]:
        return packets


def test_error_while_handling_an_event_names_stage_and_source() -> None:
    t0 = time.monotonic()
    result = Pipeline([SyntheticSource("cam", frames=10**9)], [FailsOnStart()]).run()
    assert time.monotonic() - t0 < 2.0
    assert result.errors == ["stage 'sink', source 'cam': on StreamStart: OSError: disk full"]
