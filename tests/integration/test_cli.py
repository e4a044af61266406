"""The ``streamer`` command on real files: outputs, bad input, Ctrl-C.

Every bad input must give a one-line error, a non-zero exit status, no traceback and
no hang; a truncated video must still have its first frames processed and written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import yaml
from conftest import make_tiny_onnx, require_data, restore_sigint

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def streamer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd or REPO,
    )


def write_pipeline(tmp_path: Path, video: Path, model: Path, **detect: object) -> Path:
    cfg = {
        "name": "t",
        "sources": [{"type": "video_file", "id": "cam", "path": str(video)}],
        "stages": [
            {"type": "detect", "model": str(model), "classes": ["person"], **detect},
            {"type": "track", "preset": "bytetrack"},
            {"type": "annotated_video"},
            {"type": "jsonl"},
            {"type": "mot"},
        ],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def decoded_frames(mp4: Path) -> int:
    with av.open(str(mp4)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture
def yolox() -> Path:
    return require_data("models/yolox_nano.onnx")


@pytest.fixture
def pets() -> Path:
    return require_data("videos/pets09_s2l1_480x360.mp4")


def test_validate_prints_resolved_config() -> None:
    require_data("models/yolov8n_int8_dynamic.onnx")
    proc = streamer("validate", "pipelines/pets09_people.yaml")
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["name"] == "pets09_people"
    assert resolved["stages"][0]["model"].endswith("yolov8n_int8_dynamic.onnx")
    assert resolved["stages"][1]["tracker"]["lost_track_buffer_s"] > 0
    assert "source 'pets09': 480x360 at 10 fps, 795 frames" in proc.stderr
    assert "layout ultralytics, input (640, 640), 80 classes" in proc.stderr


def test_validate_checks_inputs_unless_config_only(tmp_path: Path, yolox: Path) -> None:
    p = write_pipeline(tmp_path, tmp_path / "nope.mp4", yolox)
    assert_one_line_error(streamer("validate", str(p)), "nope.mp4", "not found")
    assert streamer("validate", "--config-only", str(p)).returncode == 0


def test_missing_video(tmp_path: Path, yolox: Path) -> None:
    p = write_pipeline(tmp_path, tmp_path / "nope.mp4", yolox)
    assert_one_line_error(
        streamer("run", str(p), "-o", str(tmp_path / "out")),
        "source 'cam'",
        "nope.mp4",
        "not found",
    )


def test_file_that_is_not_a_video(tmp_path: Path, yolox: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are not frames\n" * 100)
    p = write_pipeline(tmp_path, fake, yolox)
    assert_one_line_error(
        streamer("run", str(p), "-o", str(tmp_path / "out")),
        "notes.mp4",
        "not a readable video file",
    )


def test_missing_model(tmp_path: Path, pets: Path) -> None:
    p = write_pipeline(tmp_path, pets, tmp_path / "missing.onnx")
    proc = streamer("run", str(p), "-o", str(tmp_path / "out"))
    assert_one_line_error(proc, "missing.onnx")


def test_unknown_model_output_layout(tmp_path: Path, pets: Path) -> None:
    model = make_tiny_onnx(tmp_path / "odd.onnx", (1, 7, 7))
    p = write_pipeline(tmp_path, pets, model)
    assert_one_line_error(streamer("run", str(p), "-o", str(tmp_path / "out")), "[1, 7, 7]")


def test_invalid_yaml_names_the_field(tmp_path: Path, pets: Path, yolox: Path) -> None:
    p = write_pipeline(tmp_path, pets, yolox, conf_threshold=2.0)
    proc = streamer("run", str(p))
    assert proc.returncode == 2
    assert_one_line_error(proc, "stages[0].conf_threshold", "got 2.0")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nstages: [ {type: detect\n")
    assert_one_line_error(streamer("validate", str(broken)), "broken.yaml", "invalid YAML")


def test_truncated_video_keeps_frames_before_the_damage(
    tmp_path: Path, pets: Path, yolox: Path
) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(pets.read_bytes()[:1_700_000])  # the moov atom is at the start
    p = write_pipeline(tmp_path, cut, yolox)
    out = tmp_path / "out"
    proc = streamer("run", str(p), "-o", str(out), "--no-progress")
    line = assert_one_line_error(proc, "cut.mp4", "truncated")
    assert proc.returncode == 1
    records = (out / "tracks.jsonl").read_text().splitlines()
    n = len(records)
    assert f"stream ended at frame {n} of 795" in line
    assert 300 < n < 795
    assert decoded_frames(out / "annotated.mp4") == n
    assert json.loads(records[-1])["seq"] == n - 1
    mot_frames = {int(r.split(",")[0]) for r in (out / "tracks_mot.txt").read_text().splitlines()}
    assert max(mot_frames) <= n


def test_yolox_pipeline_writes_all_outputs(tmp_path: Path, pets: Path, yolox: Path) -> None:
    out = tmp_path / "out"
    proc = streamer("run", "pipelines/pets09_yolox.yaml", "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for name in ("annotated.mp4", "tracks.jsonl", "tracks_mot.txt", "config.resolved.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert decoded_frames(out / "annotated.mp4") == 795
    records = [json.loads(x) for x in (out / "tracks.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(795))
    assert records[10]["pts_s"] == pytest.approx(1.0)  # 10 fps file
    assert all(t["class_name"] == "person" for r in records for t in r["tracks"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets_out"] == 795 and summary["errors"] == []
    assert [s["name"] for s in summary["stages"]] == [
        "preprocess",
        "detect",
        "track",
        "annotated_video",
        "jsonl",
        "mot",
    ]
    assert "run summary" in proc.stderr and "p95" in proc.stderr


def test_ctrl_c_flushes_and_closes_outputs(tmp_path: Path, pets: Path, yolox: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer",
            "run",
            "pipelines/pets09_yolox.yaml",
            "-o",
            str(out),
            "--no-progress",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=restore_sigint,
    )
    jsonl = out / "tracks.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until frames are flowing
        if jsonl.exists() and jsonl.stat().st_size > 20_000:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    n = len(jsonl.read_text().splitlines())
    assert 0 < n < 795
    # Every frame that reached the sinks is in the MP4, and the file plays to its end.
    assert decoded_frames(out / "annotated.mp4") == n
