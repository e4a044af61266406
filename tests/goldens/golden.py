"""Golden replays: pipelines whose ``tracks.jsonl`` must not change unnoticed.

Each :class:`GoldenSpec` replays a clip on the virtual clock through YOLOX-nano +
ByteTrack + the jsonl sink. Its expected output lives in ``tests/goldens/NAME.jsonl``
(normalised, see :func:`normalise`) beside ``NAME.meta.json`` (how and where it was
made). ``scripts/update_goldens.py`` is the only writer of those files; the tests
(``tests/integration/test_goldens.py``) only read them.

Normalised line of one frame (compact JSON)::

    {"seq": 12, "pts_s": 1.2, "tracks": [[track_id, x1, y1, x2, y2, confidence, class_id], ...]}

Boxes are rounded to 0.1 px and confidences to 0.01. On the same machine type ONNX
Runtime's CPU results are bit-identical run to run (measured: two runs, and 1 vs 2
intra-op threads, give byte-identical ``tracks.jsonl``). A different kernel path
(graph optimisations off, standing in for another CPU) moved boxes by up to 9e-5 px
and confidences by 2e-6: over 200 PETS09 frames (8,148 coordinates) that flipped 32
coordinates rounded to 0.001 px, 3 at 0.01 px, 1 at 0.1 px and 0 at 1 px, and no
confidence at 0.01. 0.1 px keeps sub-pixel regressions visible while rarely
flipping; wall-clock fields are left out (a recording's wall times are its own).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.config.loader import apply_presets, substitute
from streamer.config.schema import PipelineConfig
from streamer.data import data_path
from streamer.pipeline.build import build_pipeline

GOLDEN_DIR = Path(__file__).resolve().parent
REPO = GOLDEN_DIR.parents[1]
PETS09 = "videos/pets09_s2l1_480x360.mp4"
MODEL = "models/yolox_nano.onnx"
BOX_DECIMALS = 1
CONF_DECIMALS = 2


@dataclass(frozen=True)
class GoldenSpec:
    """One golden replay.

    Attributes:
        name: File stem of the golden (``tests/goldens/<name>.jsonl``).
        description: What it covers (written to the meta file).
        data: Shared data files it needs (relative to the data folder).
        source: Makes the replay source's config in a work folder (and may record a
            clip there first).
    """

    name: str
    description: str
    data: tuple[str, ...]
    source: Callable[[Path], dict[str, Any]]

    @property
    def path(self) -> Path:
        return GOLDEN_DIR / f"{self.name}.jsonl"

    @property
    def meta_path(self) -> Path:
        return GOLDEN_DIR / f"{self.name}.meta.json"


def _pets09_file(work: Path) -> dict[str, Any]:
    return {"type": "replay", "id": "pets09", "path": str(data_path(PETS09)), "max_frames": 200}


def _pets09_recorded_lossy(work: Path) -> dict[str, Any]:
    from streamer.sources.recorder import record

    clip = work / "clip"
    record(str(data_path(PETS09)), clip, max_frames=200)
    return {
        "type": "replay",
        "id": "pets09",
        "path": str(clip),
        "virtual_cost_ms": 250.0,
        "buffer": {"capacity": 2, "policy": "drop_oldest"},
        "max_frame_age_ms": 180.0,
    }


SPECS: tuple[GoldenSpec, ...] = (
    GoldenSpec(
        "pets09_yolox_bytetrack",
        "PETS09-S2L1, first 200 frames of the file replayed losslessly on the virtual "
        "clock; YOLOX-nano (person, conf 0.3) + ByteTrack (bytetrack preset)",
        (PETS09, MODEL),
        _pets09_file,
    ),
    GoldenSpec(
        "pets09_recorded_lossy",
        "PETS09-S2L1 recorded with `streamer record --frames 200` (remuxed to a clip), "
        "replayed on the virtual clock as a 250 ms/frame pipeline behind a 2-frame "
        "drop_oldest buffer with a 180 ms freshness budget (81 frames taken, 79 buffer "
        "and 40 stale drops); the tracker coasts over the holes",
        (PETS09, MODEL),
        _pets09_recorded_lossy,
    ),
)


def spec(name: str) -> GoldenSpec:
    """The spec called ``name``."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(f"no golden {name!r}; known: {[s.name for s in SPECS]}")


def pipeline_config(source: dict[str, Any], out: Path) -> PipelineConfig:
    """The golden pipeline around ``source``, writing ``out/tracks.jsonl``."""
    raw = {
        "name": "golden",
        "sources": [source],
        "stages": [
            {"type": "detect", "preset": "yolox_nano", "classes": ["person"]},
            {"type": "track", "preset": "bytetrack"},
            {"type": "jsonl", "path": "tracks.jsonl"},
        ],
        "output_dir": str(out),
    }
    return PipelineConfig.model_validate(apply_presets(substitute(raw), REPO))


def run(s: GoldenSpec, work: Path) -> tuple[list[str], dict[str, int]]:
    """Run ``s`` in ``work``: its normalised lines and what the replay source emitted
    (``ReplayStats.as_dict()``).

    Raises:
        AssertionError: the run reported errors.
    """
    cfg = pipeline_config(s.source(work), work / "run")
    pipe = build_pipeline(cfg, work / "run").pipeline
    result = pipe.run()
    assert result.ok, result.errors
    replay: dict[str, int] = pipe.sources[0].replay_stats.as_dict()  # type: ignore[attr-defined]
    assert result.packets_out == replay["emitted"], (result.packets_out, replay)
    return normalise((work / "run" / "tracks.jsonl").read_text().splitlines()), replay


def normalise(lines: list[str]) -> list[str]:
    """``tracks.jsonl`` lines -> golden lines (rounded; no wall-clock fields)."""
    out = []
    for line in lines:
        r = json.loads(line)
        tracks = [
            [
                t["track_id"],
                *(round(v, BOX_DECIMALS) for v in t["xyxy"]),
                round(t["confidence"], CONF_DECIMALS),
                t["class_id"],
            ]
            for t in r["tracks"]
        ]
        rec = {"seq": r["seq"], "pts_s": r["pts_s"], "tracks": tracks}
        out.append(json.dumps(rec, separators=(",", ":")))
    return out


def read(s: GoldenSpec) -> list[str] | None:
    """The golden lines of ``s``, or None when it has none yet."""
    if not s.path.exists():
        return None
    return s.path.read_text(encoding="utf-8").splitlines()


def machine() -> dict[str, str]:
    """Versions and CPU that golden results depend on."""
    import av
    import numpy
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "av": av.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
    }


def _tracks_text(line: str | None) -> list[str]:
    if line is None:
        return ["(no frame)"]
    rec = json.loads(line)
    rows = [
        f"#{t[0]:<4} [{t[1]:7.1f} {t[2]:7.1f} {t[3]:7.1f} {t[4]:7.1f}] {t[5]:.2f} c{t[6]}"
        for t in rec["tracks"]
    ]
    return rows or ["(no tracks)"]


def diff(expected: list[str], actual: list[str], meta: dict[str, Any] | None = None) -> str | None:
    """A readable report of how ``actual`` differs from ``expected``, or None if equal.

    Names the first differing frame, shows its track rows side by side, and counts
    the differing frames (and frames present in only one of the two).
    """
    if expected == actual:
        return None
    exp = {json.loads(x)["seq"]: x for x in expected}
    act = {json.loads(x)["seq"]: x for x in actual}
    seqs = sorted(set(exp) | set(act))
    differing = [q for q in seqs if exp.get(q) != act.get(q)]
    only_exp = sorted(set(exp) - set(act))
    only_act = sorted(set(act) - set(exp))
    first = differing[0]
    lines = [
        f"{len(differing)} of {len(seqs)} frames differ ({len(only_exp)} only in the golden, "
        f"{len(only_act)} only in this run); first at seq {first}:",
    ]
    e_rec = json.loads(exp[first]) if first in exp else None
    a_rec = json.loads(act[first]) if first in act else None
    if e_rec and a_rec and e_rec["pts_s"] != a_rec["pts_s"]:
        lines.append(f"  pts_s: golden {e_rec['pts_s']}, now {a_rec['pts_s']}")
    left, right = _tracks_text(exp.get(first)), _tracks_text(act.get(first))
    width = max(len(x) for x in [*left, "golden"])
    lines.append(f"  {'golden':<{width}} | this run")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        mark = " " if a == b else "*"
        lines.append(f"{mark} {a:<{width}} | {b}")
    if len(differing) > 1:
        shown = ", ".join(str(q) for q in differing[:20])
        lines.append(f"  differing seqs: {shown}{', ...' if len(differing) > 20 else ''}")
    if meta is not None:
        lines.append(f"  golden made with {meta.get('machine')}; this run: {machine()}")
    lines.append("  if the change is intended: python scripts/update_goldens.py, then review")
    return "\n".join(lines)
