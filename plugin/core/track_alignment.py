"""Lining a rail-tracks layer up with the image (numpy only).

A tracks layer taken from OpenStreetMap or traced on other imagery is often
a few metres off the image being counted: each satellite image carries its
own georeferencing error, commonly 3 to 10 m. Cars are kept only near the
lines, so an offset of half a track spacing (2.5 m) would drop a whole
yard's cars, or keep those of the next, unmapped track. Cars stand on the
tracks, so the shift of the lines that brings the detected cars closest to
them is the layer's offset; it is measured from the detections themselves
and applied before they are filtered.

Points and lines are in a metric frame (metres, any origin and axes).
"""
import numpy as np

# A car counts on a line when its centre lies this close: the next track's
# cars are 4.5-5 m away, and the cars of both tracks of a double line that a
# map draws as one line between them are 2.3-2.5 m away.
TOLERANCE_M = 3.0
MAX_SHIFT_M = 6.0       # offsets searched, metres in any direction
# How closely a detected car's centre follows its track's centre line. The
# search scores each shift by how close the cars come to the lines (a
# Gaussian of this width), not by how many fall within TOLERANCE_M: in a
# yard, bands of 2.5 m either side of lines 4.5-5 m apart cover almost
# everything, whatever the offset.
FIT_SIGMA_M = 0.75
MIN_CARS = 8            # fewer detections near the lines: too little evidence to move them
# Lines that already run through the cars they hold (median distance of the
# cars within TOLERANCE_M) are left as they are: a track traced on this very
# image, maybe one of several, is what the analyst means.
ALIGNED_M = 0.8
# A shift must keep this share of the cars already within TOLERANCE_M of the
# lines: it may bring the lines onto the tracks they were traced from, not
# over to a busier track that the layer does not hold. Each car weighs by
# how close it lies (a Gaussian of KEEP_SIGMA_M): a few cars of the next
# track at the edge of the tolerance count little.
KEEP_FRACTION = 0.8
KEEP_SIGMA_M = 1.0
# Move the lines only when that fits the cars clearly better (by this
# fraction) and by MIN_SHIFT_M or more: closer, cars are within the
# tolerance anyway, and far from the next track's.
MIN_GAIN_FRACTION = 0.10
MIN_SHIFT_M = 1.0
# Shifts that score within this fraction of the best are as good: take the
# shortest (straight tracks leave a shift along them undetermined).
TIE_FRACTION = 0.02


def segments(lines):
    """Segments (S, 4): x0, y0, x1, y1 of every part of ``lines``, each a
    sequence of (x, y) vertices."""
    parts = []
    for pts in lines:
        a = np.asarray(pts, np.float64).reshape(-1, 2)
        if len(a) >= 2:
            parts.append(np.hstack([a[:-1], a[1:]]))
    return np.vstack(parts) if parts else np.zeros((0, 4))


def _pairs(points, segs, reach):
    """(point index, segment index) of every segment that passes within
    ``reach`` of a point, sorted by point."""
    if not len(points) or not len(segs):
        return np.zeros(0, int), np.zeros(0, int)
    lo = np.minimum(segs[:, :2], segs[:, 2:]) - reach
    hi = np.maximum(segs[:, :2], segs[:, 2:]) + reach
    pi, si = [], []
    order = np.lexsort((points[:, 0], np.floor(points[:, 1] / 100.0)))
    for start in range(0, len(order), 256):
        idx = order[start:start + 256]
        p = points[idx]
        # segments whose reach box meets this group's box, then pair by pair
        near = np.nonzero((lo[:, 0] <= p[:, 0].max()) & (hi[:, 0] >= p[:, 0].min()) &
                          (lo[:, 1] <= p[:, 1].max()) & (hi[:, 1] >= p[:, 1].min()))[0]
        if not len(near):
            continue
        d = _distance(p[:, None, :], segs[near][None])
        a, b = np.nonzero(d <= reach)
        pi.append(idx[a])
        si.append(near[b])
    if not pi:
        return np.zeros(0, int), np.zeros(0, int)
    pi, si = np.concatenate(pi), np.concatenate(si)
    order = np.argsort(pi, kind="stable")
    return pi[order], si[order]


def _distance(p, segs):
    """Distance from points ``p`` (..., 2) to segments ``segs`` (..., 4),
    broadcast."""
    a, b = segs[..., :2], segs[..., 2:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    foot = a + t[..., None] * ab
    return np.hypot(*np.moveaxis(p - foot, -1, 0))


def _nearest(points, segs, pi, si, shift):
    """For every point, its distance to the nearest line moved by ``shift``
    (inf where no segment is paired with it)."""
    out = np.full(len(points), np.inf)
    if len(pi):
        d = _distance(points[pi] - np.asarray(shift, np.float64), segs[si])
        np.minimum.at(out, pi, d)
    return out


def best_shift(points, weights, lines, max_shift=None):
    """The shift (dx, dy) to add to ``lines`` that brings the ``points``
    (weighted) closest to them; (0, 0) when the lines already run through
    the cars they hold, or no shift fits clearly better (MIN_GAIN_FRACTION)
    while keeping those cars (KEEP_FRACTION), or it is under MIN_SHIFT_M."""
    max_shift = MAX_SHIFT_M if max_shift is None else max_shift
    points = np.asarray(points, np.float64).reshape(-1, 2)
    weights = np.asarray(weights, np.float64).reshape(-1)
    segs = segments(lines)
    pi, si = _pairs(points, segs, max(3 * FIT_SIGMA_M, TOLERANCE_M) + max_shift)
    if len(np.unique(pi)) < MIN_CARS:
        return 0.0, 0.0

    d0 = _nearest(points, segs, pi, si, (0.0, 0.0))
    on0 = d0 <= TOLERANCE_M
    if on0.sum() >= MIN_CARS and np.median(d0[on0]) <= ALIGNED_M:
        return 0.0, 0.0
    held = np.where(on0, weights * np.exp(-0.5 * (d0 / KEEP_SIGMA_M) ** 2), 0.0)
    must_keep = KEEP_FRACTION * held.sum() if on0.sum() >= MIN_CARS else 0.0

    def fit_of(d):
        """How close cars at distances ``d`` are to the lines; -1 when the
        shift loses the cars already on them."""
        if held[d <= TOLERANCE_M].sum() < must_keep:
            return -1.0
        return (weights * np.exp(-0.5 * (d / FIT_SIGMA_M) ** 2)).sum()

    def fit(shifts):
        return np.array([fit_of(_nearest(points, segs, pi, si, s)) for s in shifts])

    def disc(step, radius, centre=(0.0, 0.0)):
        r = np.arange(-radius, radius + step / 2, step)
        gx, gy = np.meshgrid(r, r)
        keep = np.hypot(gx, gy) <= radius + 1e-9
        return np.stack([gx[keep] + centre[0], gy[keep] + centre[1]], -1)

    # coarse, then fine around the good coarse shifts
    coarse = disc(0.5, max_shift)
    f_coarse = fit(coarse)
    good = coarse[f_coarse >= (1.0 - TIE_FRACTION) * f_coarse.max()]
    fine = np.unique(np.vstack([disc(0.125, 0.375, c) for c in good]).round(4), axis=0)
    fine = fine[np.hypot(fine[:, 0], fine[:, 1]) <= max_shift + 1e-9]
    f_fine = fit(fine)
    cand = fine[f_fine >= (1.0 - TIE_FRACTION) * f_fine.max()]
    best = cand[np.argmin(np.hypot(cand[:, 0], cand[:, 1]))]
    d = _nearest(points, segs, pi, si, best)
    if np.hypot(*best) < MIN_SHIFT_M or fit_of(d) < (1.0 + MIN_GAIN_FRACTION) * fit_of(d0):
        return 0.0, 0.0
    # moved, the lines must run through the cars (as ALIGNED_M says of lines
    # left alone): a line mapped between two tracks is not moved onto one
    on = d <= TOLERANCE_M
    if not on.any() or np.median(d[on]) > ALIGNED_M:
        return 0.0, 0.0
    return float(best[0]), float(best[1])


def near_lines(points, lines, shift=(0.0, 0.0), tolerance=None):
    """Which ``points`` lie within ``tolerance`` (TOLERANCE_M) of ``lines``
    moved by ``shift``."""
    tolerance = TOLERANCE_M if tolerance is None else tolerance
    points = np.asarray(points, np.float64).reshape(-1, 2)
    segs = segments(lines)
    reach = tolerance + float(np.hypot(*shift))
    pi, si = _pairs(points, segs, reach)
    return _nearest(points, segs, pi, si, shift) <= tolerance
