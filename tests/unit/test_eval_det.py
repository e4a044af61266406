"""Ground-truth readers and the pycocotools-based detection evaluation (streamer.evaluation.det)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_data

from streamer.detect.detector import COCO80_NAMES
from streamer.evaluation.det import (
    DOTA_TO_COCO,
    VISDRONE_TO_COCO,
    GroundTruth,
    detect_gt_format,
    eval_det_command,
    evaluate_detections,
    read_coco_json,
    read_dota,
    read_gt_file,
    read_predictions,
    read_visdrone,
    write_predictions,
)
from streamer.types import Detections

VIS1 = "small_objects/visdrone/0000001_02999_d_0000005.txt"
COCO = {n: i for i, n in enumerate(COCO80_NAMES)}


def _perfect(gt: GroundTruth) -> Detections:
    keep = ~gt.ignore
    cls = [COCO[str(n)] for n, k in zip(gt.class_name, keep, strict=True) if k]
    return Detections(gt.xyxy[keep], np.ones(int(keep.sum())), np.asarray(cls))


def _gt(boxes, names, ignore=None) -> GroundTruth:
    ignore = [False] * len(names) if ignore is None else ignore
    return GroundTruth(np.asarray(boxes, np.float32), tuple(names), np.asarray(ignore), image="img")


def _det(boxes, scores, names) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores), [COCO[n] for n in names]
    )


# ------------------------------------------------------------------ readers


def test_read_visdrone_real_file() -> None:
    gt = read_visdrone(require_data(VIS1))
    src = np.asarray(gt.source_class)
    assert len(gt) == 128 and gt.xyxy.dtype == np.float32 and gt.image == "0000001_02999_d_0000005"
    objects = src != "ignored-region"
    assert (~objects).sum() == 1 and objects.sum() == 127
    assert ((gt.area < 32**2) & objects).sum() == 76
    # the ignored region and the classes with no COCO equivalent are ignore boxes
    unmapped = np.isin(src, ["ignored-region", "tricycle", "awning-tricycle", "others"])
    assert (gt.ignore == unmapped).all()
    assert all(n is None for n, u in zip(gt.class_name, unmapped, strict=True) if u)
    assert gt.num_objects == int((~unmapped).sum())
    # first row: 871,572,54,92,1,4 -> car, xyxy
    assert gt.xyxy[0].tolist() == [871, 572, 925, 664] and gt.class_name[0] == "car"


def test_mapping_tables() -> None:
    assert VISDRONE_TO_COCO["pedestrian"] == VISDRONE_TO_COCO["people"] == "person"
    assert VISDRONE_TO_COCO["van"] == VISDRONE_TO_COCO["car"] == "car"
    assert VISDRONE_TO_COCO["motor"] == "motorcycle" and VISDRONE_TO_COCO["bus"] == "bus"
    assert VISDRONE_TO_COCO["tricycle"] is None and VISDRONE_TO_COCO["others"] is None
    assert DOTA_TO_COCO == {
        "ship": "boat",
        "small-vehicle": "car",
        "large-vehicle": "truck",
        "plane": "airplane",
    }
    targets = [v for v in (*VISDRONE_TO_COCO.values(), *DOTA_TO_COCO.values()) if v]
    assert set(targets) <= set(COCO80_NAMES)


def test_read_dota_real_file() -> None:
    gt = read_dota(require_data("small_objects/dota/P1888.txt"))
    assert len(gt) == 64 and gt.num_objects == 64
    assert gt.class_name.count("truck") == 50 and gt.class_name.count("car") == 14
    assert (gt.area < 32**2).all()
    # first row 674 375 683 375 684 394 675 395 small-vehicle 0 -> min/max box
    assert gt.xyxy[0].tolist() == [674, 375, 684, 395]


def test_read_dota_difficult_and_unmapped(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text(
        "imagesource:GoogleEarth\ngsd:0.1\n"
        "0 0 10 0 10 10 0 10 ship 0\n0 0 10 0 10 10 0 10 ship 1\n0 0 50 0 50 50 0 50 harbor 0\n"
    )
    gt = read_dota(p)
    assert gt.class_name == ("boat", "boat") and gt.ignore.tolist() == [False, True]


def test_read_coco_json_terrain() -> None:
    gt = read_coco_json(require_data("small_objects/sahi/terrain1_coco.json"), "terrain1.jpg")
    assert len(gt) == 7 and set(gt.class_name) == {"person"} and not gt.ignore.any()
    assert gt.xyxy[0].tolist() == [491, 1035, 644, 1217]
    gt2 = read_gt_file(require_data("small_objects/sahi/terrain2_coco.json"))
    assert list(gt2) == ["terrain2"] and gt2["terrain2"].class_name == ("car",) * 5


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    v = tmp_path / "v.txt"
    v.write_text("1,2,3,4,1,4,0,0\n1,2,3,4,1,4,0\n")
    with pytest.raises(ValueError, match=r"v\.txt:2: expected 8"):
        read_visdrone(v)
    v.write_text("1,2,3,4,1,99,0,0\n")
    with pytest.raises(ValueError, match=r"v\.txt:1: unknown VisDrone category 99"):
        read_visdrone(v)
    d = tmp_path / "d.txt"
    d.write_text("imagesource:x\ngsd:1\n0 0 1 0 1 1 zero 1 ship 0\n")
    with pytest.raises(ValueError, match=r"d\.txt:3: non-numeric"):
        read_dota(d)
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": []}))
    with pytest.raises(ValueError, match="not found"):
        read_coco_json(c, "b.jpg")


def test_detect_format(tmp_path: Path) -> None:
    assert detect_gt_format(require_data(VIS1)) == "visdrone"
    assert detect_gt_format(require_data("small_objects/dota/P1888.txt")) == "dota"
    assert detect_gt_format(tmp_path / "x.json") == "coco"


# --------------------------------------------------------------- evaluation


def test_perfect_predictions_give_ap_one() -> None:
    gt = read_visdrone(require_data(VIS1))
    r = evaluate_detections({"a.jpg": gt}, {"a.jpg": _perfect(gt)})
    assert r["AP50"] == pytest.approx(1.0) and r["AP50_small"] == pytest.approx(1.0)
    assert r["recall50"] == 1.0 and r["recall50_small"] == 1.0
    assert r["tp"] == gt.num_objects and r["fp"] == 0


def test_no_predictions_give_zero() -> None:
    gt = read_visdrone(require_data(VIS1))
    r = evaluate_detections({"a": gt}, {})
    assert r["AP50"] == 0.0 and r["recall50"] == 0.0 and r["AR50_small"] == 0.0


def test_detection_inside_ignore_region_is_not_false_positive() -> None:
    gt = _gt([[0, 0, 20, 20], [100, 100, 300, 300]], ["car", None])  # None = ignore region
    hit = [0, 0, 20, 20]
    inside, outside = [150, 150, 170, 170], [400, 400, 420, 420]
    # a higher-scored car inside the ignore region is not an FP
    r = evaluate_detections({"img": gt}, {"img": _det([inside, hit], [0.9, 0.5], ["car", "car"])})
    assert (r["tp"], r["fp"], r["AP50"]) == (1, 0, pytest.approx(1.0))
    # the same detection outside the region is a false positive ranked first
    r = evaluate_detections({"img": gt}, {"img": _det([outside, hit], [0.9, 0.5], ["car", "car"])})
    assert (r["tp"], r["fp"]) == (1, 1) and r["AP50"] < 0.6
    # iscrowd is class-agnostic: a person inside the region is ignored too
    gt2 = _gt([[0, 0, 20, 20], [0, 0, 20, 20], [100, 100, 300, 300]], ["car", "person", None])
    d = _det([inside, hit, hit], [0.9, 0.5, 0.5], ["person", "car", "person"])
    assert evaluate_detections({"img": gt2}, {"img": d})["fp"] == 0


def test_unmapped_visdrone_class_counts_neither_way() -> None:
    gt = read_visdrone(require_data(VIS1))
    tri = next(i for i, s in enumerate(gt.source_class) if s == "tricycle")
    extra = _det([gt.xyxy[tri]], [0.99], ["motorcycle"])
    base = _perfect(gt)
    both = Detections(
        np.concatenate([extra.xyxy, base.xyxy]),
        np.concatenate([extra.confidence, base.confidence]),
        np.concatenate([extra.class_id, base.class_id]),
    )
    r = evaluate_detections({"a": gt}, {"a": both})
    assert r["fp"] == 0 and r["AP50"] == pytest.approx(1.0)


def test_other_classes_and_images_are_dropped() -> None:
    gt = _gt([[0, 0, 20, 20]], ["car"])
    d = {"img": _det([[0, 0, 20, 20], [50, 50, 60, 60]], [0.9, 0.9], ["car", "boat"])}
    d["other"] = _det([[0, 0, 5, 5]], [0.9], ["car"])
    r = evaluate_detections({"img.jpg": gt}, d)
    assert r["AP50"] == pytest.approx(1.0) and r["dropped_predictions"] == 2
    assert r["predictions"] == 3 and list(r["per_class"]) == ["car"]


def test_prediction_file_round_trip_and_command(tmp_path: Path) -> None:
    src = require_data(VIS1)
    gt = read_visdrone(src)
    pred = tmp_path / "pred.json"
    n = write_predictions(pred, {"0000001_02999_d_0000005.jpg": _perfect(gt)}, COCO80_NAMES)
    assert n == gt.num_objects
    rec = json.loads(pred.read_text())[0]
    assert set(rec) == {"file_name", "bbox", "score", "category_name", "category_id"}
    back = read_predictions(pred)["0000001_02999_d_0000005"]
    assert np.allclose(back.xyxy, _perfect(gt).xyxy, atol=0.01)
    table = eval_det_command([src], pred, "auto")
    last = next(ln for ln in table.splitlines() if ln.startswith("all"))
    assert last.split()[-4:] == ["1.000", "1.000", "1.000", "1.000"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"file_name": "a", "score": 1}]))
    with pytest.raises(ValueError, match="record #0"):
        read_predictions(bad)
