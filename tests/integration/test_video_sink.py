"""AnnotatedVideoSink on real PETS frames: decodable H.264 that browsers play, right timing,
and a file that survives the writer being killed or interrupted mid-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import restore_sigint

from streamer.data import data_path
from streamer.sinks import AnnotatedVideoSink
from streamer.types import Detections, Frame, Packet, StreamInfo, Tracks

VIDEO = "videos/pets09_s2l1_480x360.mp4"
FPS = 10.0
N_FRAMES = 40  # 4 s of video: 4 keyframes / fragments
REPO_ROOT = Path(__file__).resolve().parents[2]


def _video_path() -> Path:
    path = data_path(VIDEO)
    if not path.is_file():
        pytest.skip(f"shared data not found: {path} (set STREAMER_DATA)")
    return path


@pytest.fixture(scope="module")
def pets_frames() -> list[np.ndarray]:
    """The first N_FRAMES frames of the PETS clip, ``(360, 480, 3) uint8`` BGR."""
    frames: list[np.ndarray] = []
    with av.open(str(_video_path())) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == N_FRAMES:
                break
    return frames


def fake_tracks(seq: int, n: int = 6) -> Tracks:
    """Valid tracks that move a few pixels per frame (deterministic)."""
    k = np.arange(n)
    x = 30.0 + 70.0 * k + 3.0 * seq
    y = 60.0 + 25.0 * k + 1.5 * seq
    xyxy = np.stack([x, y, x + 40.0, y + 90.0], axis=1)
    return Tracks(
        xyxy=xyxy.astype(np.float32),
        confidence=np.full(n, 0.8, np.float32),
        class_id=np.zeros(n, np.int32),
        track_id=k + 1,
        det_index=k.astype(np.int32),
    )


def packet(source_id: str, seq: int, image: np.ndarray, **kwargs: object) -> Packet:
    frame = Frame(source_id, seq, int(seq * 1e9 / FPS), 0, image, 0)
    return Packet(frame, **kwargs)  # type: ignore[arg-type]


def probe(path: Path) -> dict[str, object]:
    """Decode the whole file with PyAV; return codec, pix_fmt, size, frames, pts and duration."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts_s = [float(f.pts * f.time_base) for f in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.width, stream.height),
            "frames": len(pts_s),
            "pts_s": pts_s,
            "duration_s": container.duration / 1e6 if container.duration else None,
        }


def test_real_frames_encode_to_browser_playable_h264(
    tmp_path: Path, pets_frames: list[np.ndarray]
) -> None:
    sink = AnnotatedVideoSink(tmp_path / "{source_id}.mp4")
    sink.open(StreamInfo("pets", FPS, 480, 360), ["person"])
    for seq, image in enumerate(pets_frames):
        sink.write(packet("pets", seq, image, tracks=fake_tracks(seq)))
    sink.close()

    info = probe(tmp_path / "pets.mp4")
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["size"] == (480, 360)
    assert info["frames"] == N_FRAMES
    assert info["duration_s"] == pytest.approx(N_FRAMES / FPS, abs=0.5 / FPS)
    assert info["pts_s"] == pytest.approx([i / FPS for i in range(N_FRAMES)], abs=1e-6)


def test_annotations_are_drawn_and_input_is_not_modified(
    tmp_path: Path, pets_frames: list[np.ndarray]
) -> None:
    image = pets_frames[0]
    before = image.copy()
    tracks = fake_tracks(0, n=1)
    dets = Detections(tracks.xyxy, tracks.confidence, tracks.class_id)
    sink = AnnotatedVideoSink(tmp_path / "{source_id}.mp4", crf=10)
    sink.open(StreamInfo("t", FPS, 480, 360), ["person"])
    sink.open(StreamInfo("d", FPS, 480, 360), ["person"])
    sink.open(StreamInfo("raw", FPS, 480, 360), ["person"])
    sink.write(packet("t", 0, image, tracks=tracks))
    sink.write(packet("d", 0, image, detections=dets))  # detector-only pipeline
    sink.write(packet("raw", 0, image))
    sink.close()
    np.testing.assert_array_equal(image, before)

    x1, y1, _, y2 = tracks.xyxy[0].astype(int)
    for source_id, drawn in [("t", True), ("d", True), ("raw", False)]:
        with av.open(str(tmp_path / f"{source_id}.mp4")) as container:
            decoded = next(container.decode(video=0)).to_ndarray(format="bgr24")
        edge = np.abs(decoded[y1 : y2 + 1, x1].astype(int) - before[y1 : y2 + 1, x1]).mean()
        assert (edge > 25) == drawn, (source_id, edge)


def test_odd_frame_size_is_padded_to_even(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sink = AnnotatedVideoSink(tmp_path / "odd.mp4")
    sink.open(StreamInfo("odd", 25.0, 101, 75), ["person"])
    for seq in range(5):
        image = rng.integers(0, 255, (75, 101, 3), dtype=np.uint8)
        sink.write(packet("odd", seq, image, tracks=fake_tracks(seq, n=1)))
    sink.close()
    info = probe(tmp_path / "odd.mp4")
    assert (info["codec"], info["pix_fmt"], info["size"]) == ("h264", "yuv420p", (102, 76))
    assert info["frames"] == 5


def test_frame_size_comes_from_the_frames_when_info_is_wrong(tmp_path: Path) -> None:
    sink = AnnotatedVideoSink(tmp_path / "v.mp4")
    sink.open(StreamInfo("s", FPS, 0, 0), [])  # size unknown at open
    for seq in range(3):
        sink.write(packet("s", seq, np.zeros((48, 64, 3), np.uint8)))
    sink.write(packet("s", 3, np.zeros((96, 128, 3), np.uint8)))  # resized to 64x48
    sink.close()
    info = probe(tmp_path / "v.mp4")
    assert info["size"] == (64, 48) and info["frames"] == 4


def test_missing_frames_keep_their_place_in_time(tmp_path: Path) -> None:
    """pts come from seq: frames dropped upstream leave a gap, duration stays right."""
    seqs = [100, 101, 102, 105, 106, 110]  # a sink opened mid-stream, with drops
    sink = AnnotatedVideoSink(tmp_path / "gap.mp4")
    sink.open(StreamInfo("g", FPS, 64, 48), [])
    for seq in seqs:
        sink.write(packet("g", seq, np.zeros((48, 64, 3), np.uint8), tracks=fake_tracks(seq, 1)))
    sink.close()
    info = probe(tmp_path / "gap.mp4")
    assert info["pts_s"] == pytest.approx([(s - 100) / FPS for s in seqs], abs=1e-6)
    assert info["duration_s"] == pytest.approx(11 / FPS, abs=0.5 / FPS)


def test_two_sources_write_two_files(tmp_path: Path, pets_frames: list[np.ndarray]) -> None:
    sink = AnnotatedVideoSink(tmp_path / "{source_id}.mp4")
    sink.open(StreamInfo("a", FPS, 480, 360), ["person"])
    sink.open(StreamInfo("b", 25.0, 480, 360), ["person"])
    for seq in range(10):
        sink.write(packet("a", seq, pets_frames[seq], tracks=fake_tracks(seq)))
        if seq % 2 == 0:
            sink.write(packet("b", seq // 2, pets_frames[seq], tracks=fake_tracks(seq)))
    sink.close()
    assert sink.frames_written() == {"a": 10, "b": 5}
    assert probe(tmp_path / "a.mp4")["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert probe(tmp_path / "b.mp4")["duration_s"] == pytest.approx(0.2, abs=0.02)


def test_zero_packets_leave_no_file(tmp_path: Path) -> None:
    sink = AnnotatedVideoSink(tmp_path / "{source_id}.mp4")
    sink.open(StreamInfo("a", FPS, 480, 360), ["person"])
    sink.close()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------ crash / interrupt safety

_CHILD = textwrap.dedent(
    """
    import sys, time
    import av
    from streamer.sinks import AnnotatedVideoSink
    from streamer.types import Frame, Packet, StreamInfo, Tracks
    import numpy as np

    video, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # threads fixed: x264's frame threads add to its delay, and "auto" depends on the machine
    sink = AnnotatedVideoSink(out, keyframe_interval_s=1.0, threads=2)
    sink.open(StreamInfo("pets", 10.0, 480, 360), ["person"])
    try:
        with av.open(video) as container:
            for seq, f in enumerate(container.decode(video=0)):
                if seq == n:
                    break
                box = np.array([[10 + seq, 20, 60 + seq, 120]], np.float32)
                tracks = Tracks(box, np.array([0.9], np.float32), np.array([0], np.int32),
                                np.array([1], np.int64), np.array([0], np.int32))
                frame = Frame("pets", seq, seq * 100_000_000, 0, f.to_ndarray(format="bgr24"))
                sink.write(Packet(frame, tracks=tracks))
        print("ready", flush=True)
        time.sleep(60)  # killed or interrupted here, mid-stream
    finally:
        sink.close()  # runs on Ctrl-C (KeyboardInterrupt), not on SIGKILL
    """
)


def _run_child_until_ready(tmp_path: Path, n: int) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "crash.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(_video_path()), str(out), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        preexec_fn=restore_sigint,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the child wrote n frames (or died)
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"child did not get ready: {line!r} {err}")
    return proc, out


def test_mp4_stays_decodable_after_sigkill(tmp_path: Path) -> None:
    n = 45
    proc, out = _run_child_until_ready(tmp_path, n)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    info = probe(out)  # decodes without error although the muxer never finished
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    # Lost: at most the open fragment (1 s = 10 frames) plus the encoder's delay
    # (rc-lookahead 10 of preset veryfast + threads - 1).
    frames = info["frames"]
    assert isinstance(frames, int)
    assert n - 25 <= frames < n
    assert info["pts_s"] == pytest.approx([i / FPS for i in range(frames)], abs=1e-6)


def test_mp4_is_complete_after_ctrl_c(tmp_path: Path) -> None:
    n = 25
    proc, out = _run_child_until_ready(tmp_path, n)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    info = probe(out)
    assert info["frames"] == n
    assert info["duration_s"] == pytest.approx(n / FPS, abs=0.5 / FPS)
