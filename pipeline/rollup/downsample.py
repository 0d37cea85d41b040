"""Chart downsampling: largest-triangle-three-buckets plus the points a speed chart must never lose."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Series", "chart_indices", "lttb_indices", "required_indices"]

Series = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]
"""A 1-D run of numbers: a list, a range, an array."""


def _as_floats(xs: Series, ys: Series) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"xs and ys must be 1-D and of equal length, got {x.shape} and {y.shape}")
    return x, y


def lttb_indices(xs: Series, ys: Series, n_out: int) -> list[int]:
    """Indices (sorted, unique) of at most `n_out` points chosen by largest-triangle-three-buckets.

    The first and last points are always kept; with `len(xs) <= n_out` every index is returned.
    """
    if n_out < 2:
        raise ValueError(f"n_out must be at least 2 (first and last point), got {n_out}")
    x, y = _as_floats(xs, ys)
    n = len(x)
    if n <= n_out:
        return list(range(n))
    if n_out == 2:
        return [0, n - 1]
    # Epoch seconds are ~1.7e9: shifting to the first sample keeps the area products well inside
    # float64 precision.
    x = x - x[0]
    # Bucket b (0-based) covers [edges[b], edges[b + 1]) of the inner points 1..n-2.
    edges = (np.arange(n_out - 1, dtype=np.float64) * ((n - 2) / (n_out - 2))).astype(np.int64) + 1
    edges[-1] = n - 1
    picked = [0]
    a = 0
    for b in range(n_out - 2):
        lo, hi = int(edges[b]), int(edges[b + 1])
        if b + 2 < len(edges):
            nlo, nhi = hi, int(edges[b + 2])
            cx, cy = float(x[nlo:nhi].mean()), float(y[nlo:nhi].mean())
        else:
            cx, cy = float(x[-1]), float(y[-1])
        ax, ay = float(x[a]), float(y[a])
        # Twice the triangle area; the constant factor does not change the argmax.
        area = np.abs((ax - cx) * (y[lo:hi] - ay) - (ax - x[lo:hi]) * (cy - ay))
        a = lo + int(area.argmax())
        picked.append(a)
    picked.append(n - 1)
    return picked


def required_indices(ys: Series) -> list[int]:
    """Sorted unique indices a chart must keep: first, last, the (first) maximum, the (first) minimum non-zero."""
    y = np.asarray(ys, dtype=np.float64)
    n = len(y)
    if n == 0:
        return []
    keep = {0, n - 1, int(y.argmax())}
    nonzero = np.flatnonzero(y)
    if len(nonzero):
        keep.add(int(nonzero[y[nonzero].argmin()]))
    return sorted(keep)


def chart_indices(xs: Series, ys: Series, n_out: int) -> list[int]:
    """LTTB indices that also contain the first, last, peak and minimum non-zero points.

    Sorted, unique, at most `n_out` long (which must be at least 4, so that every required point fits).
    """
    if n_out < 4:
        raise ValueError(f"n_out must be at least 4 (first, last, peak, minimum non-zero), got {n_out}")
    x, y = _as_floats(xs, ys)
    if len(x) <= n_out:
        return list(range(len(x)))
    required = required_indices(y)
    picked = lttb_indices(x, y, n_out)
    missing = set(required).difference(picked)
    if missing and len(picked) + len(missing) > n_out:
        # Leave room for the required points rather than evicting arbitrary LTTB picks: a smaller LTTB
        # run still spreads the remaining points evenly over the whole job.
        picked = lttb_indices(x, y, n_out - len(missing))
    return sorted(set(picked).union(required))
