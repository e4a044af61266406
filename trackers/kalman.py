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

Packed state
------------
The model decouples into the four coordinates: the motion matrix, the process noise,
the measurement matrix (``H`` selects the four positions) and the measurement noise
only ever couple a coordinate's position with its own velocity. A covariance that
starts diagonal (as :meth:`KalmanFilterXYAH.initiate` makes it) therefore stays a set
of four 2x2 blocks ``[[pp, pv], [vp, vv]]``, one per coordinate, and every other
entry stays exactly 0. The ``*_packed`` methods keep only those blocks, in a
component-major ``(24, N)`` array (one contiguous row per quantity, so that numpy
works on whole rows)::

    rows  0- 3  mean position   cx, cy, a, h
    rows  4- 7  mean velocity   vcx, vcy, va, vh
    rows  8-11  pp  variance of each position
    rows 12-15  pv  covariance position -> velocity (full matrix entry [k, k + 4])
    rows 16-19  vp  covariance velocity -> position (entry [k + 4, k])
    rows 20-23  vv  variance of each velocity

``pv`` and ``vp`` are equal in exact arithmetic; both are kept because the general
8x8 update rounds them differently, and the packed methods reproduce the results of
:meth:`~KalmanFilterXYAH.predict` / :meth:`~KalmanFilterXYAH.update` bit for bit
(tested in ``tests/unit/test_kalman_matching.py``). With them the whole filter is a
few elementwise operations on ``(4, N)`` rows: no 8x8 products, no solve.
:func:`pack_state` and :func:`unpack_state` convert between the two forms.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]

_DIAG8 = np.arange(8)
_DIAG4 = np.arange(4)

PACKED_ROWS = 24
"""Rows of a packed state (see the module docstring)."""


def xyxy_to_xyah(xyxy: npt.ArrayLike) -> Float64Array:
    """Convert ``(N, 4)`` corner boxes to ``(N, 4)`` ``(cx, cy, w / h, h)``.

    Args:
        xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``, pixels. Heights must be > 0.

    Returns:
        ``(N, 4) float64`` boxes ``(center x, center y, aspect w/h, height)``.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return xyxy_to_xyah_rows(b.T).T.copy()


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
    return xyah_to_xyxy_rows(s.T).T.copy()


def xyxy_to_xyah_rows(xyxy: Float64Array) -> Float64Array:
    """Component-major :func:`xyxy_to_xyah`: ``(4, N)`` rows ``x1, y1, x2, y2`` in,
    a new C-contiguous ``(4, N)`` array of rows ``cx, cy, a, h`` out (same arithmetic)."""
    out = np.empty((4, xyxy.shape[1]))
    wh = xyxy[2:4] - xyxy[0:2]
    np.multiply(wh, 0.5, out[0:2])
    out[0:2] += xyxy[0:2]  # x1 + 0.5 * w
    np.divide(wh[0], wh[1], out[2])
    out[3] = wh[1]
    return out


def xyah_to_xyxy_rows(xyah: Float64Array) -> Float64Array:
    """Component-major :func:`xyah_to_xyxy`: ``(>=4, N)`` rows ``cx, cy, a, h, ...`` in
    (a packed state works), a new C-contiguous ``(4, N)`` array ``x1, y1, x2, y2`` out."""
    half = np.empty((2, xyah.shape[1]))
    np.multiply(xyah[3], 0.5, half[1])  # half height
    np.multiply(xyah[2], half[1], half[0])  # half width = a * (h / 2)
    out = np.empty((4, xyah.shape[1]))
    np.subtract(xyah[0:2], half, out[0:2])
    np.add(xyah[0:2], half, out[2:4])
    return out


def pack_state(mean: npt.ArrayLike, covariance: npt.ArrayLike) -> Float64Array:
    """Packed ``(24, N)`` state of ``mean (N, 8)`` and ``covariance (N, 8, 8)``.

    Only the entries of the four per-coordinate 2x2 blocks are kept (see the module
    docstring); the others are assumed 0, as they are for every covariance this
    filter produces from :meth:`KalmanFilterXYAH.initiate`.
    """
    m = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
    p = np.asarray(covariance, dtype=np.float64).reshape(-1, 8, 8)
    out = np.empty((PACKED_ROWS, m.shape[0]))
    out[0:8] = m.T
    out[8:12] = p[:, _DIAG4, _DIAG4].T
    out[12:16] = p[:, _DIAG4, _DIAG4 + 4].T
    out[16:20] = p[:, _DIAG4 + 4, _DIAG4].T
    out[20:24] = p[:, _DIAG4 + 4, _DIAG4 + 4].T
    return out


def unpack_state(packed: npt.ArrayLike) -> tuple[Float64Array, Float64Array]:
    """``mean (N, 8)`` and ``covariance (N, 8, 8)`` of a packed ``(24, N)`` state."""
    x = np.asarray(packed, dtype=np.float64)
    n = x.shape[1]
    cov = np.zeros((n, 8, 8))
    cov[:, _DIAG4, _DIAG4] = x[8:12].T
    cov[:, _DIAG4, _DIAG4 + 4] = x[12:16].T
    cov[:, _DIAG4 + 4, _DIAG4] = x[16:20].T
    cov[:, _DIAG4 + 4, _DIAG4 + 4] = x[20:24].T
    return x[0:8].T.copy(), cov


class KalmanFilterXYAH:
    """Batched constant-velocity Kalman filter in ``(cx, cy, a, h)`` image space.

    Two interfaces with the same arithmetic: the general one on ``mean (N, 8)`` and
    ``covariance (N, 8, 8)`` (:meth:`initiate`, :meth:`predict`, :meth:`project`,
    :meth:`update`, each returning new arrays), and the fast one on a packed
    ``(24, N)`` state (:meth:`initiate_packed`, :meth:`predict_packed`,
    :meth:`update_packed`, in place; see the module docstring).

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
        # Standard deviations are ``h * scale + offset`` (vectors over the state).
        wp, wv = self._wp, self._wv
        self._init_scale = np.array([2 * wp, 2 * wp, 0, 2 * wp, 10 * wv, 10 * wv, 0, 10 * wv])
        self._init_offset = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])
        self._process_scale = np.array([wp, wp, 0, wp, wv, wv, 0, wv])
        self._process_offset = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])
        self._measure_scale = np.array([wp, wp, 0, wp])
        self._measure_offset = np.array([0, 0, 1e-1, 0])
        # The same as columns, for the component-major packed methods.
        self._init_scale_c = self._init_scale[:, None].copy()
        self._init_offset_c = self._init_offset[:, None].copy()
        self._process_scale_c = self._process_scale[:, None].copy()
        self._process_offset_c = self._process_offset[:, None].copy()
        self._measure_scale_c = self._measure_scale[:, None].copy()
        self._measure_offset_c = self._measure_offset[:, None].copy()
        # Variances of the aspect rows, whose std is the offset alone (0 * h + offset).
        self._process_var_aspect = (self._process_offset[2::4] ** 2)[:, None].copy()
        self._measure_var_a = self._measure_offset[2] * self._measure_offset[2]

    # ---------------------------------------------------------------- general

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
        new_mean = mean.copy()
        new_mean[:, :4] += mean[:, 4:]
        # F P F^T with F = [[I, I], [0, I]] and P = [[A, B], [C, D]] is
        # [[(A + C) + (B + D), B + D], [C + D, D]]; every sum has the two terms the
        # matrix product would add, so the result is the same to the last bit.
        new_cov = covariance.copy()
        bd = covariance[:, :4, 4:] + covariance[:, 4:, 4:]
        new_cov[:, :4, :4] = (covariance[:, :4, :4] + covariance[:, 4:, :4]) + bd
        new_cov[:, :4, 4:] = bd
        new_cov[:, 4:, :4] += covariance[:, 4:, 4:]
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

    # ----------------------------------------------------------------- packed

    def initiate_packed(self, measurement: Float64Array) -> Float64Array:
        """Packed :meth:`initiate`.

        Args:
            measurement: ``(4, N)`` rows ``cx, cy, a, h`` (component-major), ``h > 0``.

        Returns:
            A new packed state ``(24, N) float64``.
        """
        x = np.zeros((PACKED_ROWS, measurement.shape[1]))
        x[0:4] = measurement
        std = self._init_scale_c * measurement[3] + self._init_offset_c
        var = np.multiply(std, std, std)
        x[8:12] = var[0:4]
        x[20:24] = var[4:8]
        return x

    def predict_packed(self, x: Float64Array) -> None:
        """Packed :meth:`predict`, in place.

        Args:
            x: ``(24, N)`` packed states, C-contiguous (e.g. a row range of a
                C-contiguous array).

        Raises:
            ValueError: if ``x`` is not C-contiguous.
        """
        if not x.flags.c_contiguous:
            raise ValueError("x: must be C-contiguous (it is updated in place)")
        n = x.shape[1]
        # Process noise variances (8, N): std = h * scale + offset, squared; the
        # offset is 0 except in the aspect rows, whose std is the offset alone (an
        # outer product as matmul, exactly h * scale, is the cheapest broadcast).
        q = np.matmul(self._process_scale_c, x[3:4])
        q *= q
        q[2::4] = self._process_var_aspect  # rows 2 and 6
        x[0:4] += x[4:8]
        # Per coordinate F P F^T, F = [[1, 1], [0, 1]], with the sums of predict():
        # pp' = (pp + vp) + (pv + vv), pv' = pv + vv, vp' = vp + vv, vv' = vv.
        pp_vp = x[8:12] + x[16:20]
        pv_vp = x[12:20].reshape(2, 4, n)
        pv_vp += x[20:24]
        np.add(pp_vp, x[12:16], x[8:12])
        x[8:12] += q[0:4]
        x[20:24] += q[4:8]

    def update_packed(self, x: Float64Array, measurement: Float64Array) -> None:
        """Packed :meth:`update`, in place.

        The innovation covariance of each coordinate is the scalar ``s = pp + r``, the
        gain ``(pp, pv) / s`` (computed as ``* (1 / s)``, which is what LAPACK's solve
        does with a diagonal matrix, so the results equal :meth:`update`'s).

        Args:
            x: ``(24, N)`` packed predicted states, C-contiguous (e.g. a row range of
                a C-contiguous array).
            measurement: ``(4, N)`` rows ``cx, cy, a, h`` associated with the tracks.

        Raises:
            ValueError: if ``x`` is not C-contiguous.
        """
        if not x.flags.c_contiguous:
            raise ValueError("x: must be C-contiguous (it is updated in place)")
        n = x.shape[1]
        s = np.matmul(self._measure_scale_c, x[3:4])  # measurement std, but aspect
        s *= s
        s[2] = self._measure_var_a
        s += x[8:12]  # innovation variances, (4, N)
        gain = x[8:16].reshape(2, 4, n) * (1.0 / s)  # K_p, K_v
        # mean += K (z - mean), and P -= K S K^T, which per coordinate is
        # [[Kp S Kp, Kp S Kv], [Kv S Kp, Kv S Kv]]: one product of the rows
        # (mean - z, Kp S, Kv S) with (Kp, Kv) updates all 24 rows.
        left = np.empty((3, 4, n))
        np.subtract(x[0:4], measurement, left[0])
        np.multiply(gain, s, left[1:3])
        x3 = x.reshape(3, 2, 4, n)
        x3 -= left[:, None] * gain
