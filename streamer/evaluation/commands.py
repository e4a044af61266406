"""``streamer eval mot`` and ``streamer track``: tracker evaluation without images.

* ``streamer track --det DET.txt --out PRED.txt`` runs a tracker (``--tracker`` type
  or ``--preset``) over a MOTChallenge detection file and writes MOT rows; with
  ``--det-dir`` it does every sequence of a folder.
* ``streamer eval mot --gt GT.txt --pred PRED.txt`` scores one sequence with TrackEval's
  HOTA, CLEAR (MOTA) and Identity (IDF1) metrics; with ``--gt-dir``/``--pred-dir`` it
  scores every sequence found and the combination.

Folder conventions (both MOTChallenge's and a flat one are accepted):
ground truth ``GT_DIR/<seq>/gt/gt.txt`` or ``GT_DIR/<seq>/gt.txt``; detections
``DET_DIR/<seq>/det/det.txt`` or ``DET_DIR/<seq>/det.txt``; predictions
``PRED_DIR/<seq>.txt``. A ``seqinfo.ini`` beside or above the file gives the frame
rate and sequence length when present.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from streamer.config.loader import find_configs_dir, validation_message
from streamer.config.schema import TrackerConfig
from streamer.errors import ConfigError, StreamerError
from streamer.evaluation.mot import (
    combine_mot,
    evaluate_mot,
    read_mot,
    run_tracker_on_mot_detections,
    write_mot,
)

COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN", "MT", "ML")
_PERCENT = {"HOTA", "MOTA", "IDF1"}


class SequenceInfo:
    """Frame rate and length of a MOT sequence from its ``seqinfo.ini``, if any."""

    def __init__(self, frame_rate: float | None, length: int | None) -> None:
        self.frame_rate = frame_rate
        self.length = length

    @classmethod
    def near(cls, path: Path) -> SequenceInfo:
        """Read the ``seqinfo.ini`` in ``path``'s folder or its parent (MOTChallenge)."""
        for folder in (path.parent, path.parent.parent):
            ini = folder / "seqinfo.ini"
            if ini.is_file():
                parser = configparser.ConfigParser()
                parser.read(ini)
                sec = parser["Sequence"] if parser.has_section("Sequence") else {}
                rate = sec.get("frameRate")
                length = sec.get("seqLength")
                return cls(float(rate) if rate else None, int(length) if length else None)
        return cls(None, None)


def tracker_config(
    tracker_type: str | None, preset: str | None, overrides: Mapping[str, Any]
) -> TrackerConfig:
    """Resolve a tracker from a type name or a preset (name or path) plus overrides.

    Raises:
        ConfigError: unknown preset or type, or a bad parameter (named).
    """
    data: dict[str, Any] = {}
    if preset is not None:
        p = Path(preset)
        if not (p.suffix in (".yaml", ".yml") or "/" in preset):
            configs = find_configs_dir(Path.cwd())
            p = (configs or Path("configs")) / "trackers" / f"{preset}.yaml"
        if not p.is_file():
            raise ConfigError(f"--preset: tracker preset not found: {p}")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not isinstance(loaded.get("tracker"), dict):
            raise ConfigError(f"--preset: {p} must hold a mapping 'tracker: {{type: ...}}'")
        data = dict(loaded["tracker"])
    if tracker_type is not None:
        if data and data.get("type") != tracker_type:
            raise ConfigError(
                f"--tracker {tracker_type} contradicts the preset's type {data.get('type')!r}"
            )
        data["type"] = tracker_type
    data.setdefault("type", "bytetrack")
    data.update(overrides)
    try:
        return TypeAdapter(TrackerConfig).validate_python(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, "--tracker/--preset/--set", ("tracker",))) from None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["min_hits=3", "class_aware=true"]`` -> ``{"min_hits": 3, "class_aware": True}``.

    Raises:
        ConfigError: an item is not ``key=value``.
    """
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def make_tracker(cfg: TrackerConfig, frame_rate: float) -> Any:
    """Instantiate the tracker described by ``cfg`` for a stream of ``frame_rate`` fps."""
    from streamer.pipeline.build import tracker_class

    return tracker_class(cfg.type)(frame_rate=frame_rate, **cfg.model_dump(exclude={"type"}))


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def find_sequences(folder: Path, kind: str) -> dict[str, Path]:
    """Sequences of a MOT folder: ``{name: file}`` for ``kind`` ``gt`` or ``det``.

    Raises:
        StreamerError: the folder does not exist or holds no sequence.
    """
    if not folder.is_dir():
        raise StreamerError(f"{folder}: not a folder")
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        f = _first_existing(sub / kind / f"{kind}.txt", sub / f"{kind}.txt")
        if f is not None:
            found[sub.name] = f
    if not found:
        raise StreamerError(
            f"{folder}: no sequences found (expected <seq>/{kind}/{kind}.txt or <seq>/{kind}.txt)"
        )
    return found


def run_track(
    det: Path,
    out: Path,
    cfg: TrackerConfig,
    fps: float | None,
) -> tuple[int, int]:
    """Track one detection file into MOT rows at ``out``.

    Returns:
        ``(frames, rows)`` processed and written.

    Raises:
        StreamerError: unreadable or malformed detection file.
    """
    info = SequenceInfo.near(det)
    rate = fps or info.frame_rate or 30.0
    try:
        det_rows = read_mot(det)
    except (OSError, ValueError) as e:
        raise StreamerError(str(e)) from None
    tracker = make_tracker(cfg, rate)
    rows = run_tracker_on_mot_detections(tracker, det_rows, rate, num_frames=info.length)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mot(out, rows)
    frames = info.length or (int(det_rows[:, 0].max()) if len(det_rows) else 0)
    return frames, len(rows)


def evaluate_pairs(pairs: Mapping[str, tuple[Path, Path]]) -> list[dict[str, Any]]:
    """Score ``{name: (gt, pred)}``; returns one summary per sequence, then COMBINED.

    Raises:
        StreamerError: a file is missing or malformed.
    """
    results = []
    for name, (gt, pred) in pairs.items():
        try:
            gt_rows, pred_rows = read_mot(gt), read_mot(pred)
        except (OSError, ValueError) as e:
            raise StreamerError(str(e)) from None
        results.append(
            evaluate_mot(gt_rows, pred_rows, name, num_frames=SequenceInfo.near(gt).length)
        )
    if len(results) > 1:
        results.append(combine_mot(results, "COMBINED"))
    return results


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of the :data:`COLUMNS` (percentages for HOTA/MOTA/IDF1)."""
    width = max(12, *(len(str(r["name"])) for r in results))
    head = f"{'sequence':<{width}}" + "".join(f"{c:>8}" for c in COLUMNS)
    lines = [head]
    for r in results:
        cells = []
        for c in COLUMNS:
            v = r[c]
            cells.append(f"{100 * v:8.1f}" if c in _PERCENT else f"{int(v):8d}")
        lines.append(f"{r['name']:<{width}}" + "".join(cells))
    return "\n".join(lines)


def results_json(results: Sequence[Mapping[str, Any]]) -> str:
    """The summaries as JSON (TrackEval's raw per-metric arrays left out)."""
    slim = [{k: v for k, v in r.items() if k != "raw"} for r in results]
    return json.dumps(slim, indent=2)
