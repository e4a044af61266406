"""Pipeline YAML schema (pydantic v2).

Every model forbids unknown keys; numeric fields state their valid range; units are
in field names. A pipeline is a list of sources feeding a linear list of stages::

    name: pets09_people
    sources:
      - {type: video_file, id: pets09, path: "${data:videos/pets09_s2l1_480x360.mp4}"}
    stages:
      - {type: detect, model: "${data:models/yolov8n_int8_dynamic.onnx}", classes: [person]}
      - {type: track, preset: bytetrack}
      - {type: annotated_video}
      - {type: jsonl}
      - {type: mot}

See README.md ("Pipeline YAML reference") for every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class QueueConfig(StrictModel):
    """The bounded channel into a stage.

    Attributes:
        capacity: Most queued items (frames), 1-1024.
        policy: ``block`` (lossless; files) or ``drop_oldest`` (freshness; live sources).
    """

    capacity: int = Field(4, ge=1, le=1024)
    policy: Literal["block", "drop_oldest"] = "block"


# -- sources -------------------------------------------------------------------------
class VideoFileSourceConfig(StrictModel):
    """A video file decoded with PyAV, every frame, in order (lossless by default).

    Attributes:
        buffer: Capture buffer between this source and preprocessing (default: the
            pipeline's ``queue``).
        max_frame_age_ms: Freshness budget: any stage drops this source's frames older
            than this (capture to stage), ms; null: never (lossless).
    """

    type: Literal["video_file"]
    id: str = Field("video", pattern=NAME_PATTERN)
    path: Path
    decode_threads: int = Field(0, ge=0, le=64)
    max_frames: int | None = Field(None, ge=1)
    buffer: QueueConfig | None = None
    max_frame_age_ms: float | None = Field(None, gt=0.0)


class ReconnectConfig(StrictModel):
    """Exponential backoff with jitter between reconnect attempts of a live source.

    Attributes:
        enabled: Reconnect at all (false: a lost stream ends the source with an error).
        initial_delay_s: First delay, seconds.
        max_delay_s: Largest delay, seconds.
        factor: Growth of the delay per failed attempt.
        jitter: Relative random spread of each delay, [0, 1).
        max_attempts: Give up after this many failed attempts in a row (null: never).
    """

    enabled: bool = True
    initial_delay_s: float = Field(0.5, gt=0.0, le=3600.0)
    max_delay_s: float = Field(10.0, gt=0.0, le=3600.0)
    factor: float = Field(2.0, ge=1.0, le=10.0)
    jitter: float = Field(0.2, ge=0.0, lt=1.0)
    max_attempts: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> ReconnectConfig:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= initial_delay_s "
                f"({self.initial_delay_s})"
            )
        return self


def _live_buffer() -> QueueConfig:
    return QueueConfig(capacity=2, policy="drop_oldest")


class RecordConfig(StrictModel):
    """Recording of a live source into a clip (format: ``streamer.sources.clip``).

    Attributes:
        path: Clip folder, relative to the run directory; ``{source_id}`` is replaced
            by the source id. It must not already hold a clip.
    """

    path: str = Field("clip-{source_id}", min_length=1)

    @model_validator(mode="after")
    def _known_placeholders(self) -> RecordConfig:
        try:
            self.path.format(source_id="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"path: unknown placeholder {e} in {self.path!r} (known: {{source_id}})"
            ) from None
        return self


class RtspSourceConfig(StrictModel):
    """An RTSP stream (PyAV/FFmpeg) that reconnects and keeps only fresh frames.

    Attributes:
        url: ``rtsp://[user:pass@]host[:port]/path``; put credentials in ``${env:...}``
            (they are redacted from logs, errors and the resolved config).
        transport: ``tcp`` (default) or ``udp``.
        open_timeout_s: Longest wait to connect, seconds.
        read_timeout_s: A stream silent for this long counts as lost, seconds.
        reconnect: Backoff between reconnects (null: a lost stream is an error).
        decode_threads: FFmpeg decoder threads (1: lowest latency).
        max_frames: Stop after this many frames (null: run until stopped).
        buffer: Capture buffer: the capture thread keeps only the newest ``capacity``
            frames (``drop_oldest``; ``block`` makes the run lossless instead).
        max_frame_age_ms: Freshness budget: any stage drops frames older than this, ms.
        record: Record the stream into a clip folder while the pipeline runs (null:
            no recording); replay it with a ``replay`` source.
    """

    type: Literal["rtsp"]
    id: str = Field("rtsp", pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^rtsps?://")
    transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(5.0, gt=0.0, le=300.0)
    read_timeout_s: float = Field(3.0, gt=0.0, le=300.0)
    reconnect: ReconnectConfig | None = Field(default_factory=ReconnectConfig)  # type: ignore[arg-type]
    decode_threads: int = Field(1, ge=1, le=64)
    max_frames: int | None = Field(None, ge=1)
    buffer: QueueConfig = Field(default_factory=_live_buffer)
    max_frame_age_ms: float | None = Field(None, gt=0.0)
    record: RecordConfig | None = None


class CameraSourceConfig(StrictModel):
    """A V4L2 (USB) camera read with OpenCV.

    Attributes:
        device: ``/dev/videoN`` (or a ``/dev/v4l/by-id/...`` path) or an index.
        width_px: Requested width (null: the driver's default); what the driver
            accepts is logged when it differs.
        height_px: Requested height.
        fps: Requested frame rate.
        fourcc: Pixel format, 4 characters (``MJPG``, ``YUYV``, ...).
        read_timeout_s: A camera silent for this long is an error, seconds.
        buffer_size: Driver buffers (1: freshest frames).
        buffer: Capture buffer (live default: newest 2 frames, ``drop_oldest``).
        max_frame_age_ms: Freshness budget, ms.
        max_frames: Stop after this many frames.
    """

    type: Literal["camera"]
    id: str = Field("camera", pattern=NAME_PATTERN)
    device: str | int = 0
    width_px: int | None = Field(None, gt=0)
    height_px: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0.0)
    fourcc: str | None = Field(None, min_length=4, max_length=4)
    read_timeout_s: float = Field(2.0, gt=0.0, le=300.0)
    buffer_size: int = Field(1, ge=1, le=10)
    buffer: QueueConfig = Field(default_factory=_live_buffer)
    max_frame_age_ms: float | None = Field(None, gt=0.0)
    max_frames: int | None = Field(None, ge=1)


GStreamerPreset = Literal[
    "jetson_csi", "jetson_rtsp", "jetson_file", "desktop_rtsp", "desktop_file"
]


class GStreamerSourceConfig(StrictModel):
    """A GStreamer pipeline read through OpenCV (needs an OpenCV built with GStreamer).

    Attributes:
        pipeline: A pipeline string ending in ``appsink`` (or use ``preset``).
        preset: ``jetson_csi``, ``jetson_rtsp``, ``jetson_file``, ``desktop_rtsp`` or
            ``desktop_file`` (see README, "Live sources").
        preset_args: The preset's arguments (e.g. ``{url: ..., codec: h265}``).
        read_timeout_s: A silent pipeline is an error after this, seconds.
        live: Treat as live (default: the preset's kind; true for a custom pipeline).
        fps: Rate to assume when the stream states none.
        buffer: Capture buffer (default: newest 2 frames, ``drop_oldest``; use
            ``{policy: block}`` for files).
        max_frame_age_ms: Freshness budget, ms.
        max_frames: Stop after this many frames.
    """

    type: Literal["gstreamer"]
    id: str = Field("gstreamer", pattern=NAME_PATTERN)
    pipeline: str | None = None
    preset: GStreamerPreset | None = None
    preset_args: dict[str, Any] = Field(default_factory=dict)
    read_timeout_s: float = Field(5.0, gt=0.0, le=300.0)
    live: bool | None = None
    fps: float = Field(25.0, gt=0.0)
    buffer: QueueConfig = Field(default_factory=_live_buffer)
    max_frame_age_ms: float | None = Field(None, gt=0.0)
    max_frames: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _pipeline_or_preset(self) -> GStreamerSourceConfig:
        if (self.pipeline is None) == (self.preset is None):
            raise ValueError("give exactly one of 'pipeline' or 'preset'")
        if self.pipeline is not None:
            if "appsink" not in self.pipeline:
                raise ValueError("pipeline must end in an appsink (OpenCV reads from it)")
            if self.preset_args:
                raise ValueError("preset_args needs a preset")
        else:
            from streamer.sources.gstreamer import build_preset

            build_preset(self.preset or "", self.preset_args)  # ValueError names the arg
        return self


class ReplaySourceConfig(StrictModel):
    """A recorded clip (``streamer record``, or ``record:`` on a live source) or any
    video file, replayed on a virtual clock (deterministic) or in real time.

    On the ``virtual`` clock (default) the source simulates the live capture path on
    the recorded arrival times: a pipeline taking ``virtual_cost_ms`` per frame behind
    the capture ``buffer`` and the freshness budget ``max_frame_age_ms``; it emits
    exactly the frames such a pipeline would have taken (the same on every run), and
    the pipeline itself runs lossless (its buffer is forced to ``block``; the runner
    does not drop this source's frames for age). On the ``realtime`` clock frames are
    released at their recorded arrival times divided by ``speed``, and ``buffer`` and
    ``max_frame_age_ms`` act as on a live source.

    Attributes:
        path: Clip folder or video file (a video's frames arrive at its nominal fps).
        clock: ``virtual`` or ``realtime``.
        speed: Real-time speed factor (``realtime`` only).
        virtual_cost_ms: Modelled per-frame time of the pipeline's slowest stage, ms
            (0: lossless; ``virtual`` only).
        buffer: Capture buffer (modelled on the virtual clock; default: newest 2
            frames, ``drop_oldest``, as a live source).
        max_frame_age_ms: Freshness budget, ms (modelled on the virtual clock).
        max_frames: Replay only the first N recorded frames.
        decode_threads: FFmpeg decoder threads (0: FFmpeg's choice).
    """

    type: Literal["replay"]
    id: str = Field("replay", pattern=NAME_PATTERN)
    path: Path
    clock: Literal["virtual", "realtime"] = "virtual"
    speed: float = Field(1.0, gt=0.0, le=1000.0)
    virtual_cost_ms: float = Field(0.0, ge=0.0, le=600_000.0)
    buffer: QueueConfig = Field(default_factory=_live_buffer)
    max_frame_age_ms: float | None = Field(None, gt=0.0)
    max_frames: int | None = Field(None, ge=1)
    decode_threads: int = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _clock_options(self) -> ReplaySourceConfig:
        if self.clock == "virtual" and self.speed != 1.0:
            raise ValueError("speed needs clock: realtime (the virtual clock has no speed)")
        if self.clock == "realtime" and self.virtual_cost_ms != 0.0:
            raise ValueError("virtual_cost_ms needs clock: virtual")
        return self


SourceConfig = Annotated[
    VideoFileSourceConfig
    | RtspSourceConfig
    | CameraSourceConfig
    | GStreamerSourceConfig
    | ReplaySourceConfig,
    Field(discriminator="type"),
]


# -- stages --------------------------------------------------------------------------
class AdaptiveSlicingConfig(StrictModel):
    """Video mode of slicing: run only the tiles with motion or small objects.

    Attributes:
        full_sweep_every: Every this many frames all tiles run (and on the first).
        small_area_px: Detections smaller than this (pixels²) keep their tiles running.
        margin_px: Growth of a kept detection's box per frame of age, pixels.
        motion_threshold: Grey-level difference that counts as motion, (0, 255].
        motion_downscale: Frame differencing runs on a copy this many times smaller.
        motion_dilate_px: Dilation of the motion mask, frame pixels.
        min_motion_area_px: Motion inside a tile below this area (pixels²) is ignored.
    """

    full_sweep_every: int = Field(25, ge=1, le=100_000)
    small_area_px: float = Field(96.0 * 96.0, ge=0.0)
    margin_px: float = Field(16.0, ge=0.0)
    motion_threshold: float = Field(25.0, gt=0.0, le=255.0)
    motion_downscale: int = Field(4, ge=1, le=64)
    motion_dilate_px: int = Field(16, ge=0, le=1024)
    min_motion_area_px: float = Field(64.0, ge=0.0)


class SlicingConfig(StrictModel):
    """Sliced (SAHI) inference: overlapping tiles plus an optional full-frame pass.

    Attributes:
        tile_wh: Tile width and height, pixels; null: the model's input size.
        overlap_ratio: Overlap of neighbouring tiles as a fraction of the tile, [0, 1).
        overlap_px: Overlap in pixels (overrides ``overlap_ratio``).
        full_frame: Also detect on the whole frame, so large objects survive.
        max_tiles: Most tiles per frame (bigger tiles when the grid needs more).
        merge: ``nms``, ``nmm`` (greedy non-maximum merging) or ``none``.
        metric: ``iou`` or ``ios`` (intersection over the smaller box).
        merge_threshold: Boxes match when the metric is above this, (0, 1].
        class_aware: Merge only boxes of the same class.
        adaptive: Video mode: tiles only where there is motion or a small object,
            plus a periodic full sweep (one source per pipeline).
    """

    tile_wh: tuple[int, int] | None = None
    overlap_ratio: float = Field(0.2, ge=0.0, lt=1.0)
    overlap_px: int | None = Field(None, ge=0)
    full_frame: bool = True
    max_tiles: int | None = Field(None, ge=1)
    merge: Literal["nms", "nmm", "none"] = "nmm"
    metric: Literal["iou", "ios"] = "ios"
    merge_threshold: float = Field(0.5, gt=0.0, le=1.0)
    class_aware: bool = True
    adaptive: AdaptiveSlicingConfig | None = None


class CalibrationConfig(StrictModel):
    """INT8 calibration data of a TensorRT engine: frames sampled evenly from a clip.

    Attributes:
        video: A clip like the deployment's scenes (relative to the YAML's folder).
        frames: Frames to calibrate on (TensorRT recommends a few hundred).
    """

    video: Path
    frames: int = Field(200, ge=8, le=10_000)


class AccuracyGateConfig(StrictModel):
    """Refuse an INT8 engine whose detections fall too far below the FP16 engine's.

    Attributes:
        video: Validation clip (default: the calibration clip).
        frames: Frames compared, sampled evenly.
        min_recall_vs_fp16: Smallest share of the FP16 engine's detections the INT8
            engine must find (same class, IoU >= ``iou_threshold``), (0, 1].
        iou_threshold: IoU of a match, (0, 1].
    """

    video: Path | None = None
    frames: int = Field(100, ge=1, le=10_000)
    min_recall_vs_fp16: float = Field(0.9, gt=0.0, le=1.0)
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)


DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]+)?)$"
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


class DetectStageConfig(StrictModel):
    """YOLO detection (letterbox preprocessing in its own thread, then inference).

    GPU fields (see README, "GPU path"): ``backend`` (``onnxruntime``, ``tensorrt``,
    ``torch``), ``device`` (``cpu``, ``cuda``, ``cuda:N``), ``precision`` (``fp32``,
    ``fp16``, ``int8``: TensorRT only), ``preprocess`` (``cpu``: OpenCV; ``gpu``: torch
    on ``device``), ``engine_cache_dir`` (TensorRT; default ``$STREAMER_ENGINE_CACHE`` or
    ``~/.cache/streamer/engines``), ``workspace_mib`` (TensorRT builder),
    ``calibration`` and ``accuracy_gate`` (INT8), ``provider_options`` (ONNX Runtime
    execution-provider options by provider name).

    ``parallel_runs`` (backend ``onnxruntime``): for a model with a fixed batch, how
    many of its runs one batch (e.g. the tiles of a sliced frame) executes at once,
    each on ``intra_op_threads`` threads; see README, "Sliced inference".
    """

    type: Literal["detect"]
    name: str = Field("detect", pattern=NAME_PATTERN)
    preset: str | None = None
    backend: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    device: str = Field("cpu", pattern=DEVICE_PATTERN)
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    preprocess: Literal["cpu", "gpu"] = "cpu"
    engine_cache_dir: Path | None = None
    workspace_mib: int | None = Field(None, ge=16, le=1_048_576)
    calibration: CalibrationConfig | None = None
    accuracy_gate: AccuracyGateConfig | None = None
    provider_options: dict[str, dict[str, str | int | float | bool]] = Field(default_factory=dict)
    model: Path
    layout: Literal["auto", "ultralytics", "yolox", "end2end"] = "auto"
    conf_threshold: float = Field(0.25, gt=0.0, le=1.0)
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0)
    classes: list[str | int] | None = None
    class_names: list[str] | None = None
    max_detections: int = Field(300, ge=1, le=10_000)
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)
    intra_op_threads: int | None = Field(None, ge=1, le=256)
    parallel_runs: int = Field(1, ge=1, le=64)
    max_batch: int = Field(1, ge=1, le=256)
    max_wait_ms: float = Field(0.0, ge=0.0, le=10_000.0)
    slicing: SlicingConfig | None = None
    queue: QueueConfig | None = None

    @model_validator(mode="after")
    def _check_backend(self) -> DetectStageConfig:
        b = self.backend
        if b == "onnxruntime":
            if self.precision != "fp32":
                raise ValueError(
                    f"precision: {self.precision} needs backend tensorrt or torch; "
                    "onnxruntime runs the model's own precision (for FP16 on its TensorRT "
                    "provider set provider_options: {TensorrtExecutionProvider: "
                    "{trt_fp16_enable: true}})"
                )
            _check_providers(self.providers, self.provider_options)
            if self.device != "cpu" and not set(self.providers) & set(GPU_PROVIDERS):
                raise ValueError(
                    f"device: {self.device} with backend onnxruntime needs a GPU execution "
                    f"provider in providers ({', '.join(GPU_PROVIDERS)})"
                )
        else:
            if self.providers != ["CPUExecutionProvider"] or self.provider_options:
                raise ValueError(f"providers: apply to backend onnxruntime only, not {b}")
            if self.parallel_runs != 1:
                raise ValueError(f"parallel_runs: applies to backend onnxruntime only, not {b}")
        if b == "tensorrt" and not self.device.startswith("cuda"):
            raise ValueError("device: backend tensorrt needs device cuda or cuda:N")
        if b == "torch":
            if self.precision == "int8":
                raise ValueError("precision: int8 needs backend tensorrt (torch: fp32 or fp16)")
            if self.precision == "fp16" and not self.device.startswith("cuda"):
                raise ValueError("precision: fp16 on backend torch needs device cuda[:N]")
        if b != "tensorrt":
            for f in ("engine_cache_dir", "workspace_mib", "calibration", "accuracy_gate"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: applies to backend tensorrt only, not {b}")
        if self.precision == "int8" and self.calibration is None:
            raise ValueError(
                "calibration: an int8 engine needs calibration frames: "
                "calibration: {video: clip.mp4, frames: 200}"
            )
        if self.precision != "int8":
            for f in ("calibration", "accuracy_gate"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: applies to precision int8 only")
        if self.preprocess == "gpu" and self.slicing is not None:
            raise ValueError("preprocess: gpu is not supported with slicing (use cpu)")
        return self


def _check_providers(
    providers: list[str], options: dict[str, dict[str, str | int | float | bool]]
) -> None:
    """Provider names must be ones ONNX Runtime knows (installed or not)."""
    import onnxruntime as ort

    known = list(ort.get_all_providers())
    for i, p in enumerate(providers):
        if p not in known:
            raise ValueError(
                f"providers[{i}]: unknown ONNX Runtime execution provider {p!r}; known: "
                f"{', '.join(known)}"
            )
    for p in options:
        if p not in providers:
            raise ValueError(f"provider_options: {p!r} is not in providers {providers}")


class ByteTrackConfig(StrictModel):
    """ByteTrack (Zhang et al., ECCV 2022); see ``trackers.ByteTrack`` for each field.

    Attributes:
        high_threshold: Detections at or above go to the first association, (0, 1].
        low_threshold: Detections in [low, high) go to the second association, [0, high).
        new_track_threshold: An unmatched detection at or above starts a track, (0, 1].
        match_threshold: Largest IoU distance (1 - IoU) accepted in the first association.
        low_match_threshold: The same for the second (low-score) association.
        unconfirmed_match_threshold: The same for tracks seen only once so far.
        fuse_score: Weight IoU by detection confidence in the first association.
        lost_track_buffer_s: How long a lost track may be re-found, seconds (converted to
            frames with the stream's fps).
        max_lost_tracks: Cap on lost tracks kept (oldest dropped first).
        duplicate_iou: Tracked and lost tracks overlapping more than this are deduplicated.
        class_aware: Match tracks only to detections of the same class.
        output_coasting: Also report tracks not matched this frame (``det_index`` -1).
        min_hits: Matched frames in a row before a track is first reported (1: at once).
    """

    type: Literal["bytetrack"]
    high_threshold: float = Field(0.5, gt=0.0, le=1.0)
    low_threshold: float = Field(0.1, ge=0.0, le=1.0)
    new_track_threshold: float = Field(0.6, gt=0.0, le=1.0)
    match_threshold: float = Field(0.8, gt=0.0, le=1.0)
    low_match_threshold: float = Field(0.5, gt=0.0, le=1.0)
    unconfirmed_match_threshold: float = Field(0.7, gt=0.0, le=1.0)
    fuse_score: bool = True
    lost_track_buffer_s: float = Field(1.0, gt=0.0, le=3600.0)
    max_lost_tracks: int = Field(1000, ge=1, le=1_000_000)
    duplicate_iou: float = Field(0.85, gt=0.0, le=1.0)
    class_aware: bool = False
    output_coasting: bool = False
    min_hits: int = Field(1, ge=1, le=1000)

    @model_validator(mode="after")
    def _low_below_high(self) -> ByteTrackConfig:
        if self.low_threshold >= self.high_threshold:
            raise ValueError(
                f"low_threshold ({self.low_threshold}) must be below "
                f"high_threshold ({self.high_threshold})"
            )
        return self


class SortConfig(StrictModel):
    """SORT (Bewley et al., ICIP 2016); see ``trackers.Sort`` for each field.

    Attributes:
        iou_threshold: Smallest IoU of a track/detection match, (0, 1].
        lost_track_buffer_s: How long a track survives without a match, seconds
            (the reference's ``max_age`` frames divided by the fps).
        min_hits: Consecutive matches before a track is reported.
        det_threshold: Detections below this confidence are ignored, [0, 1].
        max_tracks: Cap on live tracks.
        class_aware: Match tracks only to detections of the same class.
        output_coasting: Also report tracks not matched this frame (``det_index`` -1).
    """

    type: Literal["sort"]
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    lost_track_buffer_s: float = Field(1.0 / 30.0, gt=0.0, le=3600.0)
    min_hits: int = Field(3, ge=1, le=1000)
    det_threshold: float = Field(0.0, ge=0.0, le=1.0)
    max_tracks: int = Field(10_000, ge=1, le=1_000_000)
    class_aware: bool = False
    output_coasting: bool = False


class OcSortConfig(StrictModel):
    """OC-SORT (Cao et al., CVPR 2023); see ``trackers.OcSort`` for each field.

    Attributes:
        det_threshold: Detections at or above take part in association, (0, 1].
        lost_track_buffer_s: How long a track survives without a match, seconds.
        min_hits: Consecutive matches before a track is reported.
        iou_threshold: Smallest IoU of a match, (0, 1].
        momentum_window_s: Time between the observations whose direction gives a
            track's velocity (observation-centric momentum), seconds.
        inertia: Weight of the direction-consistency cost, [0, 1].
        use_byte: Also associate low-score detections (BYTE), as in ByteTrack.
        low_threshold: Lowest confidence used by ``use_byte``, [0, det_threshold).
        max_tracks: Cap on live tracks.
        class_aware: Match tracks only to detections of the same class.
        output_coasting: Also report tracks not matched this frame (``det_index`` -1).
    """

    type: Literal["ocsort"]
    det_threshold: float = Field(0.6, gt=0.0, le=1.0)
    lost_track_buffer_s: float = Field(1.0, gt=0.0, le=3600.0)
    min_hits: int = Field(3, ge=1, le=1000)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    momentum_window_s: float = Field(0.1, gt=0.0, le=60.0)
    inertia: float = Field(0.2, ge=0.0, le=1.0)
    use_byte: bool = False
    low_threshold: float = Field(0.1, ge=0.0, le=1.0)
    max_tracks: int = Field(10_000, ge=1, le=1_000_000)
    class_aware: bool = False
    output_coasting: bool = False


TrackerConfig = Annotated[ByteTrackConfig | SortConfig | OcSortConfig, Field(discriminator="type")]
TRACKER_TYPES = ("bytetrack", "sort", "ocsort")


def _default_tracker() -> ByteTrackConfig:
    return ByteTrackConfig.model_validate({"type": "bytetrack"})


class TrackStageConfig(StrictModel):
    """Multi-object tracking, one tracker instance per source.

    ``tracker.type`` picks the algorithm (``bytetrack``, ``sort``, ``ocsort``); the
    other keys of ``tracker`` are that algorithm's parameters.
    """

    type: Literal["track"]
    name: str = Field("track", pattern=NAME_PATTERN)
    preset: str | None = None
    tracker: TrackerConfig = Field(default_factory=_default_tracker)
    queue: QueueConfig | None = None


AnchorName = Literal[
    "center",
    "center_left",
    "center_right",
    "top_center",
    "top_left",
    "top_right",
    "bottom_center",
    "bottom_left",
    "bottom_right",
]


def _bottom_center() -> list[AnchorName]:
    return ["bottom_center"]


class LineConfig(StrictModel):
    """A counting line (supervision ``LineZone``).

    Attributes:
        name: Name of the line in records and on the video.
        start_px: Start point ``[x, y]``, frame pixels.
        end_px: End point ``[x, y]``, frame pixels. Looking from start to end, a track
            crossing from right to left counts as "in", left to right as "out".
        triggering_anchors: Box points that must all change side for a crossing.
        minimum_crossing_threshold: Frames a track must stay on the new side, >= 1.
        classes: Class names or ids counted (null: every class).
    """

    name: str = Field(pattern=NAME_PATTERN)
    start_px: tuple[float, float]
    end_px: tuple[float, float]
    triggering_anchors: list[AnchorName] = Field(default_factory=_bottom_center, min_length=1)
    minimum_crossing_threshold: int = Field(1, ge=1, le=1000)
    classes: list[str | int] | None = None

    @model_validator(mode="after")
    def _not_a_point(self) -> LineConfig:
        if tuple(self.start_px) == tuple(self.end_px):
            raise ValueError(f"line {self.name!r}: start_px and end_px are the same point")
        return self


class ZoneConfig(StrictModel):
    """A polygon zone (supervision ``PolygonZone``): occupancy and dwell per track.

    Attributes:
        name: Name of the zone in records and on the video.
        polygon_px: Vertices ``[[x, y], ...]``, frame pixels, at least 3.
        triggering_anchors: Box points that must all be inside to count as inside.
        classes: Class names or ids counted (null: every class).
        exit_grace_s: A track counts as gone after being outside this long, seconds.
    """

    name: str = Field(pattern=NAME_PATTERN)
    polygon_px: list[tuple[float, float]] = Field(min_length=3)
    triggering_anchors: list[AnchorName] = Field(default_factory=_bottom_center, min_length=1)
    classes: list[str | int] | None = None
    exit_grace_s: float = Field(0.5, ge=0.0, le=3600.0)


class AnalyticsStageConfig(StrictModel):
    """Line-crossing counts and zone occupancy/dwell on the tracks (after ``track``).

    Attributes:
        sources: Source ids the lines and zones apply to (null: every source).
        lines: Counting lines.
        zones: Polygon zones.
    """

    type: Literal["analytics"]
    name: str = Field("analytics", pattern=NAME_PATTERN)
    sources: list[str] | None = None
    lines: list[LineConfig] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    queue: QueueConfig | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> AnalyticsStageConfig:
        if not self.lines and not self.zones:
            raise ValueError("an analytics stage needs at least one line or zone")
        for kind, items in (("line", self.lines), ("zone", self.zones)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind} names must be unique, repeated: {dupes}")
        return self


class AnnotatedVideoSinkConfig(StrictModel):
    """H.264 MP4 (libx264, yuv420p) with boxes, labels and motion trails drawn."""

    type: Literal["annotated_video"]
    name: str = Field("annotated_video", pattern=NAME_PATTERN)
    path: str = "annotated.mp4"
    crf: int = Field(23, ge=0, le=51)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = (
        "veryfast"
    )
    trace_length_s: float = Field(2.0, ge=0.0, le=60.0)
    queue: QueueConfig | None = None


class JsonlSinkConfig(StrictModel):
    """One JSON record per frame with its tracks (or detections)."""

    type: Literal["jsonl"]
    name: str = Field("jsonl", pattern=NAME_PATTERN)
    path: str = "tracks.jsonl"
    queue: QueueConfig | None = None


class MotSinkConfig(StrictModel):
    """MOTChallenge text rows ``frame,id,x,y,w,h,conf,-1,-1,-1`` (1-based frames)."""

    type: Literal["mot"]
    name: str = Field("mot", pattern=NAME_PATTERN)
    path: str = "tracks_mot.txt"
    queue: QueueConfig | None = None


class CurveConfig(StrictModel):
    """CURVE security of a ZeroMQ sink (key files made by ``zmq.auth.create_certificates``).

    Attributes:
        secret_key_path: This end's ``*.key_secret`` file.
        authorized_keys_dir: When binding: folder of the allowed clients' ``*.key`` files.
        server_public_key_path: When connecting: the server's ``*.key`` file.
    """

    secret_key_path: Path
    authorized_keys_dir: Path | None = None
    server_public_key_path: Path | None = None


class ZeroMqSinkConfig(StrictModel):
    """Per-frame messages over ZeroMQ (schema ``streamer.frame/1``, see README).

    Attributes:
        endpoint: ``tcp://127.0.0.1:5555`` (localhost by default).
        mode: ``pub`` (topic per source; drops at the high-water mark are counted) or
            ``push`` (waits up to ``send_timeout_ms`` for a consumer that must not lose
            messages).
        bind: Bind the endpoint (true) or connect to a SUB/PULL that binds (false).
        topic_prefix: Topic = prefix + source id (``pub``).
        format: ``json`` or ``msgpack``.
        send_hwm: Messages queued per peer before drops (``pub``) or waits (``push``).
        send_timeout_ms: Longest wait of a ``push`` send, ms.
        linger_ms: How long ``close`` may flush queued messages, ms.
        curve: Optional CURVE authentication and encryption.
    """

    type: Literal["zeromq"]
    name: str = Field("zeromq", pattern=NAME_PATTERN)
    endpoint: str = "tcp://127.0.0.1:5555"
    mode: Literal["pub", "push"] = "pub"
    bind: bool = True
    topic_prefix: str = ""
    format: Literal["json", "msgpack"] = "json"
    send_hwm: int = Field(1000, ge=1, le=10_000_000)
    send_timeout_ms: int = Field(100, ge=0, le=60_000)
    linger_ms: int = Field(1000, ge=0, le=60_000)
    curve: CurveConfig | None = None
    queue: QueueConfig | None = None


class MqttSinkConfig(StrictModel):
    """Per-frame summaries and stream events to an MQTT broker (paho-mqtt).

    Topics: ``{topic_prefix}/{source_id}/frames`` and ``.../events``.

    Attributes:
        host: Broker host.
        port: Broker port.
        topic_prefix: First topic level(s).
        qos: 0, 1 or 2. QoS >= 1 messages queue while the broker is down.
        retain: Broker keeps the last message per topic.
        client_id: MQTT client id (empty: random).
        username: User name, or null.
        password: Password (use ``${env:...}``; never printed).
        keepalive_s: MQTT keep-alive, seconds.
        max_queued: Unacknowledged messages kept; beyond this they are dropped (counted).
        reconnect_min_delay_s: First reconnect delay, seconds.
        reconnect_max_delay_s: Largest reconnect delay, seconds.
        connect_wait_s: How long ``open`` waits for the first connection, seconds.
        flush_timeout_s: How long ``close`` waits for acknowledgements, seconds.
        format: ``json`` or ``msgpack``.
    """

    type: Literal["mqtt"]
    name: str = Field("mqtt", pattern=NAME_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "streamer"
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    client_id: str = ""
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(30, ge=5, le=65535)
    max_queued: int = Field(1000, ge=1, le=10_000_000)
    reconnect_min_delay_s: int = Field(1, ge=1, le=3600)
    reconnect_max_delay_s: int = Field(30, ge=1, le=3600)
    connect_wait_s: float = Field(1.0, ge=0.0, le=60.0)
    flush_timeout_s: float = Field(5.0, ge=0.0, le=600.0)
    format: Literal["json", "msgpack"] = "json"
    queue: QueueConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> MqttSinkConfig:
        if self.reconnect_max_delay_s < self.reconnect_min_delay_s:
            raise ValueError(
                f"reconnect_max_delay_s ({self.reconnect_max_delay_s}) must be >= "
                f"reconnect_min_delay_s ({self.reconnect_min_delay_s})"
            )
        if self.password is not None and not self.username:
            raise ValueError("password needs a username")
        return self


class PreviewSinkConfig(StrictModel):
    """Live preview: annotated JPEG frames served as MJPEG by the run's HTTP server.

    Needs a server (a top-level ``server:`` block or ``streamer run --serve PORT``);
    frames are drawn and encoded only while someone watches (``/`` or
    ``/stream/<source_id>.mjpg``), and never wait for a slow viewer.

    Attributes:
        max_fps: Most frames per second and source sent to viewers.
        jpeg_quality: JPEG quality, 1-100.
        max_width_px: Scale wider frames down to this width (null: full size).
        trace_length_s: Motion-trail length, seconds (0: none).
    """

    type: Literal["preview"]
    name: str = Field("preview", pattern=NAME_PATTERN)
    max_fps: float = Field(10.0, gt=0.0, le=120.0)
    jpeg_quality: int = Field(80, ge=1, le=100)
    max_width_px: int | None = Field(None, ge=16, le=16384)
    trace_length_s: float = Field(2.0, ge=0.0, le=60.0)
    queue: QueueConfig | None = None


StageConfig = Annotated[
    DetectStageConfig
    | TrackStageConfig
    | AnalyticsStageConfig
    | AnnotatedVideoSinkConfig
    | JsonlSinkConfig
    | MotSinkConfig
    | ZeroMqSinkConfig
    | MqttSinkConfig
    | PreviewSinkConfig,
    Field(discriminator="type"),
]
SINK_TYPES = ("annotated_video", "jsonl", "mot", "zeromq", "mqtt", "preview")


class HealthConfig(StrictModel):
    """When ``/healthz`` reports the pipeline unhealthy (HTTP 503).

    Attributes:
        source_down_s: A source that has delivered no frame for this long is down,
            seconds (counted from the start of the run before its first frame).
    """

    source_down_s: float = Field(10.0, gt=0.0, le=86_400.0)


class ServerConfig(StrictModel):
    """The run's HTTP server: ``/metrics``, ``/healthz``, ``/stats.json``, ``/`` and
    ``/stream/<source_id>.mjpg``.

    Attributes:
        host: Address to bind (``127.0.0.1``: this machine only; ``0.0.0.0``: every
            interface, no authentication).
        port: TCP port; 0 picks a free one (printed on stderr at start).
        health: Health thresholds.
    """

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(9090, ge=0, le=65535)
    health: HealthConfig = Field(default_factory=HealthConfig)  # type: ignore[arg-type]


class PipelineConfig(StrictModel):
    """A whole pipeline.

    Attributes:
        name: Pipeline name (used in the default run directory).
        sources: One or more sources; ids must be unique.
        stages: Stages in order: ``detect``, then optionally ``track``, then sinks.
        queue: Default capacity/policy of every channel; a stage's ``queue`` overrides it.
        output_dir: Run directory; ``{name}`` and ``{timestamp}`` are filled in. Relative
            paths are relative to the working directory. Sink paths are relative to it.
        server: HTTP server for metrics, health and the live preview (null: none).
    """

    name: str = Field(pattern=NAME_PATTERN)
    sources: list[SourceConfig] = Field(min_length=1)
    stages: list[StageConfig] = Field(min_length=1)
    queue: QueueConfig = Field(default_factory=QueueConfig)  # type: ignore[arg-type]
    output_dir: str = "runs/{name}-{timestamp}"
    server: ServerConfig | None = None
    # YAML path -> original string of every value that used ${env:...} (set by the
    # loader; the resolved config writes these templates back instead of the values).
    _env_templates: dict[tuple[Any, ...], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineConfig:
        ids = [s.id for s in self.sources]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"source ids must be unique, repeated: {dupes}")
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique, repeated: {dupes} (set 'name:')")
        kinds = [s.type for s in self.stages]
        if kinds.count("detect") != 1 or kinds[0] != "detect":
            raise ValueError("stages must start with exactly one 'detect' stage")
        if kinds.count("track") > 1:
            raise ValueError("at most one 'track' stage")
        if "track" in kinds and kinds.index("track") != 1:
            raise ValueError("the 'track' stage must come right after 'detect'")
        for i, st in enumerate(self.stages):
            if st.type != "analytics":
                continue
            if "track" not in kinds:
                raise ValueError(f"stages[{i}]: an 'analytics' stage needs a 'track' stage")
            if i != kinds.index("track") + 1 and any(
                k in SINK_TYPES for k in kinds[kinds.index("track") + 1 : i]
            ):
                raise ValueError(f"stages[{i}]: 'analytics' must come before the sinks")
            unknown = sorted(set(st.sources or ()) - set(ids))
            if unknown:
                raise ValueError(
                    f"stages[{i}].sources: unknown source ids {unknown} (known: {ids})"
                )
        if len(self.sources) > 1:
            det = self.stages[0]
            if det.type == "detect" and det.slicing is not None and det.slicing.adaptive:
                raise ValueError(
                    "stages[0].slicing.adaptive: keeps per-stream state and supports one "
                    f"source per pipeline, got {len(self.sources)}"
                )
            for i, st in enumerate(self.stages):
                if st.type in ("annotated_video", "mot") and "{source_id}" not in st.path:
                    raise ValueError(
                        f"stages[{i}].path: with several sources the path must contain "
                        f"'{{source_id}}', got {st.path!r}"
                    )
        return self
