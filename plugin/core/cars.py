"""Find railcars in one image tile (numpy only).

The tile is brightness in 0..1 at a working pixel size ``gsd`` (metres). The
method follows how an analyst reads a yard:

1. Tracks run in a few dominant directions: the structure tensor finds them.
2. For each direction the tile is resampled so that tracks run along x.
   A car body is a band about 3 m wide that differs from the ground just
   beside it on one side, and on the other side either at once or after its
   shadow (a dark car merges with its shadow). A plain edge, a road or a wide
   shed fails that test; so do empty tracks.
3. Along each occupied line the bodies are cut into cars where gaps show
   (ballast between coupled cars) and, where gaps are too small to see, by
   the lengths real cars have (dynamic programming over cut positions).
"""
from dataclasses import dataclass
import math

import numpy as np

from .imaging import RotatedFrame, block_sum, box_along_x, box_along_y, shift_y

# Real car dimensions (see shared reference): body lengths 9.7-22.1 m (5-95 %),
# two peaks at 12-16 m and 18-20 m; widths 2.4-3.3 m.
MIN_CAR_M = 9.0
MAX_CAR_M = 24.5
CAR_WIDTH_M = 3.0
LENGTH_MODES = ((14.5, 2.2, 0.6), (19.0, 1.8, 0.4))   # (mean, sd, weight)


@dataclass
class PixelCar:
    """A car in the tile's pixel frame (x right, y down)."""
    x: float
    y: float
    length: float     # pixels
    width: float      # pixels
    theta: float      # direction of the long axis, radians, pixel frame
    score: float
    type: str = "unknown"


def dominant_angles(gray, gsd, max_angles=3):
    """Track directions (radians in [0, pi), pixel frame) that dominate the
    tile, strongest first, and the strength of the strongest."""
    g = box_along_y(box_along_x(gray, 3), 3)
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
    gy[1:-1, :] = g[2:, :] - g[:-2, :]
    b = max(4, int(round(16.0 / gsd)))
    j11 = block_sum(gx * gx, b)
    j22 = block_sum(gy * gy, b)
    j12 = block_sum(gx * gy, b)
    phi = 0.5 * np.arctan2(2 * j12, j11 - j22)          # gradient direction
    strength = np.sqrt((j11 - j22) ** 2 + 4 * j12 ** 2) / (b * b)
    theta = np.mod(phi + math.pi / 2, math.pi)           # along the edges
    nb = 36
    hist = np.bincount((theta.ravel() / math.pi * nb).astype(int) % nb,
                       weights=strength.ravel(), minlength=nb)
    smooth = hist + 0.5 * (np.roll(hist, 1) + np.roll(hist, -1))
    peaks = []
    for i in np.argsort(-smooth):
        if smooth[i] < 0.35 * smooth.max() or len(peaks) >= max_angles:
            break
        if smooth[i] < smooth[(i - 1) % nb] or smooth[i] < smooth[(i + 1) % nb]:
            continue
        if any(min(abs(i - j), nb - abs(i - j)) <= 2 for j in peaks):
            continue
        peaks.append(i)
    angles = []
    for i in peaks:
        # refine: strength-weighted mean of doubled angles near the peak
        c = (i + 0.5) * math.pi / nb
        d = np.angle(np.exp(2j * (theta - c))) / 2
        w = strength * (np.abs(d) < 1.5 * math.pi / nb)
        if w.sum() > 0:
            c = c + float((w * d).sum() / w.sum())
        angles.append(c % math.pi)
    return angles, float(smooth.max()) / max(1, theta.size)


def _sliding_max_y(a, r):
    out = a.copy()
    for k in range(1, r + 1):
        np.maximum(out, shift_y(a, k), out=out)
        np.maximum(out, shift_y(a, -k), out=out)
    return out


def carness(R, gsd):
    """Score per pixel of the rotated frame: how much a 3 m band centred on
    this row looks like a car body (contrast in brightness units)."""
    px = lambda m: max(1, int(round(m / gsd)))
    A = box_along_x(R, px(2.0))
    body = box_along_y(A, px(2.0))
    flank = box_along_y(A, px(0.8))
    near = px(2.2)
    c_up = np.abs(body - shift_y(flank, -near))
    c_dn = np.abs(body - shift_y(flank, near))
    far_up = c_up.copy()
    far_dn = c_dn.copy()
    for d in range(near + px(1.0), px(8.0) + 1, px(1.0)):
        np.maximum(far_up, np.abs(body - shift_y(flank, -d)), out=far_up)
        np.maximum(far_dn, np.abs(body - shift_y(flank, d)), out=far_dn)
    return np.maximum(np.minimum(c_up, far_dn), np.minimum(c_dn, far_up)), body


def _runs(mask):
    """Horizontal runs of True: arrays (row, start, end) with end exclusive."""
    h, w = mask.shape
    m = np.zeros((h, w + 2), np.int8)
    m[:, 1:-1] = mask
    d = np.diff(m, axis=1)
    rs, cs = np.nonzero(d == 1)
    re, ce = np.nonzero(d == -1)
    return rs, cs, ce


def _group_runs(rows, starts, ends, max_dv, max_du):
    """Union runs on nearby rows that overlap (or nearly touch) along x."""
    n = len(rows)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    order = np.lexsort((starts, rows))
    by_row = {}
    for i in order:
        by_row.setdefault(int(rows[i]), []).append(int(i))
    for r, idx in by_row.items():
        for dr in range(0, max_dv + 1):
            other = by_row.get(r + dr)
            if not other:
                continue
            for i in idx:
                for j in other:
                    if j == i or (dr == 0 and j < i):
                        continue
                    if starts[j] <= ends[i] + max_du and starts[i] <= ends[j] + max_du:
                        a, b = find(i), find(j)
                        if a != b:
                            parent[a] = b
    groups = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _length_logprior(lengths_m):
    p = np.full_like(lengths_m, 0.02, dtype=np.float64)
    for mu, sd, w in LENGTH_MODES:
        p += w * np.exp(-0.5 * ((lengths_m - mu) / sd) ** 2)
    p[(lengths_m < MIN_CAR_M) | (lengths_m > MAX_CAR_M)] = 1e-9
    return np.log(p)


def split_train(gap_evidence, gsd, open_start=False, open_end=False,
                cut_reward=1.2, cut_cost=0.8):
    """Cut a run of car bodies (profile along it, one value per pixel) into
    cars. ``gap_evidence`` >= 0 is how much each position looks like a gap
    (about 1 = ordinary, several = clear gap). Returns cut positions
    (pixel indices, including both ends)."""
    n = len(gap_evidence)
    L = n * gsd
    if L < MIN_CAR_M * 1.25 and not (open_start or open_end):
        return [0, n]
    lmin = max(2, int(MIN_CAR_M / gsd))
    lmax = int(MAX_CAR_M / gsd) + 1
    lens = np.arange(1, lmax + 1)
    logp = _length_logprior(lens * gsd)
    # ends cut by the tile may be partial cars: any length goes
    logp_open = np.where(lens * gsd <= MAX_CAR_M, math.log(0.5), -1e9)
    reward = cut_reward * np.minimum(gap_evidence, 6.0) - cut_cost
    best = np.full(n + 1, -1e18)
    back = np.zeros(n + 1, int)
    best[0] = 0.0
    for j in range(1, n + 1):
        k = lens[lens <= j]
        prev = j - k
        lp = logp_open[k - 1] if (open_start and True) else logp[k - 1]
        if open_start:
            lp = np.where(prev == 0, logp_open[k - 1], logp[k - 1])
        else:
            lp = logp[k - 1]
        if j == n and open_end:
            lp = logp_open[k - 1]
        cand = best[prev] + lp + np.where(prev > 0, reward[np.minimum(prev, n - 1)], 0.0)
        i = int(np.argmax(cand))
        best[j] = cand[i]
        back[j] = prev[i]
    if best[n] < -1e8:
        # nothing fits the length model (a very short run): one object
        return [0, n]
    cuts = [n]
    j = n
    while j > 0:
        j = back[j]
        cuts.append(j)
    return cuts[::-1]


def detect_in_tile(gray, gsd, sensitivity=0.5, track_mask=None, angles=None):
    """Railcars in a tile. ``gray`` may hold NaN where there is no data.
    ``track_mask`` (bool, same shape) restricts bodies to known tracks;
    ``angles`` (radians) overrides the directions found in the image."""
    valid = np.isfinite(gray)
    if valid.sum() < 0.05 * gray.size:
        return []
    fill = float(np.median(gray[valid]))
    g = np.where(valid, gray, fill).astype(np.float32)
    if angles is None:
        angles, strength = dominant_angles(g, gsd)
        if strength < 1e-4:
            return []
    thr = 0.08 * 2.0 ** ((0.5 - sensitivity) * 2.0)
    cars = []
    for theta in angles:
        cars.extend(_detect_along(g, valid, gsd, theta, thr, track_mask))
    return cars


def _detect_along(g, valid, gsd, theta, thr, track_mask):
    frame = RotatedFrame(g.shape, theta)
    R = frame.sample(g)
    inside = np.isfinite(R)
    R[~inside] = np.float32(np.nanmedian(R)) if inside.any() else 0
    vmask = frame.sample(valid.astype(np.float32), fill=0.0) > 0.99
    S, body = carness(R, gsd)
    px = lambda m: max(1, int(round(m / gsd)))
    peak = S >= _sliding_max_y(S, px(1.6))
    ok = peak & (S > thr) & vmask
    if track_mask is not None:
        ok &= frame.sample(track_mask.astype(np.float32), fill=0.0) > 0.5
    rows, starts, ends = _runs(ok)
    keep = (ends - starts) >= px(1.5)
    rows, starts, ends = rows[keep], starts[keep], ends[keep]
    if len(rows) == 0:
        return []
    groups = _group_runs(rows, starts, ends, max_dv=px(0.8), max_du=px(2.5))
    body0 = box_along_y(R, px(2.0))   # body brightness without smoothing along x
    out = []
    H, W = R.shape
    for grp in groups:
        rr, ss, ee = rows[grp], starts[grp], ends[grp]
        u0, u1 = int(ss.min()), int(ee.max())
        if (u1 - u0) * gsd < 6.0:
            continue
        # centre line v(u): weighted fit over the runs
        wts = (ee - ss).astype(float)
        mid = (ss + ee) / 2.0
        if len(grp) >= 2 and np.ptp(mid) > 0:
            A = np.vstack([mid, np.ones_like(mid)]).T * np.sqrt(wts)[:, None]
            slope, icpt = np.linalg.lstsq(A, rr * np.sqrt(wts), rcond=None)[0]
            if abs(slope) > 0.15:
                slope, icpt = 0.0, float(np.average(rr, weights=wts))
        else:
            slope, icpt = 0.0, float(np.average(rr, weights=wts))
        u = np.arange(u0, u1)
        v = np.clip(np.round(icpt + slope * u).astype(int), 0, H - 1)
        occ = S[v, u]
        b = body0[v, u]
        # gap evidence: a notch in body brightness about a coupling gap wide,
        # and any break in occupancy
        k = px(1.5)
        bp = np.pad(b, k, mode="edge")
        notch = np.abs(b - 0.5 * (bp[:-2 * k] + bp[2 * k:]))
        scale = float(np.median(notch)) + 0.01
        ev = notch / scale
        ev = np.where(occ < thr, np.maximum(ev, 4.0), ev)
        open_start = u0 <= 1 or not vmask[v[0], max(u0 - px(2), 0)]
        open_end = u1 >= W - 1 or not vmask[v[-1], min(u1 + px(2), W - 1)]
        cuts = split_train(ev, gsd, open_start, open_end)
        for a, c in zip(cuts[:-1], cuts[1:]):
            if c - a < px(4.0):
                continue
            seg_occ = occ[a:c]
            mean_occ = float(seg_occ.mean())
            covered = float((seg_occ > thr).mean())
            if covered < 0.5:
                continue
            length = c - a
            if a > 0:
                length -= px(0.6)      # half the coupling gap on each inner end
            if c < len(u):
                length -= px(0.6)
            uc = u0 + (a + c) / 2.0
            vc = icpt + slope * uc
            x, y = frame.to_image(uc, vc)
            score = 1.0 - math.exp(-1.5 * mean_occ / thr) * (1.0 - 0.3 * covered)
            out.append(PixelCar(float(x), float(y), float(max(length, 1)),
                                CAR_WIDTH_M / gsd, theta + math.atan(slope),
                                float(min(max(score, 0.0), 1.0))))
    return out
