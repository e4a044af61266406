"""Accuracy gate: how many of a reference detector's detections a candidate keeps.

Used to refuse an INT8 TensorRT engine whose detections on a validation clip fall too
far below those of the FP16 engine (INT8 calibration can silently lose half the
accuracy of a model). The measure is *recall against the reference*: on each frame,
reference detections (highest confidence first) are matched greedily to unmatched
candidate detections of the same class with IoU >= ``iou_threshold``; recall is
matched / reference detections over all frames. It needs no ground truth: FP16 is
the yardstick, since its drop against FP32 is normally negligible.

All functions are pure (no state) and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from streamer.detect.nms import box_iou
from streamer.types import Detections

__all__ = ["GateResult", "evaluate_gate", "match_count"]


def match_count(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> int:
    """Reference detections of one frame matched by a candidate detection.

    Greedy, reference by descending confidence, each candidate used at most once,
    same class and IoU >= ``iou_threshold``.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if len(reference) == 0 or len(candidate) == 0:
        return 0
    iou = box_iou(reference.xyxy, candidate.xyxy)
    iou[reference.class_id[:, None] != candidate.class_id[None, :]] = 0.0
    used = np.zeros(len(candidate), dtype=bool)
    matched = 0
    for r in np.argsort(-reference.confidence, kind="stable"):
        row = np.where(used, -1.0, iou[r])
        c = int(np.argmax(row))
        if row[c] >= iou_threshold:
            used[c] = True
            matched += 1
    return matched


@dataclass(frozen=True)
class GateResult:
    """Outcome of an accuracy gate.

    Attributes:
        recall: Matched / reference detections, in [0, 1].
        matched: Reference detections matched by the candidate.
        reference_detections: Detections of the reference over all frames.
        candidate_detections: Detections of the candidate over all frames.
        frames: Frames compared.
        min_recall: The threshold.
        passed: ``recall >= min_recall``.
    """

    recall: float
    matched: int
    reference_detections: int
    candidate_detections: int
    frames: int
    min_recall: float
    passed: bool

    def as_dict(self) -> dict[str, object]:
        """Plain data (for ``meta.json``)."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``recall vs FP16 0.62 (310 of 500 detections, 100 frames) < 0.90``."""
        op = ">=" if self.passed else "<"
        return (
            f"recall vs reference {self.recall:.3f} ({self.matched} of "
            f"{self.reference_detections} detections, {self.frames} frames) {op} "
            f"{self.min_recall:.3f}"
        )


def evaluate_gate(
    reference: Callable[[npt.NDArray[np.uint8]], Detections],
    candidate: Callable[[npt.NDArray[np.uint8]], Detections],
    frames: Iterable[npt.NDArray[np.uint8]],
    min_recall: float,
    iou_threshold: float = 0.5,
) -> GateResult:
    """Run both detectors on every frame and compare.

    Args:
        reference: Detector giving the yardstick (the FP16 engine).
        candidate: Detector under test (the INT8 engine).
        frames: ``(H, W, 3) uint8`` BGR frames.
        min_recall: Smallest acceptable recall, in [0, 1].
        iou_threshold: IoU of a match, (0, 1].

    Raises:
        ValueError: no frames, a bad threshold, or no reference detections at all
            (the clip cannot judge the candidate: choose one with objects in it).
    """
    if not 0.0 <= min_recall <= 1.0:
        raise ValueError(f"min_recall must be in [0, 1], got {min_recall}")
    matched = ref_total = cand_total = n = 0
    for image in frames:
        ref, cand = reference(image), candidate(image)
        matched += match_count(ref, cand, iou_threshold)
        ref_total += len(ref)
        cand_total += len(cand)
        n += 1
    if n == 0:
        raise ValueError("the accuracy gate got no frames")
    if ref_total == 0:
        raise ValueError(
            f"the reference detected nothing in {n} frames: the validation clip cannot "
            "judge the candidate (choose a clip with objects of the model's classes)"
        )
    recall = matched / ref_total
    return GateResult(
        recall=recall,
        matched=matched,
        reference_detections=ref_total,
        candidate_detections=cand_total,
        frames=n,
        min_recall=float(min_recall),
        passed=recall >= min_recall,
    )
