"""Pipeline YAML: schema errors name the YAML path and value; substitutions; presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamer.config.loader import dump_resolved, load_pipeline
from streamer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """
name: demo
sources:
  - {type: video_file, id: cam, path: clip.mp4}
stages:
  - {type: detect, model: model.onnx}
  - {type: track, preset: bytetrack}
  - {type: jsonl}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_minimal_pipeline_resolves_defaults_presets_and_paths(tmp_path: Path) -> None:
    cfg = load_pipeline(write(tmp_path, BASE))
    assert cfg.sources[0].path == tmp_path / "clip.mp4"
    det = cfg.stages[0]
    assert det.type == "detect" and det.model == tmp_path / "model.onnx"
    assert det.conf_threshold == 0.25 and det.providers == ["CPUExecutionProvider"]
    track = cfg.stages[1]
    assert track.type == "track" and track.tracker.type == "bytetrack"
    # The repository preset supplies the thresholds.
    preset = yaml.safe_load((REPO / "configs/trackers/bytetrack.yaml").read_text())
    assert track.tracker.high_threshold == preset["tracker"]["high_threshold"]
    dumped = yaml.safe_load(dump_resolved(cfg))
    assert (
        dumped["stages"][1]["tracker"]["lost_track_buffer_s"] == track.tracker.lost_track_buffer_s
    )
    assert dumped["queue"] == {"capacity": 4, "policy": "block"}


def test_tracker_type_selects_the_algorithm(tmp_path: Path) -> None:
    text = BASE.replace(
        "{type: track, preset: bytetrack}", "{type: track, tracker: {type: sort, min_hits: 1}}"
    )
    tracker = load_pipeline(write(tmp_path, text)).stages[1].tracker
    assert tracker.type == "sort" and tracker.min_hits == 1 and tracker.iou_threshold == 0.3


def test_pipeline_overrides_preset_values(tmp_path: Path) -> None:
    text = BASE.replace(
        "{type: track, preset: bytetrack}",
        "{type: track, preset: bytetrack, tracker: {lost_track_buffer_s: 7.5}}",
    )
    cfg = load_pipeline(write(tmp_path, text))
    preset = yaml.safe_load((REPO / "configs/trackers/bytetrack.yaml").read_text())
    assert cfg.stages[1].tracker.lost_track_buffer_s == 7.5
    assert cfg.stages[1].tracker.high_threshold == preset["tracker"]["high_threshold"]


def test_env_and_data_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIP_DIR", "/videos")
    monkeypatch.setenv("STREAMER_DATA", "/data-root")
    text = BASE.replace("path: clip.mp4", "path: '${env:CLIP_DIR}/c.mp4'").replace(
        "model: model.onnx", "model: '${data:models/m.onnx}'"
    )
    cfg = load_pipeline(write(tmp_path, text))
    assert cfg.sources[0].path == Path("/videos/c.mp4")
    assert cfg.stages[0].model == Path("/data-root/models/m.onnx")
    text = BASE.replace("path: clip.mp4", "path: '${env:NOPE_UNSET:-fallback.mp4}'")
    assert load_pipeline(write(tmp_path, text)).sources[0].path.name == "fallback.mp4"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{type: detect, model: model.onnx}",
            "{type: detect, model: model.onnx, iou_threshold: 1.5}",
            "stages[0].iou_threshold: Input should be less than or equal to 1, got 1.5",
        ),
        (
            "{type: detect, model: model.onnx}",
            "{type: detect, model: model.onnx, conf: 0.3}",
            "stages[0].conf: Extra inputs are not permitted, got 0.3",
        ),
        (
            "{type: jsonl}",
            "{type: webhook}",
            "stages[2]: Input tag 'webhook' found using 'type' does not match any of the "
            "expected tags",
        ),
        (
            "{type: track, preset: bytetrack}",
            "{type: track, preset: bytetrack, tracker: {low_threshold: 0.9, high_threshold: 0.5}}",
            "stages[1].tracker: low_threshold (0.9) must be below high_threshold (0.5)",
        ),
        (
            "{type: track, preset: bytetrack}",
            "{type: track, tracker: {type: deepsort}}",
            "stages[1].tracker: Input tag 'deepsort' found using 'type' does not match any of "
            "the expected tags: 'bytetrack', 'sort', 'ocsort'",
        ),
        (
            "{type: track, preset: bytetrack}",
            "{type: track, tracker: {type: sort, high_threshold: 0.5}}",
            "stages[1].tracker.high_threshold: Extra inputs are not permitted, got 0.5",
        ),
        ("name: demo", "name: 'has space'", "name: String should match pattern"),
        ("  - {type: video_file, id: cam, path: clip.mp4}", "  []", "sources: List should have"),
        (
            "{type: track, preset: bytetrack}",
            "{type: track, preset: nosuch}",
            "stages[1].preset: unknown preset 'nosuch'",
        ),
        (
            "path: clip.mp4",
            "path: '${env:STREAMER_TEST_UNSET_VAR}'",
            "sources[0].path: environment variable STREAMER_TEST_UNSET_VAR is not set",
        ),
        (
            "  - {type: jsonl}",
            "  - {type: jsonl}\n  - {type: detect, model: m.onnx, name: d2}",
            "stages must start with exactly one 'detect' stage",
        ),
    ],
)
def test_errors_name_the_yaml_path_and_value(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    msg = str(info.value)
    assert expected in msg
    assert "\n" not in msg


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nsources: [\n  - oops: {\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_pipeline(path)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_pipeline(write(tmp_path, "- a\n- b\n"))


def test_adaptive_slicing_needs_a_single_source(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - {type: video_file, id: cam, path: clip.mp4}",
        "  - {type: video_file, id: cam, path: clip.mp4}\n"
        "  - {type: video_file, id: cam2, path: clip.mp4}",
    ).replace(
        "{type: detect, model: model.onnx}",
        "{type: detect, model: model.onnx, slicing: {adaptive: {full_sweep_every: 10}}}",
    )
    with pytest.raises(ConfigError, match="adaptive: keeps per-stream state"):
        load_pipeline(write(tmp_path, text))


@pytest.mark.parametrize("pipeline", sorted((REPO / "pipelines").glob("*.yaml")))
def test_shipped_pipelines_validate(pipeline: Path) -> None:
    cfg = load_pipeline(pipeline)
    assert cfg.stages[0].type == "detect"
