"""SORT's constant-velocity Kalman filter on ``(cx, cy, s, r)`` boxes, batched over tracks.

The model of SORT (Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016;
reference ``abewley/sort`` ``sort.py``, ``KalmanBoxTracker``), which OC-SORT (Cao et
al., CVPR 2023; ``noahcao/OC_SORT``) keeps: the state is the 7-vector
``(cx, cy, s, r, vcx, vcy, vs)`` with box centre ``cx, cy`` (pixels), area
``s = w * h`` (pixels²) and aspect ratio ``r = w / h``; the aspect ratio has no
velocity. One time step is one frame. The measurement is ``(cx, cy, s, r)``. Noise,
as in the reference (filterpy's identity matrices scaled):

* initial covariance ``P0 = diag(10, 10, 10, 10, 1e4, 1e4, 1e4)``
  (``P[4:, 4:] *= 1000; P *= 10``),
* process noise ``Q = diag(1, 1, 1, 1, 1e-2, 1e-2, 1e-4)``
  (``Q[-1, -1] *= 0.01; Q[4:, 4:] *= 0.01``),
* measurement noise ``R = diag(1, 1, 10, 10)`` (``R[2:, 2:] *= 10``),
* before each prediction the area velocity is zeroed if it would make the area
  non-positive (``if s + vs <= 0: vs = 0``).

Because ``P0``, ``Q`` and ``R`` are diagonal and the transition only couples each
coordinate with its own velocity, the covariance stays block diagonal for ever:
three 2x2 blocks ``(cx, vcx)``, ``(cy, vcy)``, ``(s, vs)`` and a scalar for ``r``
(in the reference's 7x7 computation the other entries stay exact zeros). The
filter is therefore four independent scalar position/velocity filters, and this
module stores, per coordinate ``k`` in ``(cx, cy, s, r)`` and track ``n``, only the
five numbers that can be non-zero, in one *component-major* ``(5, 4, N) float64``
state array ``state[row, k, n]`` (tracks on the last axis, so that every row is a
contiguous ``(4, N)`` block and an operation on all tracks is one fast numpy call):

====  ==========================================  ============
row   meaning                                     for ``r``
====  ==========================================  ============
0     position (mean of ``cx, cy, s, r``)
1     velocity (mean of ``vcx, vcy, vs``)          always 0
2     variance of the position
3     covariance of position and velocity         always 0
4     variance of the velocity                    always 0
====  ==========================================  ============

Prediction and correction of all tracks are then a handful of elementwise numpy
operations. The results equal those of the 7x7 matrix filter up to rounding (the
reference updates the covariance in Joseph form, this module in the equivalent
``P - K S K^T`` form). :meth:`KalmanFilterXYSR.mean` and
:meth:`KalmanFilterXYSR.covariance` expand a state to the reference's 7-vectors and
7x7 matrices.

Boxes are component-major too where the filter takes or returns them (``(4, N)``:
rows ``x1, y1, x2, y2`` or ``cx, cy, s, r``); :func:`xyxy_to_xysr` and
:func:`xysr_to_xyxy` convert the usual row-major ``(N, 4)`` boxes.

The filter holds no per-track state and is safe to share between threads; its
methods that take a ``state`` modify it in place (pass a copy to keep the input).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]

POS, VEL, VAR_POS, COV_PV, VAR_VEL = 0, 1, 2, 3, 4
"""Row indices (first axis) of the ``(5, 4, N)`` state array."""

# Transition of one coordinate's (position, velocity, var_pos, cov_pv, var_vel) per
# frame with x' = x + v: var_pos' = var_pos + 2 cov_pv + var_vel, cov_pv' = cov_pv +
# var_vel; the process noise is added afterwards.
_TRANSITION = np.array(
    [
        [1.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 2.0, 1.0],
        [0.0, 0.0, 0.0, 1.0, 1.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)


def xyxy_to_xysr_cm(corners: Float64Array) -> Float64Array:
    """Component-major ``(4, N)`` rows ``x1, y1, x2, y2`` to ``(4, N)`` ``cx, cy, s, r``.

    Heights must be > 0.
    """
    out = np.empty_like(corners, dtype=np.float64)
    wh = corners[2:4] - corners[0:2]
    np.add(corners[0:2], 0.5 * wh, out=out[0:2])
    np.multiply(wh[0], wh[1], out=out[2])
    np.divide(wh[0], wh[1], out=out[3])
    return out


def xysr_to_xyxy_cm(xysr: Float64Array) -> Float64Array:
    """Component-major ``(4, N)`` rows ``cx, cy, s, r`` to ``(4, N)`` ``x1, y1, x2, y2``.

    ``w = sqrt(s * r)``, ``h = s / w`` as in the reference; columns with ``s * r < 0``
    or ``s = 0`` give non-finite boxes (the trackers drop such tracks, as the
    reference does).
    """
    n = xysr.shape[1]
    half = np.empty((2, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        np.sqrt(xysr[2] * xysr[3], out=half[0])
        np.divide(xysr[2], half[0], out=half[1])
    half *= 0.5
    out = np.empty((4, n))
    np.subtract(xysr[0:2], half, out=out[0:2])
    np.add(xysr[0:2], half, out=out[2:4])
    return out


def xyxy_to_xysr(xyxy: npt.ArrayLike) -> Float64Array:
    """Convert ``(N, 4)`` corner boxes to ``(N, 4)`` ``(cx, cy, s, r)``.

    Args:
        xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``, pixels, with positive height.

    Returns:
        ``(N, 4) float64`` rows ``(centre x, centre y, area w*h, aspect w/h)``.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.ascontiguousarray(xyxy_to_xysr_cm(b.T).T)


def xysr_to_xyxy(xysr: npt.ArrayLike) -> Float64Array:
    """Convert ``(N, 4)`` ``(cx, cy, s, r)`` rows to ``(N, 4)`` corner boxes.

    ``w = sqrt(s * r)``, ``h = s / w`` as in the reference; rows with ``s * r < 0``
    or ``s = 0`` give non-finite boxes.

    Args:
        xysr: ``(N, 4)`` rows ``(centre x, centre y, area, aspect)``.

    Returns:
        ``(N, 4) float64`` boxes ``(x1, y1, x2, y2)``, pixels.
    """
    z = np.asarray(xysr, dtype=np.float64).reshape(-1, 4)
    return np.ascontiguousarray(xysr_to_xyxy_cm(z.T).T)


class KalmanFilterXYSR:
    """Batched SORT Kalman filter on ``(5, 4, N)`` states (see the module docstring).

    The noise settings are the reference's and fixed.

    Thread-safety: stateless after construction; safe to share.
    """

    ndim = 7
    """Dimension of the reference's state vector ``(cx, cy, s, r, vcx, vcy, vs)``."""

    def __init__(self) -> None:
        self._p0_pos = np.array([10.0, 10.0, 10.0, 10.0])[:, None]
        self._p0_vel = np.array([1e4, 1e4, 1e4, 0.0])[:, None]
        self._r = np.array([1.0, 1.0, 10.0, 10.0])[:, None]
        noise = np.zeros((5, 4, 1))
        noise[VAR_POS, :, 0] = [1.0, 1.0, 1.0, 1.0]
        noise[VAR_VEL, :, 0] = [1e-2, 1e-2, 1e-4, 0.0]
        self._noise = noise

    def initiate(self, measurement: Float64Array) -> Float64Array:
        """Create states from first measurements (zero velocity, ``P0``).

        Args:
            measurement: ``(4, N)`` rows ``cx, cy, s, r``.

        Returns:
            A new ``(5, 4, N) float64`` state array.
        """
        n = measurement.shape[1]
        state = np.zeros((5, 4, n))
        state[POS] = measurement
        state[VAR_POS] = self._p0_pos
        state[VAR_VEL] = self._p0_vel
        return state

    def predict(self, state: Float64Array) -> None:
        """Advance every track one frame, in place.

        The area velocity is first zeroed where ``s + vs <= 0`` (as in the reference).

        Args:
            state: ``(5, 4, N)`` states (may be a view), modified in place.
        """
        vs = state[VEL, 2]
        shrink = state[POS, 2] + vs <= 0.0
        if shrink.any():
            vs[shrink] = 0.0
        if state.flags.c_contiguous:
            flat = state.reshape(5, -1)
            flat[...] = _TRANSITION @ flat
        else:
            state[POS] += state[VEL]
            state[VAR_POS] += 2.0 * state[COV_PV] + state[VAR_VEL]
            state[COV_PV] += state[VAR_VEL]
        state += self._noise

    def update(self, state: Float64Array, measurement: Float64Array) -> None:
        """Correct every track with one measurement each, in place.

        Args:
            state: ``(5, 4, N)`` predicted states (may be a view), modified in place.
            measurement: ``(4, N)`` rows ``cx, cy, s, r`` associated with the tracks.
        """
        inv_s = 1.0 / (state[VAR_POS] + self._r)  # the innovation covariance S is diagonal
        gain = state[VAR_POS : COV_PV + 1] * inv_s  # (2, 4, N): position and velocity gains
        innovation = measurement - state[POS]
        state[POS : VEL + 1] += gain * innovation
        state[VAR_VEL] -= gain[1] * state[COV_PV]
        state[VAR_POS : COV_PV + 1] *= self._r * inv_s  # times 1 - position gain

    @staticmethod
    def boxes(state: Float64Array) -> Float64Array:
        """``(4, N)`` rows ``x1, y1, x2, y2`` of the state means, pixels."""
        return xysr_to_xyxy_cm(state[POS])

    @staticmethod
    def mean(state: Float64Array) -> Float64Array:
        """Expand states to the reference's ``(N, 7)`` means ``(cx, cy, s, r, vcx, vcy, vs)``."""
        return np.concatenate([state[POS], state[VEL, :3]]).T.copy()

    @staticmethod
    def covariance(state: Float64Array) -> Float64Array:
        """Expand states to the reference's ``(N, 7, 7)`` covariance matrices."""
        n = state.shape[2]
        cov = np.zeros((n, 7, 7))
        k = np.arange(4)
        v = np.arange(4, 7)
        cov[:, k, k] = state[VAR_POS].T
        cov[:, v, v] = state[VAR_VEL, :3].T
        cov[:, k[:3], v] = state[COV_PV, :3].T
        cov[:, v, k[:3]] = state[COV_PV, :3].T
        return cov
