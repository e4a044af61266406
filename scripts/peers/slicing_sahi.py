"""SAHI sliced inference with our ONNX detector (runs in the sahi venv).

Started by ``scripts/bench_slicing.py``, one fresh process per round::

    <sahi-venv>/bin/python scripts/peers/slicing_sahi.py REQUEST.json

``REQUEST.json``::

    {"repo": "/work/main",                    # put on sys.path: our detector code
     "model": "/path/model.onnx", "intra_op_threads": 2, "conf": 0.25,
     "allow_spinning": false,                 # optional, default false
     "tile_wh": [640, 640], "overlap_ratio": 0.2,
     "postprocess": {"type": "GREEDYNMM", "metric": "IOS", "threshold": 0.5,
                     "class_agnostic": false},
     "warmup_image": "/path/img.png" or null,  # one untimed call first
     "images": [{"name": "terrain1", "path": "/path/terrain1.jpg"}, ...]}

Protocol (the same as ``bench_slicing.py --serve``): the process loads the model,
decodes every image, runs the warm-up call, then writes one line
``@@ {"ready": true, "peer": "sahi", "versions": {...}, "params": {...}}`` on
stdout. For each line ``i`` it reads on stdin it runs image ``i`` of the request and
writes ``@@ {"seconds": s, "cpu_seconds": c, "inferences": n,
"dets": [[x1, y1, x2, y2, score, class_id], ...]}`` (``cpu_seconds``: the process's
CPU time, all threads, over the same call). It exits at the end of stdin. Other
stdout lines are ignored by the reader.

The model is a :class:`sahi.models.base.DetectionModel` subclass whose
``perform_inference`` calls our ``streamer.detect.YoloDetector`` (imported from
``repo``, which needs only numpy, opencv and onnxruntime) on the tile, so the
letterbox, decode and per-tile NMS are exactly ours. Images are read with OpenCV
(BGR) before the clock starts and handed to ``get_sliced_prediction`` as arrays;
SAHI does not change the channel order of an array, so every tile reaches the
detector as BGR. Only the ``get_sliced_prediction`` call is timed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import versions


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    sys.path.insert(0, str(request["repo"]))

    from sahi.models.base import DetectionModel
    from sahi.predict import get_sliced_prediction
    from sahi.prediction import ObjectPrediction

    from streamer.detect import YoloDetector

    detector = YoloDetector.from_onnx(
        request["model"],
        intra_op_threads=int(request["intra_op_threads"]),
        allow_spinning=bool(request.get("allow_spinning", False)),
        conf_threshold=float(request["conf"]),
    )

    class StreamerOnnxModel(DetectionModel):  # type: ignore[misc]
        """SAHI model around our YoloDetector (one ONNX Runtime call per image)."""

        calls = 0

        def load_model(self) -> None:
            self.set_model(detector)

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(i): n for i, n in enumerate(model.class_names)}

        def perform_inference(self, image: np.ndarray) -> None:
            StreamerOnnxModel.calls += 1
            self._original_predictions = [self.model(image)]
            self._original_shapes = [image.shape]

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = None,
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            shifts = shift_amount_list or [[0, 0]]
            if shifts and not isinstance(shifts[0], list):
                shifts = [shifts]  # type: ignore[list-item]
            shapes = full_shape_list
            if shapes and not isinstance(shapes[0], list):
                shapes = [shapes]  # type: ignore[list-item]
            assert self._original_predictions is not None and self._original_shapes is not None
            per_image = []
            for i, det in enumerate(self._original_predictions):
                shift = [int(v) for v in shifts[i]]
                full = [int(v) for v in shapes[i]] if shapes else list(self._original_shapes[i][:2])
                preds = []
                for box, score, cid in zip(
                    det.xyxy.tolist(), det.confidence.tolist(), det.class_id.tolist(), strict=True
                ):
                    if not (box[0] < box[2] and box[1] < box[3]):
                        continue
                    preds.append(
                        ObjectPrediction(
                            bbox=box,
                            category_id=int(cid),
                            score=float(score),
                            category_name=self.category_mapping[str(cid)],
                            shift_amount=shift,
                            full_shape=full,
                        )
                    )
                per_image.append(preds)
            self._object_prediction_list_per_image = per_image

    model = StreamerOnnxModel(confidence_threshold=float(request["conf"]), device="cpu")
    tile_w, tile_h = (int(v) for v in request["tile_wh"])
    post = request["postprocess"]
    params = {
        "slice_width": tile_w,
        "slice_height": tile_h,
        "overlap_width_ratio": float(request["overlap_ratio"]),
        "overlap_height_ratio": float(request["overlap_ratio"]),
        "perform_standard_pred": True,
        "postprocess_type": post["type"],
        "postprocess_match_metric": post["metric"],
        "postprocess_match_threshold": float(post["threshold"]),
        "postprocess_class_agnostic": bool(post["class_agnostic"]),
        "verbose": 0,
    }

    def run(image: np.ndarray) -> dict[str, Any]:
        before = StreamerOnnxModel.calls
        cpu = time.process_time()
        start = time.perf_counter()
        result = get_sliced_prediction(image, model, **params)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        rows = [
            [*p.bbox.to_xyxy(), float(p.score.value), float(p.category.id)]
            for p in result.object_prediction_list
        ]
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "inferences": StreamerOnnxModel.calls - before,
            "dets": rows,
        }

    images = []
    for item in request["images"]:  # decoded before any clock starts
        image = cv2.imread(str(item["path"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(item["path"])
        images.append(image)
    if request.get("warmup_image"):
        run(cv2.imread(str(request["warmup_image"]), cv2.IMREAD_COLOR))
    send(
        {
            "ready": True,
            "peer": "sahi",
            "versions": versions(["sahi", "onnxruntime", "numpy", "opencv-python", "shapely"]),
            "params": {k: v for k, v in params.items() if k != "verbose"},
        }
    )
    for line in sys.stdin:
        send(run(images[int(line)]))
    return 0


def send(obj: dict[str, Any]) -> None:
    """One protocol line on stdout."""
    sys.stdout.write("@@ " + json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
