"""Line counts and zone dwell on a real clip, against counts established by eye.

Clip: ``videos/one-by-one-person-detection.mp4`` (768x432, 10 fps, 1394 frames): a
room with a high table in front of a white wall and a concrete pillar right of it.
Six people come in one after another from below the camera (bottom edge of the
frame), walk to the table, stand at it, then walk out to the right past the pillar.
Never two people in view at once.

How the truth was established (by eye, not from any detector output):

1. Contact sheets of every 10th frame (0, 10, ..., 1390) show the six visits and the
   empty room between them: grey cardigan (frames ~65-195), black jacket (~230-445),
   long hair, black top (~505-695), black T-shirt, glasses (~745-865), dark hair,
   grey cardigan (~925-1195), grey shirt, jeans (~1235-1360).
2. With the line and the zone below drawn on the frames, strips of 16 consecutive
   frames around every arrival and departure were looked at (frames 66-81, 180-195,
   232-247, 432-447, 508-523, 682-697, 750-765, 850-865, 926-941, 1180-1195,
   1240-1255, 1342-1357) to read off the first and last frame the person's feet are
   inside the zone and the frame their feet pass the line.

Geometry (frame pixels):

* Line ``exit``: x = 600 from y = 432 up to y = 250, on the floor right of the
  pillar, drawn bottom to top so that walking to the right is *out*. Every person
  crosses it once, left to right, on the way out; nobody crosses it right to left
  (everyone comes in from the bottom edge, left of it). Truth: **out 6, in 0**,
  feet past the line at about frames 190, 441, 692, 860, 1190, 1351.
* Zone ``table``: the floor in front of the table, (380, 330)-(540, 425). Truth:
  six visits, one person at a time; first and last frame inside per person below
  (``VISITS``).

Why no entry line: people come in from below the camera, and the tracker first sees
them when they are already partly in the room (the 5th person's first box has its
top at y ~ 73), so no line near the bottom edge is crossed by a *track*. The zone's
``entered`` events count the arrivals instead.

The pipeline is the shipped ``pipelines/one_by_one_counting.yaml``, loaded and built
as ``streamer run`` does: video file -> preprocessing -> YOLOX-Nano (ONNX Runtime
CPU, 2 threads, class person, conf 0.3) -> ByteTrack (preset) -> analytics -> the
annotated video sink (drawing the line and zone) and the JSON-lines sink.
Tolerances: crossing frames +-5 frames (0.5 s, box centre vs. feet),
dwell +-1 s, arrival/leave frames +-10 frames.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import av
import pytest
from conftest import require_data

from streamer.analytics import AnalyticsSpec, LineSpec, ZoneSpec
from streamer.config.loader import load_pipeline
from streamer.pipeline.build import build_pipeline, make_analytics_specs
from streamer.pipeline.runner import RunResult

VIDEO = "videos/one-by-one-person-detection.mp4"
MODEL = "models/yolox_nano.onnx"
PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "one_by_one_counting.yaml"
N_FRAMES = 1394
FPS = 10.0

EXIT_LINE = LineSpec("exit", start_px=(600, 432), end_px=(600, 250), classes=("person",))
TABLE_ZONE = ZoneSpec(
    "table", polygon_px=((380, 330), (540, 330), (540, 425), (380, 425)), classes=("person",)
)
SPEC = AnalyticsSpec(lines=(EXIT_LINE,), zones=(TABLE_ZONE,))

# By eye: the frame each person's feet pass x = 600, left to right.
EXIT_CROSSINGS = [190, 441, 692, 860, 1190, 1351]
# By eye: (first frame, last frame) each person's feet are inside the table zone.
VISITS = [(72, 188), (236, 440), (514, 690), (758, 858), (934, 1189), (1249, 1350)]
# By eye: frames with nobody in the zone (empty room, or walking in/out), and with one.
EMPTY_FRAMES = [0, 30, 60, 200, 220, 460, 490, 700, 730, 880, 910, 1210, 1230, 1370, 1393]
OCCUPIED_FRAMES = [100, 150, 300, 400, 600, 650, 800, 830, 1000, 1100, 1280, 1330]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, list[dict[str, Any]], Path]:
    require_data(VIDEO)
    require_data(MODEL)
    out = tmp_path_factory.mktemp("onebyone")
    cfg = load_pipeline(PIPELINE)
    # The shipped YAML holds the geometry this test's truth was established for.
    specs = make_analytics_specs(cfg)
    assert specs == {"onebyone": SPEC}
    t0 = time.monotonic()
    result = build_pipeline(cfg, out).pipeline.run()
    print(f"\npipeline: {result.packets_out} frames in {time.monotonic() - t0:.1f} s")
    records = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    return result, records, out


@pytest.mark.slow
def test_every_frame_has_analytics(run: tuple[RunResult, list[dict[str, Any]], Path]) -> None:
    result, records, out = run
    assert result.ok, result.errors
    assert [r["seq"] for r in records] == list(range(N_FRAMES))
    assert all(set(r["analytics"]) == {"lines", "zones"} for r in records)
    with av.open(str(out / "annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == N_FRAMES


@pytest.mark.slow
def test_exit_line_counts_six_out_none_in(
    run: tuple[RunResult, list[dict[str, Any]], Path],
) -> None:
    _, records, _ = run
    final = records[-1]["analytics"]["lines"]["exit"]
    print(f"exit line: in {final['in']}, out {final['out']}")
    assert (final["in"], final["out"]) == (0, 6)
    assert final["out_by_class"] == {"person": 6}
    crossings = [
        (r["seq"], c["track_id"], c["direction"])
        for r in records
        for c in r["analytics"]["lines"]["exit"]["crossed"]
    ]
    print(f"exit crossings (frame, track, direction): {crossings}")
    assert [d for _, _, d in crossings] == ["out"] * 6
    assert len({t for _, t, _ in crossings}) == 6  # six different people
    for (seq, _, _), eye in zip(crossings, EXIT_CROSSINGS, strict=True):
        assert abs(seq - eye) <= 5, f"crossing at frame {seq}, by eye at {eye}"


@pytest.mark.slow
def test_table_zone_visits_and_dwell(run: tuple[RunResult, list[dict[str, Any]], Path]) -> None:
    _, records, _ = run
    zone = [r["analytics"]["zones"]["table"] for r in records]
    entered = [(seq, e["track_id"]) for seq, z in enumerate(zone) for e in z["entered"]]
    left = [(seq, e["track_id"], e["dwell_s"]) for seq, z in enumerate(zone) for e in z["left"]]
    print(f"table entered (frame, track): {entered}")
    print(f"table left (frame, track, dwell_s): {left}")
    assert len(entered) == len(left) == len(VISITS)
    grace_frames = round(TABLE_ZONE.exit_grace_s * FPS)
    for (e_seq, e_tid), (l_seq, l_tid, dwell_s), (first, last) in zip(
        entered, left, VISITS, strict=True
    ):
        assert e_tid == l_tid
        assert abs(e_seq - first) <= 10, f"entered at {e_seq}, by eye at {first}"
        # The event comes exit_grace_s after the last frame inside.
        assert abs(l_seq - grace_frames - 1 - last) <= 10, f"left at {l_seq}, by eye at {last}"
        eye_dwell_s = (last - first) / FPS
        assert abs(dwell_s - eye_dwell_s) <= 1.0, f"dwell {dwell_s} s, by eye {eye_dwell_s} s"
    assert max(z["count"] for z in zone) == 1  # one person at a time
    assert [zone[i]["count"] for i in EMPTY_FRAMES] == [0] * len(EMPTY_FRAMES)
    assert [zone[i]["count"] for i in OCCUPIED_FRAMES] == [1] * len(OCCUPIED_FRAMES)
    assert all(zone[i]["count_by_class"] == {"person": 1} for i in OCCUPIED_FRAMES)
