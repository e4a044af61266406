"""Fleet YAML: schema errors name the YAML path, cameras resolve to one-source
pipelines (source merged, placement layered), secrets stay hidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config.loader import dump_resolved
from streamer.errors import ConfigError
from streamer.fleet.loader import Placement, load_fleet, resolve_placement
from streamer.fleet.schema import PlacementConfig

PIPELINE = """
name: people
sources:
  - {type: video_file, id: orig, path: clip.mp4, max_frames: 50}
stages:
  - {type: detect, model: model.onnx}
  - {type: track, preset: bytetrack}
  - {type: jsonl}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    write(tmp_path, "pipes/people.yaml", PIPELINE)
    return tmp_path


def fleet_yaml(folder: Path, body: dict[str, Any]) -> Path:
    doc = {"name": "site", "pipeline": "pipes/people.yaml", **body}
    return write(folder, "fleet.yaml", yaml.safe_dump(doc))


def test_cameras_and_groups_resolve_to_one_source_pipelines(fleet_dir: Path) -> None:
    path = fleet_yaml(
        fleet_dir,
        {
            "placement": {"num_cpus": 0.5},
            "cameras": [
                {"id": "a"},
                {"id": "b", "source": {"path": "other.mp4", "max_frames": 7}},
            ],
            "groups": [
                {
                    "name": "g",
                    "placement": {"num_gpus": 0.25, "labels": {"streamer.io/kind": "gpu"}},
                    "source": {"decode_threads": 2},
                    "cameras": [{"id": "c", "placement": {"num_cpus": 2}}],
                }
            ],
        },
    )
    fleet = load_fleet(path)
    a, _, c = fleet.cameras
    assert [cam.id for cam in fleet.cameras] == ["a", "b", "c"]
    for cam in fleet.cameras:
        assert len(cam.config.sources) == 1 and cam.config.sources[0].id == cam.id
        assert not cam.live
    src_a, src_b, src_c = (cam.config.sources[0] for cam in fleet.cameras)
    assert src_a.path == fleet_dir / "pipes" / "clip.mp4" and src_a.max_frames == 50
    assert src_b.path == fleet_dir / "other.mp4" and src_b.max_frames == 7  # fleet-relative
    assert src_c.decode_threads == 2 and c.group == "g" and a.group is None
    assert a.placement == Placement(num_cpus=0.5)
    assert c.placement.num_cpus == 2 and c.placement.num_gpus == 0.25
    assert c.placement.ray_options() == {
        "num_cpus": 2.0,
        "num_gpus": 0.25,
        "scheduling_strategy": "SPREAD",
        "label_selector": {"streamer.io/kind": "gpu"},
    }
    assert fleet.run_dir().name.startswith("fleet-site-")


def test_max_frames_override_and_a_source_of_another_type(fleet_dir: Path) -> None:
    path = fleet_yaml(
        fleet_dir,
        {"cameras": [{"id": "door", "source": {"type": "rtsp", "url": "rtsp://h/s"}}]},
    )
    fleet = load_fleet(path, max_frames=3)
    cam = fleet.cameras[0]
    src = cam.config.sources[0]
    assert src.type == "rtsp" and src.max_frames == 3 and cam.live
    assert src.reconnect is not None  # the rtsp defaults, not the file's keys


def test_placement_layers_later_wins_field_by_field() -> None:
    p = resolve_placement(
        PlacementConfig(num_cpus=4, resources={"x": 1}),
        None,
        PlacementConfig(num_cpus=0.5, strategy="pack"),
    )
    assert p == Placement(num_cpus=0.5, resources={"x": 1}, strategy="pack")
    assert p.ray_options()["scheduling_strategy"] == "DEFAULT"
    assert resolve_placement().ray_options() == {
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "scheduling_strategy": "SPREAD",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cameras": [{"id": "a", "placement": {"gpus": 1}}]}, "cameras[0].placement.gpus: Extra"),
        (
            {"cameras": [{"id": "a", "placement": {"num_gpus": 1.5}}]},
            "cameras[0].placement.num_gpus: a GPU share above 1 must be a whole number",
        ),
        ({"cameras": [{"id": "a"}, {"id": "a"}]}, "camera ids must be unique, repeated: ['a']"),
        (
            {"cameras": [{"id": "a", "placement": {"labels": {"bad key!": "x"}}}]},
            "cameras[0].placement.labels: label key 'bad key!'",
        ),
        (
            {"cameras": [{"id": "a", "placement": {"resources": {"CPU": 1}}}]},
            "'CPU' is not a custom resource",
        ),
        ({"groups": [{"name": "g", "cameras": []}]}, "groups[0].cameras: List should have"),
        ({"cameras": [{"id": "no spaces"}]}, "cameras[0].id: String should match pattern"),
        ({"restart": {"initial_delay_s": 5, "max_delay_s": 1}}, "max_delay_s (1.0) must be >="),
        ({"api": {"port": 70000}}, "api.port: Input should be less than or equal to 65535"),
    ],
)
def test_schema_errors_name_the_yaml_path(
    fleet_dir: Path, body: dict[str, Any], message: str
) -> None:
    path = fleet_yaml(fleet_dir, body)
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        (
            {"id": "a", "source": {"max_frames": 0}},
            "cameras[0].source.max_frames: Input should be greater than or equal to 1",
        ),
        ({"id": "a", "source": {"id": "b"}}, "cameras[0].source.id: the source id is the camera"),
        ({"id": "a", "source": {"type": "rtsp"}}, "cameras[0].source.url: Field required"),
        ({"id": "a", "pipeline": "missing.yaml"}, "cameras[0].pipeline: pipeline file not found"),
    ],
)
def test_camera_errors_name_the_yaml_path(
    fleet_dir: Path, camera: dict[str, Any], message: str
) -> None:
    path = fleet_yaml(fleet_dir, {"cameras": [camera]})
    with pytest.raises(ConfigError, match=None) as err:
        load_fleet(path)
    assert message in str(err.value), str(err.value)


def test_pipelines_that_cannot_run_in_a_fleet_are_refused(fleet_dir: Path) -> None:
    two = PIPELINE.replace(
        "sources:\n", "sources:\n  - {type: video_file, id: second, path: clip.mp4}\n"
    )
    write(fleet_dir, "pipes/two.yaml", two)
    path = fleet_yaml(fleet_dir, {"cameras": [{"id": "a", "pipeline": "pipes/two.yaml"}]})
    with pytest.raises(ConfigError, match=r"has 2 sources; a camera is one stream"):
        load_fleet(path)
    zmq = PIPELINE + "  - {type: zeromq, endpoint: 'tcp://127.0.0.1:5555'}\n"
    write(fleet_dir, "pipes/zmq.yaml", zmq)
    path = fleet_yaml(fleet_dir, {"cameras": [{"id": "a", "pipeline": "pipes/zmq.yaml"}]})
    with pytest.raises(ConfigError, match=r"stages\[3\]: a zeromq sink that binds"):
        load_fleet(path)
    path = fleet_yaml(fleet_dir, {"cameras": [{"id": "a"}]})
    no_default = yaml.safe_load(path.read_text())
    del no_default["pipeline"]
    path.write_text(yaml.safe_dump(no_default))
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.pipeline: no pipeline"):
        load_fleet(path)


def test_mqtt_client_ids_are_made_unique_and_servers_take_any_port(fleet_dir: Path) -> None:
    text = PIPELINE + "  - {type: mqtt, client_id: site}\nserver: {port: 9090}\n"
    write(fleet_dir, "pipes/mqtt.yaml", text)
    path = fleet_yaml(
        fleet_dir, {"pipeline": "pipes/mqtt.yaml", "cameras": [{"id": "a"}, {"id": "b"}]}
    )
    a, b = load_fleet(path).cameras
    assert a.config.stages[3].client_id == "site-a" and b.config.stages[3].client_id == "site-b"
    assert a.config.server is not None and a.config.server.port == 0


def test_credentials_from_the_environment_stay_hidden(
    fleet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PASS", "s3cret-pw")
    url = "rtsp://user:${env:CAM_PASS}@10.0.0.1/stream"
    path = fleet_yaml(fleet_dir, {"cameras": [{"id": "a", "source": {"type": "rtsp", "url": url}}]})
    cam = load_fleet(path).cameras[0]
    assert cam.config.sources[0].url == "rtsp://user:s3cret-pw@10.0.0.1/stream"
    dumped = dump_resolved(cam.config)
    assert "s3cret-pw" not in dumped and "${env:CAM_PASS}" in dumped
    bad = fleet_yaml(
        fleet_dir,
        {"cameras": [{"id": "a", "source": {"type": "rtsp", "url": url, "transport": "x"}}]},
    )
    with pytest.raises(ConfigError) as err:
        load_fleet(bad)
    assert "s3cret-pw" not in str(err.value)


def test_the_bundled_fleets_validate() -> None:
    repo = Path(__file__).resolve().parents[2]
    for name in ("pets09_local.yaml", "site_example.yaml"):
        fleet = load_fleet(repo / "fleets" / name)
        assert fleet.cameras, name
    site = load_fleet(repo / "fleets" / "site_example.yaml")
    jetson = [c for c in site.cameras if c.group == "yard"]
    assert jetson and all(c.live for c in site.cameras)
    assert jetson[0].placement.ray_options()["resources"] == {"jetson_slot": 1.0}
