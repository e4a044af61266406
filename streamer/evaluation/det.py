"""Small-object detection evaluation: ground-truth readers, COCO-style AP and recall.

Ground truth from three formats is read into one structure, :class:`GroundTruth`
(per image: ``xyxy`` boxes in pixels, a COCO-80 ``class_name`` per box or None, and
an ``ignore`` mask). Source classes are mapped to the COCO-80 names of
:data:`~streamer.detect.detector.COCO80_NAMES` so that COCO-trained detectors can
be scored class-aware:

* **VisDrone-DET** (:data:`VISDRONE_TO_COCO`): pedestrian, people -> person;
  bicycle -> bicycle; car, van -> car; truck -> truck; bus -> bus;
  motor -> motorcycle. tricycle, awning-tricycle and others have no COCO class and
  become ignore boxes (neither hits nor misses), as do the category-0 / score-0
  "ignored regions".
* **COCO json** (SAHI test files, :data:`COCO_JSON_TO_COCO`): human -> person,
  person -> person, car -> car; any category already named like a COCO-80 class
  maps to itself; other categories and ``iscrowd`` annotations become ignore boxes.
* **DOTA v1** (:data:`DOTA_TO_COCO`): ship -> boat, small-vehicle -> car,
  large-vehicle -> truck (DOTA's "large vehicle" is mostly trucks, also buses and
  trailers: a COCO detector may call them bus, which then counts as a miss plus a
  false positive), plane -> airplane. ``difficult = 1`` boxes of a mapped class
  become ignore boxes. The other DOTA classes (harbor, bridge, storage-tank,
  tennis-court, ...) are mostly areas rather than objects, so they are **dropped**
  (not turned into ignore regions, which would hide false positives over whole
  harbours and fields).

Evaluation (:func:`evaluate_detections`) runs ``pycocotools``' ``COCOeval``
(bbox) on COCO dicts built in memory. Ignore boxes are given ``iscrowd = 1``
(``COCOeval`` overwrites the annotation field ``ignore`` with ``iscrowd``, so only
``iscrowd`` works) and are copied into **every** evaluated class: a detection
of any class whose area lies at least half inside an ignore box (``COCOeval``
measures crowd overlap as intersection over the detection's area) and that
matches no real object is neither a true nor a false positive. Box areas are
``w * h`` (the ``area`` field of a COCO file is not used; SAHI's files hold
polygon-mask areas that are wrong for boxes). "small" is COCO's
``area <= 32**2`` px.

Prediction files (:func:`write_predictions`, :func:`read_predictions`) are COCO
results json: a list of ``{"file_name": "0000001_02999_d_0000005.jpg", "bbox":
[x, y, w, h], "score": 0.87, "category_name": "car", "category_id": 2}`` with
``bbox`` in pixels and ``category_id`` the 0-based index into COCO-80 (the name
wins when both are given). ``image_id`` may replace ``file_name``. Images are
matched between ground truth and predictions by file **stem** (``P1888.txt`` and
``P1888.png`` are the same image).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamer.detect.detector import COCO80_NAMES
from streamer.types import Detections, FloatArray

__all__ = [
    "COCO_JSON_TO_COCO",
    "DOTA_TO_COCO",
    "SMALL_AREA_PX",
    "VISDRONE_CATEGORIES",
    "VISDRONE_TO_COCO",
    "GroundTruth",
    "GtFormat",
    "detect_gt_format",
    "eval_det_command",
    "evaluate_detections",
    "format_table",
    "read_coco_json",
    "read_dota",
    "read_gt_file",
    "read_predictions",
    "read_visdrone",
    "write_predictions",
]

GtFormat = Literal["auto", "visdrone", "coco", "dota"]

SMALL_AREA_PX = 32**2
"""Upper bound (inclusive, as in ``COCOeval``) of a "small" box's area, px²."""

VISDRONE_CATEGORIES: dict[int, str] = {
    0: "ignored-region",
    1: "pedestrian",
    2: "people",
    3: "bicycle",
    4: "car",
    5: "van",
    6: "truck",
    7: "tricycle",
    8: "awning-tricycle",
    9: "bus",
    10: "motor",
    11: "others",
}
"""VisDrone-DET category ids and names."""

VISDRONE_TO_COCO: dict[str, str | None] = {
    "ignored-region": None,
    "pedestrian": "person",
    "people": "person",
    "bicycle": "bicycle",
    "car": "car",
    "van": "car",
    "truck": "truck",
    "tricycle": None,
    "awning-tricycle": None,
    "bus": "bus",
    "motor": "motorcycle",
    "others": None,
}
"""VisDrone name -> COCO-80 name (None: no COCO class, evaluated as an ignore box)."""

COCO_JSON_TO_COCO: dict[str, str | None] = {
    "human": "person",
    "person": "person",
    "pedestrian": "person",
    "car": "car",
}
"""COCO-json category name -> COCO-80 name; names already in COCO-80 map to themselves."""

DOTA_TO_COCO: dict[str, str | None] = {
    "ship": "boat",
    "small-vehicle": "car",
    "large-vehicle": "truck",
    "plane": "airplane",
}
"""DOTA v1 class -> COCO-80 name; classes not listed are dropped (see module doc)."""

_COCO_ID = {name: i for i, name in enumerate(COCO80_NAMES)}


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one image.

    Attributes:
        xyxy: ``(N, 4) float32`` boxes in image pixels.
        class_name: COCO-80 name of each box, or None for a box with no COCO class
            (always ignored).
        ignore: ``(N,) bool``: True for ignore boxes (ignored regions, unmapped
            classes, crowd / difficult objects); they are neither hits nor misses.
        source_class: The class label of each box as written in the source file.
        image: Name of the image (file name or stem) the boxes belong to.

    Raises:
        ValueError: if the lengths disagree.
    """

    xyxy: FloatArray
    class_name: tuple[str | None, ...]
    ignore: npt.NDArray[np.bool_]
    source_class: tuple[str, ...] = ()
    image: str = ""

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        ignore = np.asarray(self.ignore, bool).reshape(-1)
        names = tuple(self.class_name)
        ignore = ignore | np.array([n is None for n in names], bool).reshape(-1)
        source = tuple(self.source_class) or tuple(n or "" for n in names)
        if not (len(xyxy) == len(names) == len(ignore) == len(source)):
            raise ValueError(
                f"GroundTruth: lengths differ (xyxy {len(xyxy)}, class_name {len(names)}, "
                f"ignore {len(ignore)}, source_class {len(source)})"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "class_name", names)
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "source_class", source)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def area(self) -> FloatArray:
        """``(N,) float32`` box areas ``w * h``, px²."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)

    @property
    def num_objects(self) -> int:
        """Number of boxes that count (not ignored)."""
        return int((~self.ignore).sum())


@dataclass
class _Rows:
    xyxy: list[list[float]] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    ignore: list[bool] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def add(self, xyxy: list[float], name: str | None, ignore: bool, source: str) -> None:
        self.xyxy.append(xyxy)
        self.names.append(name)
        self.ignore.append(ignore or name is None)
        self.source.append(source)

    def build(self, image: str) -> GroundTruth:
        return GroundTruth(
            np.asarray(self.xyxy, np.float32).reshape(-1, 4),
            tuple(self.names),
            np.asarray(self.ignore, bool),
            tuple(self.source),
            image,
        )


def _bad(path: Path, line_no: int, line: str, why: str) -> ValueError:
    return ValueError(f"{path}:{line_no}: {why}: {line.strip()[:120]!r}")


def read_visdrone(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a VisDrone-DET annotation txt (``x,y,w,h,score,category,truncation,occlusion``).

    Rows with ``category == 0`` or ``score == 0`` are ignore regions; categories
    without a COCO class (tricycle, awning-tricycle, others) are ignore boxes; see
    :data:`VISDRONE_TO_COCO`.

    Args:
        path: The annotation file.

    Returns:
        The boxes of the image named like the file's stem.

    Raises:
        ValueError: naming file and line for a malformed row (field count, a
            non-integer field, an unknown category or a negative size).
    """
    p = Path(path)
    rows = _Rows()
    for line_no, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.strip().rstrip(",").split(",")]
        if len(fields) != 8:
            raise _bad(p, line_no, line, f"expected 8 comma-separated fields, got {len(fields)}")
        try:
            x, y, w, h, score, cat, _trunc, _occ = (int(float(f)) for f in fields)
        except ValueError:
            raise _bad(p, line_no, line, "non-numeric field") from None
        if cat not in VISDRONE_CATEGORIES:
            raise _bad(p, line_no, line, f"unknown VisDrone category {cat}")
        if w < 0 or h < 0:
            raise _bad(p, line_no, line, "negative box size")
        source = VISDRONE_CATEGORIES[cat]
        rows.add([x, y, x + w, y + h], VISDRONE_TO_COCO[source], cat == 0 or score == 0, source)
    return rows.build(p.stem)


def _coco_name(category: str) -> str | None:
    if category in COCO_JSON_TO_COCO:
        return COCO_JSON_TO_COCO[category]
    return category if category in _COCO_ID else None


def read_coco_json(path: str | os.PathLike[str], image_file_name: str) -> GroundTruth:
    """Read the boxes of one image from a COCO instances json (e.g. SAHI's terrain files).

    Category names are mapped with :data:`COCO_JSON_TO_COCO` (names already in
    COCO-80 map to themselves; others become ignore boxes); ``iscrowd`` boxes are
    ignore boxes. ``bbox`` is ``[x, y, w, h]`` in pixels.

    Args:
        path: The json file.
        image_file_name: ``file_name`` of the image in ``images`` (a match of the
            base name or the stem is accepted).

    Returns:
        The boxes of that image.

    Raises:
        ValueError: if the file is not COCO json, the image is not in it, or an
            annotation is malformed (the message names the file and annotation).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        images = data["images"]
        cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        anns = data.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{p}: not a COCO instances json ({e})") from None
    want = Path(image_file_name)
    image_id = None
    for im in images:
        fn = Path(str(im.get("file_name", "")))
        if fn.name == want.name or fn.stem == want.stem:
            image_id = im.get("id")
            break
    if image_id is None:
        names = [im.get("file_name") for im in images]
        raise ValueError(f"{p}: image {image_file_name!r} not found (images: {names})")
    rows = _Rows()
    for i, ann in enumerate(anns):
        if ann.get("image_id") != image_id:
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            cat = cats[int(ann["category_id"])]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{p}: annotation #{i} (id {ann.get('id')}) malformed: {e!r}"
            ) from None
        if w < 0 or h < 0:
            raise ValueError(f"{p}: annotation #{i} (id {ann.get('id')}) has a negative size")
        rows.add([x, y, x + w, y + h], _coco_name(cat), bool(ann.get("iscrowd", 0)), cat)
    return rows.build(want.stem)


def read_dota(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a DOTA v1 labelTxt file (``x1 y1 ... x4 y4 category difficult``).

    The optional ``imagesource:`` / ``gsd:`` header lines are skipped. Each
    quadrilateral becomes its horizontal min/max box. Classes are mapped with
    :data:`DOTA_TO_COCO`; unmapped classes are dropped; ``difficult = 1`` boxes are
    ignore boxes.

    Args:
        path: The annotation file.

    Returns:
        The boxes of the image named like the file's stem.

    Raises:
        ValueError: naming file and line for a malformed row.
    """
    p = Path(path)
    rows = _Rows()
    for line_no, line in enumerate(p.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("imagesource:", "gsd:")):
            continue
        parts = s.split()
        if len(parts) not in (9, 10):
            raise _bad(
                p,
                line_no,
                line,
                f"expected 8 coordinates, category, difficult; got {len(parts)} fields",
            )
        try:
            pts = np.asarray([float(v) for v in parts[:8]], np.float64).reshape(4, 2)
            difficult = int(parts[9]) if len(parts) == 10 else 0
        except ValueError:
            raise _bad(p, line_no, line, "non-numeric coordinate or difficult flag") from None
        category = parts[8]
        if category not in DOTA_TO_COCO:
            continue
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        rows.add([lo[0], lo[1], hi[0], hi[1]], DOTA_TO_COCO[category], difficult != 0, category)
    return rows.build(p.stem)


def detect_gt_format(path: str | os.PathLike[str]) -> Literal["visdrone", "coco", "dota"]:
    """Guess the format of a ground-truth file from its extension and first lines.

    Args:
        path: The file.

    Returns:
        ``"coco"`` for ``.json``; for text, ``"dota"`` when a header line or a
        whitespace-separated row of 9-10 fields is found, ``"visdrone"`` for
        comma-separated rows.

    Raises:
        ValueError: if no format fits.
    """
    p = Path(path)
    if p.suffix.lower() == ".json":
        return "coco"
    for line in p.read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith(("imagesource:", "gsd:")) or len(s.split()) in (9, 10):
            return "dota"
        if s.count(",") >= 7:
            return "visdrone"
        break
    raise ValueError(f"{p}: cannot tell the annotation format (use visdrone, coco or dota)")


def read_gt_file(
    path: str | os.PathLike[str], gt_format: GtFormat = "auto"
) -> dict[str, GroundTruth]:
    """Read a ground-truth file into ``{image stem: GroundTruth}``.

    A COCO json yields every image it lists; VisDrone and DOTA files one image.

    Args:
        path: The file.
        gt_format: ``"auto"`` (see :func:`detect_gt_format`), ``"visdrone"``,
            ``"coco"`` or ``"dota"``.

    Returns:
        The ground truth by image stem.

    Raises:
        ValueError: on an unknown format or malformed content.
    """
    p = Path(path)
    fmt = detect_gt_format(p) if gt_format == "auto" else gt_format
    if fmt == "visdrone":
        gt = read_visdrone(p)
        return {gt.image: gt}
    if fmt == "dota":
        gt = read_dota(p)
        return {gt.image: gt}
    if fmt == "coco":
        try:
            images = json.loads(p.read_text())["images"]
            names = [str(im["file_name"]) for im in images]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{p}: not a COCO instances json ({e})") from None
        return {Path(n).stem: read_coco_json(p, n) for n in names}
    raise ValueError(f"unknown ground-truth format {gt_format!r} (auto, visdrone, coco, dota)")


# ----------------------------------------------------------------- predictions


def write_predictions(
    path: str | os.PathLike[str],
    detections: Mapping[str, Detections],
    class_names: Sequence[str] = COCO80_NAMES,
) -> int:
    """Write detections as a COCO results json (format in the module docstring).

    Args:
        path: Output file.
        detections: ``{image file name: Detections}`` (boxes xyxy in pixels).
        class_names: Name of each ``class_id`` (the detector's class names).

    Returns:
        The number of detections written.

    Raises:
        ValueError: if a ``class_id`` is outside ``class_names``.
    """
    out: list[dict[str, Any]] = []
    for name, det in detections.items():
        for (x1, y1, x2, y2), score, cid in zip(
            det.xyxy.tolist(), det.confidence.tolist(), det.class_id.tolist(), strict=True
        ):
            if not 0 <= cid < len(class_names):
                raise ValueError(f"{name}: class_id {cid} outside class_names ({len(class_names)})")
            cname = class_names[cid]
            rec: dict[str, Any] = {
                "file_name": name,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
                "category_name": cname,
            }
            if cname in _COCO_ID:
                rec["category_id"] = _COCO_ID[cname]
            out.append(rec)
    Path(path).write_text(json.dumps(out))
    return len(out)


def read_predictions(path: str | os.PathLike[str]) -> dict[str, Detections]:
    """Read a COCO results json into ``{image stem: Detections}`` (COCO-80 class ids).

    Args:
        path: The file written by :func:`write_predictions` or any tool writing the
            same fields.

    Returns:
        Detections by image stem; ``class_id`` indexes :data:`COCO80_NAMES`.
        Records of a class outside COCO-80 are dropped.

    Raises:
        ValueError: naming the file and record index for a malformed record.
    """
    p = Path(path)
    try:
        records = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not json ({e})") from None
    if not isinstance(records, list):
        raise ValueError(f"{p}: expected a json list of detection records")
    acc: dict[str, tuple[list[list[float]], list[float], list[int]]] = {}
    for i, r in enumerate(records):
        try:
            image = r["file_name"] if "file_name" in r else r["image_id"]
            x, y, w, h = (float(v) for v in r["bbox"])
            score = float(r["score"])
            if "category_name" in r:
                cid = _COCO_ID.get(str(r["category_name"]), -1)
            else:
                cid = int(r["category_id"])
                cid = cid if 0 <= cid < len(COCO80_NAMES) else -1
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{p}: record #{i} malformed ({e!r}): {str(r)[:120]}") from None
        if cid < 0:
            continue
        boxes, scores, cls = acc.setdefault(Path(str(image)).stem, ([], [], []))
        boxes.append([x, y, x + w, y + h])
        scores.append(score)
        cls.append(cid)
    return {
        k: Detections(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s), np.asarray(c))
        for k, (b, s, c) in acc.items()
    }


# ------------------------------------------------------------------ evaluation


def _xywh(xyxy: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def evaluate_detections(
    gt_by_image: Mapping[str, GroundTruth],
    pred_by_image: Mapping[str, Detections],
    class_names: Sequence[str] = COCO80_NAMES,
    max_dets: int = 500,
) -> dict[str, Any]:
    """Class-aware COCO evaluation at IoU 0.5 with ``pycocotools``.

    The classes evaluated are the COCO-80 names of the non-ignored ground truth;
    predictions of other classes are dropped (COCO gives a class with no ground
    truth no AP) and counted in ``dropped_predictions``. Predictions of images not
    in ``gt_by_image`` are dropped too. Ignore boxes become ``iscrowd`` boxes of
    every evaluated class (see the module docstring).

    Args:
        gt_by_image: Ground truth by image name (stems match, see module doc).
        pred_by_image: Detections by image name; missing images have none.
        class_names: Names of the predictions' ``class_id`` values.
        max_dets: Detections per image and class kept (highest scores); COCO's
            100 would cap recall on crowded VisDrone frames.

    Returns:
        ``{"AP50", "AP50_small", "AR50", "AR50_small"}``: COCO's class means (AP
        with 101-point interpolation, AR = recall at IoU 0.5 with ``max_dets``),
        -1 where no class has ground truth in that area range;
        ``{"recall50", "recall50_small"}``: pooled recall (matched objects / all
        objects over classes, from ``COCOeval``'s per-image matches);
        ``{"tp", "fp", "gt", "gt_small", "predictions", "dropped_predictions",
        "images"}``: counts at IoU 0.5, all areas (tp/fp from the library's
        matches, ignored detections excluded); and ``"per_class"``:
        ``{name: {AP50, AP50_small, recall50, recall50_small, gt, gt_small, tp, fp}}``.

    Raises:
        ValueError: if a prediction's ``class_id`` is outside ``class_names``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    stems = {Path(k).stem: k for k in gt_by_image}
    preds = {Path(k).stem: v for k, v in pred_by_image.items()}
    cat_names = sorted(
        {
            n
            for g in gt_by_image.values()
            for n, ig in zip(g.class_name, g.ignore.tolist(), strict=True)
            if n is not None and not ig
        },
        key=lambda n: _COCO_ID.get(n, len(_COCO_ID)),
    )
    cat_id = {n: i + 1 for i, n in enumerate(cat_names)}
    images: list[dict[str, Any]] = []
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    n_pred = n_dropped = 0
    for img_id, stem in enumerate(sorted(stems), 1):
        g = gt_by_image[stems[stem]]
        x2 = float(g.xyxy[:, 2].max()) if len(g) else 1.0
        y2 = float(g.xyxy[:, 3].max()) if len(g) else 1.0
        images.append({"id": img_id, "file_name": stem, "width": x2, "height": y2})
        for box, name, ig, area in zip(
            g.xyxy.tolist(), g.class_name, g.ignore.tolist(), g.area.tolist(), strict=True
        ):
            targets = cat_names if ig else [name]
            for n in targets:
                gt_anns.append(
                    {
                        "id": len(gt_anns) + 1,  # ids must be > 0 for COCOeval
                        "image_id": img_id,
                        "category_id": cat_id[str(n)],
                        "bbox": _xywh(box),
                        "area": area,
                        "iscrowd": int(ig),
                    }
                )
        det = preds.get(stem)
        if det is None:
            continue
        for box, score, cid in zip(
            det.xyxy.tolist(), det.confidence.tolist(), det.class_id.tolist(), strict=True
        ):
            n_pred += 1
            if not 0 <= cid < len(class_names):
                raise ValueError(f"{stem}: class_id {cid} outside class_names ({len(class_names)})")
            cname = class_names[cid]
            if cname not in cat_id:
                n_dropped += 1
                continue
            xywh = _xywh(box)
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": img_id,
                    "category_id": cat_id[cname],
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "score": float(score),
                    "iscrowd": 0,
                }
            )
    n_dropped += sum(len(v) for k, v in preds.items() if k not in stems)
    n_pred += sum(len(v) for k, v in preds.items() if k not in stems)
    categories = [{"id": i, "name": n} for n, i in cat_id.items()]

    result: dict[str, Any] = {
        "images": len(images),
        "predictions": n_pred,
        "dropped_predictions": n_dropped,
    }
    gt_objects = [a for a in gt_anns if not a["iscrowd"]]
    result["gt"] = len(gt_objects)
    result["gt_small"] = sum(a["area"] <= SMALL_AREA_PX for a in gt_objects)
    if not cat_names:
        result.update(AP50=-1.0, AP50_small=-1.0, AR50=-1.0, AR50_small=-1.0)
        result.update(recall50=-1.0, recall50_small=-1.0, tp=0, fp=0, per_class={})
        return result

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [int(max_dets)]
        ev.evaluate()
        ev.accumulate()

    area_lbl = list(ev.params.areaRngLbl)
    a_all, a_small = area_lbl.index("all"), area_lbl.index("small")
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    recall = ev.eval["recall"]  # [T, K, A, M]

    def ap(k: int | None, a: int) -> float:
        pr = precision[0, :, :, a, 0] if k is None else precision[0, :, k : k + 1, a, 0]
        valid = pr[:, (pr > -1).all(axis=0)]
        return float(valid.mean()) if valid.size else -1.0

    def ar(k: int | None, a: int) -> float:
        rc = recall[0, :, a, 0] if k is None else recall[0, k : k + 1, a, 0]
        rc = rc[rc > -1]
        return float(rc.mean()) if rc.size else -1.0

    # Pooled counts from COCOeval's per-image matches (evalImgs: cat-major, then area, then image).
    n_area, n_img = len(ev.params.areaRng), len(ev.params.imgIds)
    counts = {(k, a): [0, 0, 0, 0] for k in range(len(cat_names)) for a in (a_all, a_small)}
    for k in range(len(cat_names)):
        for a in (a_all, a_small):
            c = counts[k, a]
            for i in range(n_img):
                e = ev.evalImgs[(k * n_area + a) * n_img + i]
                if e is None:
                    continue
                gt_ig = np.asarray(e["gtIgnore"], bool)
                gt_m = np.asarray(e["gtMatches"])[0] > 0
                dt_ig = np.asarray(e["dtIgnore"])[0].astype(bool)
                dt_m = np.asarray(e["dtMatches"])[0] > 0
                c[0] += int((gt_m & ~gt_ig).sum())  # matched objects
                c[1] += int((~gt_ig).sum())  # objects
                c[2] += int((dt_m & ~dt_ig).sum())  # true positives
                c[3] += int((~dt_m & ~dt_ig).sum())  # false positives

    def pooled(a: int, ks: Sequence[int]) -> float:
        hit = sum(counts[k, a][0] for k in ks)
        tot = sum(counts[k, a][1] for k in ks)
        return hit / tot if tot else -1.0

    ks = range(len(cat_names))
    result.update(
        AP50=ap(None, a_all),
        AP50_small=ap(None, a_small),
        AR50=ar(None, a_all),
        AR50_small=ar(None, a_small),
        recall50=pooled(a_all, ks),
        recall50_small=pooled(a_small, ks),
        tp=sum(counts[k, a_all][2] for k in ks),
        fp=sum(counts[k, a_all][3] for k in ks),
    )
    result["per_class"] = {
        n: {
            "AP50": ap(k, a_all),
            "AP50_small": ap(k, a_small),
            "recall50": pooled(a_all, [k]),
            "recall50_small": pooled(a_small, [k]),
            "gt": counts[k, a_all][1],
            "gt_small": counts[k, a_small][1],
            "tp": counts[k, a_all][2],
            "fp": counts[k, a_all][3],
        }
        for k, n in enumerate(cat_names)
    }
    return result


def _fmt(v: float) -> str:
    return "   n/a" if v < 0 else f"{v:6.3f}"


def format_table(result: Mapping[str, Any], title: str = "") -> str:
    """Render :func:`evaluate_detections`' result as a fixed-width text table.

    Args:
        result: The result dict.
        title: Optional first line.

    Returns:
        The table (one row per class, then "all"), without a trailing newline.
    """
    cols = ("gt", "gt<32²", "tp", "fp", "AP50", "AP50_s", "R50", "R50_s")
    widths = (5, 6, 5, 5, 6, 6, 6, 6)
    head = f"{'class':<12} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, c in result.get("per_class", {}).items():
        lines.append(
            f"{name:<12} {c['gt']:>5} {c['gt_small']:>6} {c['tp']:>5} {c['fp']:>5} "
            f"{_fmt(c['AP50'])} {_fmt(c['AP50_small'])} "
            f"{_fmt(c['recall50'])} {_fmt(c['recall50_small'])}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<12} {result['gt']:>5} {result['gt_small']:>6} {result.get('tp', 0):>5} "
        f"{result.get('fp', 0):>5} {_fmt(result['AP50'])} {_fmt(result['AP50_small'])} "
        f"{_fmt(result['recall50'])} {_fmt(result['recall50_small'])}"
    )
    lines.append(
        f"images {result['images']}, predictions {result['predictions']} "
        f"({result['dropped_predictions']} of classes/images without ground truth dropped); "
        f"AP50 = class mean, R50 = pooled recall at IoU 0.5; _s = boxes <= 32² px"
    )
    return "\n".join(lines)


def eval_det_command(
    gt_paths: Sequence[Path], pred_path: Path, gt_format: GtFormat = "auto"
) -> str:
    """Body of ``streamer eval det --gt ... --pred ...``: evaluate a prediction file.

    Args:
        gt_paths: Ground-truth files (VisDrone txt, COCO json, DOTA txt; mixed
            formats are fine with ``"auto"``).
        pred_path: COCO results json (see :func:`read_predictions`).
        gt_format: ``"auto"``, ``"visdrone"``, ``"coco"`` or ``"dota"``.

    Returns:
        The result table (:func:`format_table`).

    Raises:
        ValueError: on a missing file, malformed input, or the same image in two
            ground-truth files.
        FileNotFoundError: if a file does not exist.
    """
    gt: dict[str, GroundTruth] = {}
    for p in gt_paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"ground truth not found: {p}")
        for stem, g in read_gt_file(p, gt_format).items():
            if stem in gt:
                raise ValueError(f"{p}: image {stem!r} already read from another file")
            gt[stem] = g
    if not Path(pred_path).is_file():
        raise FileNotFoundError(f"predictions not found: {pred_path}")
    preds = read_predictions(pred_path)
    result = evaluate_detections(gt, preds, COCO80_NAMES)
    return format_table(result, f"detections {pred_path} vs {len(gt)} image(s) of ground truth")
