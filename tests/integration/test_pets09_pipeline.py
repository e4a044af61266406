"""The main job end to end: ``streamer run pipelines/pets09_people.yaml`` on the real clip.

YOLOv8n int8 (ONNX Runtime CPU) + ByteTrack over all 795 frames of PETS09-S2L1
(about a minute on 2 cores). The people below were checked by eye once, from crops of
their track over its whole life (one person per track, same clothes throughout); the
boxes are where that person is at the first and last frame checked.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import require_data

REPO = Path(__file__).resolve().parents[2]

# (first frame, box there, last frame, box there), xyxy in frame pixels (480x360).
PEOPLE = {
    "red jacket, white bag": (12, (464, 186, 477, 254), 373, (465, 170, 484, 226)),
    "black coat, walks left": (410, (359, 87, 375, 125), 764, (274, 114, 292, 159)),
    "black jacket, jeans": (463, (461, 198, 478, 276), 794, (402, 145, 424, 212)),
    "red-and-navy jacket": (572, (120, 215, 150, 298), 794, (275, 172, 301, 237)),
}


def iou(a: np.ndarray, b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_data("videos/pets09_s2l1_480x360.mp4")
    require_data("models/yolov8n_int8_dynamic.onnx")
    out = tmp_path_factory.mktemp("pets09") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "pipelines/pets09_people.yaml", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tracks(run_dir: Path) -> dict[int, dict[int, np.ndarray]]:
    by_id: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for line in (run_dir / "tracks.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for t in rec["tracks"]:
            by_id[t["track_id"]][rec["seq"]] = np.array(t["xyxy"])
    return by_id


@pytest.mark.slow
def test_all_frames_and_four_outputs(run_dir: Path) -> None:
    records = [json.loads(x) for x in (run_dir / "tracks.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(795))
    assert {r["source_id"] for r in records} == {"pets09"}
    with av.open(str(run_dir / "annotated.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert sum(1 for _ in c.decode(stream)) == 795
    mot = np.loadtxt(run_dir / "tracks_mot.txt", delimiter=",", ndmin=2)
    assert mot.shape[1] == 10 and mot[:, 0].min() >= 1 and mot[:, 0].max() <= 795
    n_tracks = sum(len(r["tracks"]) for r in records)
    assert len(mot) == n_tracks
    assert "pets09_people" in (run_dir / "config.resolved.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("person", sorted(PEOPLE))
def test_people_keep_one_track_id(tracks: dict[int, dict[int, np.ndarray]], person: str) -> None:
    first, first_box, last, last_box = PEOPLE[person]

    def id_at(seq: int, box: tuple[int, int, int, int]) -> int:
        best = max(
            ((iou(b[seq], box), tid) for tid, b in tracks.items() if seq in b), default=(0, -1)
        )
        assert best[0] > 0.5, f"{person}: no track on the person at frame {seq}"
        return best[1]

    tid = id_at(first, first_box)
    assert id_at(last, last_box) == tid, f"{person}: track id changed between {first} and {last}"
    seen = sum(1 for s in range(first, last + 1) if s in tracks[tid])
    assert seen >= 0.9 * (last - first + 1), f"{person}: tracked in {seen} frames only"


@pytest.mark.slow
def test_no_track_jumps_between_people(tracks: dict[int, dict[int, np.ndarray]]) -> None:
    # A swap between two people shows as a jump of the box centre; walkers move < 20 px/frame.
    for tid, boxes in tracks.items():
        seqs = sorted(boxes)
        for a, b in itertools.pairwise(seqs):
            ca = (boxes[a][:2] + boxes[a][2:]) / 2
            cb = (boxes[b][:2] + boxes[b][2:]) / 2
            speed = float(np.linalg.norm(cb - ca)) / (b - a)
            assert speed < 30, f"track {tid} jumps {speed:.0f} px/frame at frame {b}"
