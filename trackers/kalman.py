"""Constant-velocity Kalman filter on ``(cx, cy, aspect, h)`` boxes, batched over tracks.

The model is the one of SORT/DeepSORT that ByteTrack reuses (Wojke et al., "Simple
Online and Realtime Tracking with a Deep Association Metric", ICIP 2017; ByteTrack
reference ``ifzhang/ByteTrack`` ``yolox/tracker/kalman_filter.py``): the state is
``(cx, cy, a, h, vcx, vcy, va, vh)`` with ``a = w / h``, one time step is one frame,
and the process and measurement noise scale with the box height ``h``.

Unlike the reference, every method works on a batch of ``N`` tracks at once
(``mean (N, 8)``, ``covariance (N, 8, 8)``), so a tracker predicts or updates all
its tracks with a few numpy operations instead of a Python loop per track.

All arrays are ``float64``; positions and sizes are pixels, velocities pixels per
frame (``va`` is aspect per frame). The filter holds no per-track state and is
safe to share between threads.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]

_DIAG8 = np.arange(8)
_DIAG4 = np.arange(4)


def xyxy_to_xyah(xyxy: npt.ArrayLike) -> Float64Array:
    """Convert ``(N, 4)`` corner boxes to ``(N, 4)`` ``(cx, cy, w / h, h)``.

    Args:
        xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``, pixels. Heights must be > 0.

    Returns:
        ``(N, 4) float64`` boxes ``(center x, center y, aspect w/h, height)``.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    out = np.empty_like(b)
    wh = b[:, 2:] - b[:, :2]
    out[:, :2] = b[:, :2] + 0.5 * wh
    out[:, 2] = wh[:, 0] / wh[:, 1]
    out[:, 3] = wh[:, 1]
    return out


def xyah_to_xyxy(xyah: npt.ArrayLike) -> Float64Array:
    """Convert ``(N, >=4)`` ``(cx, cy, w / h, h, ...)`` rows to ``(N, 4)`` corner boxes.

    Only the first four columns are read, so a Kalman ``mean (N, 8)`` can be passed
    directly.

    Args:
        xyah: ``(N, >=4)`` rows whose first columns are center x, center y, aspect,
            height (pixels).

    Returns:
        ``(N, 4) float64`` boxes ``(x1, y1, x2, y2)``, pixels.
    """
    s = np.asarray(xyah, dtype=np.float64)
    s = s.reshape(-1, s.shape[-1]) if s.size else np.zeros((0, 4))
    half = np.empty((s.shape[0], 2))
    half[:, 1] = 0.5 * s[:, 3]
    half[:, 0] = s[:, 2] * half[:, 1]
    return np.concatenate([s[:, :2] - half, s[:, :2] + half], axis=1)


class KalmanFilterXYAH:
    """Batched constant-velocity Kalman filter in ``(cx, cy, a, h)`` image space.

    Args:
        std_weight_position: Standard deviation of position noise relative to the
            box height, > 0. Default ``1 / 20`` as in the reference.
        std_weight_velocity: Standard deviation of velocity noise relative to the
            box height, > 0. Default ``1 / 160`` as in the reference.

    Raises:
        ValueError: if a weight is not a finite number > 0.

    Thread-safety: stateless after construction; safe to share.
    """

    ndim = 4

    def __init__(
        self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160
    ) -> None:
        for name, value in (
            ("std_weight_position", std_weight_position),
            ("std_weight_velocity", std_weight_velocity),
        ):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
        self._wp = float(std_weight_position)
        self._wv = float(std_weight_velocity)
        motion = np.eye(8)
        motion[:4, 4:] = np.eye(4)  # x' = x + v * dt, dt = 1 frame
        self._motion = motion
        self._motion_t = motion.T.copy()
        # Standard deviations are ``h * scale + offset`` (vectors over the state).
        wp, wv = self._wp, self._wv
        self._init_scale = np.array([2 * wp, 2 * wp, 0, 2 * wp, 10 * wv, 10 * wv, 0, 10 * wv])
        self._init_offset = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])
        self._process_scale = np.array([wp, wp, 0, wp, wv, wv, 0, wv])
        self._process_offset = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])
        self._measure_scale = np.array([wp, wp, 0, wp])
        self._measure_offset = np.array([0, 0, 1e-1, 0])

    def initiate(self, measurement: npt.ArrayLike) -> tuple[Float64Array, Float64Array]:
        """Create tracks from unassociated measurements.

        Args:
            measurement: ``(N, 4)`` boxes ``(cx, cy, a, h)``, pixels, ``h > 0``.

        Returns:
            ``mean (N, 8) float64`` (zero velocity) and ``covariance (N, 8, 8) float64``.
        """
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        n = z.shape[0]
        mean = np.concatenate([z, np.zeros((n, 4))], axis=1)
        std = z[:, 3:4] * self._init_scale + self._init_offset
        cov = np.zeros((n, 8, 8))
        cov[:, _DIAG8, _DIAG8] = std * std
        return mean, cov

    def predict(
        self, mean: Float64Array, covariance: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        """Advance every track one frame.

        Args:
            mean: ``(N, 8)`` state means.
            covariance: ``(N, 8, 8)`` state covariances.

        Returns:
            New ``mean (N, 8)`` and ``covariance (N, 8, 8)`` arrays (inputs untouched).
        """
        std = mean[:, 3:4] * self._process_scale + self._process_offset
        new_mean = mean @ self._motion_t
        new_cov = self._motion @ covariance @ self._motion_t
        new_cov[:, _DIAG8, _DIAG8] += std * std
        return new_mean, new_cov

    def project(
        self, mean: Float64Array, covariance: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        """Project states into measurement space.

        Args:
            mean: ``(N, 8)`` state means.
            covariance: ``(N, 8, 8)`` state covariances.

        Returns:
            ``mean (N, 4)`` and innovation covariance ``(N, 4, 4)`` (measurement noise
            included).
        """
        std = mean[:, 3:4] * self._measure_scale + self._measure_offset
        cov = covariance[:, :4, :4].copy()
        cov[:, _DIAG4, _DIAG4] += std * std
        return mean[:, :4].copy(), cov

    def update(
        self, mean: Float64Array, covariance: Float64Array, measurement: npt.ArrayLike
    ) -> tuple[Float64Array, Float64Array]:
        """Correct every track with one measurement each.

        Args:
            mean: ``(N, 8)`` predicted state means.
            covariance: ``(N, 8, 8)`` predicted state covariances.
            measurement: ``(N, 4)`` boxes ``(cx, cy, a, h)`` associated with the tracks.

        Returns:
            Corrected ``mean (N, 8)`` and ``covariance (N, 8, 8)`` (inputs untouched).
        """
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        if z.shape[0] == 0:
            return mean.copy(), covariance.copy()
        proj_mean, proj_cov = self.project(mean, covariance)
        # Kalman gain K = P H^T S^-1; with S symmetric, S K^T = H P.
        gain_t = np.linalg.solve(proj_cov, covariance[:, :4, :])  # (N, 4, 8) = K^T
        innovation = z - proj_mean
        new_mean = mean + np.einsum("ni,nij->nj", innovation, gain_t)
        new_cov = covariance - np.transpose(gain_t, (0, 2, 1)) @ proj_cov @ gain_t
        return new_mean, new_cov
