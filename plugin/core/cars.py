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
    features: dict = None    # the measurements behind the score


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
    contrast = np.maximum(np.minimum(c_up, far_dn), np.minimum(c_dn, far_up))
    # a band centred on a body is symmetric across it (even a tank car's
    # highlight is); a band straddling a body's edge is not
    half = box_along_y(A, px(1.0))
    h = px(0.5)
    asym = np.abs(shift_y(half, -h) - shift_y(half, h))
    return contrast - asym, body


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
    """Cut a run of car bodies into cars.

    ``gap_evidence`` (one value per pixel along the run, >= 0) says how much
    each position looks like a gap between coupled cars: about 1 is
    ordinary, several is a clear gap. The cut positions maximise the gap
    evidence at the cuts plus the log-probability of each car's length under
    the length distribution of real cars; where no gaps can be seen (coarse
    imagery) that alone counts cars from the occupied length. Open ends
    (cut by the window or by nodata) may hold partial cars of any length.
    Returns cut positions including both ends.
    """
    n = len(gap_evidence)
    if n * gsd < MIN_CAR_M * 1.25 and not (open_start or open_end):
        return [0, n]
    lmax = int(MAX_CAR_M / gsd) + 1
    lens = np.arange(1, lmax + 1)
    logp = _length_logprior(lens * gsd)
    logp_open = np.full(lmax, math.log(0.5))
    reward = cut_reward * np.minimum(gap_evidence, 6.0) - cut_cost
    best = np.full(n + 1, -1e18)
    back = np.zeros(n + 1, int)
    best[0] = 0.0
    for j in range(1, n + 1):
        k = lens[:j]
        prev = j - k
        if j == n and open_end:
            lp = logp_open[:j]
        elif open_start:
            lp = np.where(prev == 0, logp_open[:j], logp[:j])
        else:
            lp = logp[:j]
        cand = best[prev] + lp + np.where(prev > 0, reward[prev - (prev > 0)], 0.0)
        i = int(np.argmax(cand))
        best[j] = cand[i]
        back[j] = prev[i]
    if best[n] < -1e8:
        return [0, n]        # nothing fits the length model: one object
    cuts = [n]
    j = n
    while j > 0:
        j = back[j]
        cuts.append(j)
    return cuts[::-1]


# Names of the measurements made on each candidate car, in the order the
# verifier's weights expect them (see verifier.py).
FEATURES = (
    "contrast", "coverage", "length_m", "width_m", "body", "body_texture",
    "flank_min", "flank_max", "asymmetry", "shadow_side", "shadow_decisive",
    "gap_start", "gap_end", "cars_in_row", "neighbour_rows", "centre_minus_edge",
    "end_sharpness", "darkest_near",
)


@dataclass
class Candidate:
    car: PixelCar
    features: dict


def detect_in_tile(gray, gsd, sensitivity=0.5, track_mask=None, angles=None,
                   verifier=None):
    """Railcars in a tile. ``gray`` may hold NaN where there is no data.
    ``track_mask`` (bool, same shape) restricts bodies to known tracks;
    ``angles`` (radians) overrides the directions found in the image.
    ``verifier(features) -> scores`` rates candidates (default: the shipped
    one); candidates scoring under the sensitivity's cut are dropped."""
    cands = find_candidates(gray, gsd, track_mask, angles)
    if not cands:
        return []
    if verifier is None:
        from .verifier import default_verifier
        verifier = default_verifier()
    scores = verifier([c.features for c in cands])
    cut = 0.5 + (0.5 - sensitivity) * 0.6
    out = []
    for c, sc in zip(cands, scores):
        if sc >= cut:
            c.car.score = float(sc)
            out.append(c.car)
    return out


def find_candidates(gray, gsd, track_mask=None, angles=None):
    """Every band that may be a car, with its measurements. Generous on
    purpose: the verifier decides."""
    valid = np.isfinite(gray)
    if valid.sum() < 0.05 * gray.size:
        return []
    fill = float(np.median(gray[valid]))
    g = np.where(valid, gray, fill).astype(np.float32)
    if angles is None:
        angles, strength = dominant_angles(g, gsd)
        if strength < 1e-4:
            return []
    cands = []
    for theta in angles:
        cands.extend(_candidates_along(g, valid, gsd, theta, CANDIDATE_CONTRAST, track_mask))
    return cands


CANDIDATE_CONTRAST = 0.04   # brightness units (0..1 stretch); low: verifier decides


def _px(m, gsd):
    return max(1, int(round(m / gsd)))


def _candidates_along(g, valid, gsd, theta, thr, track_mask):
    frame = RotatedFrame(g.shape, theta)
    R = frame.sample(g)
    inside = np.isfinite(R)
    R[~inside] = np.float32(np.median(R[inside])) if inside.any() else 0
    vmask = frame.sample(valid.astype(np.float32), fill=0.0) > 0.99
    S, _ = carness(R, gsd)
    px = lambda m: _px(m, gsd)
    peak = S >= _sliding_max_y(S, px(2.0))
    ok = peak & (S > thr) & vmask
    if track_mask is not None:
        ok &= frame.sample(track_mask.astype(np.float32), fill=0.0) > 0.5
    rows, starts, ends = _runs(ok)
    keep = (ends - starts) >= px(1.5)
    rows, starts, ends = rows[keep], starts[keep], ends[keep]
    if len(rows) == 0:
        return []
    groups = _group_runs(rows, starts, ends, max_dv=px(0.8), max_du=px(2.5))
    body0 = box_along_y(R, px(2.0))   # body brightness, not smoothed along x
    H, W = R.shape
    half = px(8.0)
    lines = []
    for grp in groups:
        rr, ss, ee = rows[grp], starts[grp], ends[grp]
        u0, u1 = int(ss.min()), int(ee.max())
        if (u1 - u0) * gsd < 6.0:
            continue
        wts = (ee - ss).astype(float)
        slope, icpt = 0.0, float(np.average(rr, weights=wts))
        mid = (ss + ee) / 2.0
        if len(grp) >= 2 and np.ptp(mid) > px(10.0):
            A = np.vstack([mid, np.ones_like(mid)]).T * np.sqrt(wts)[:, None]
            sl, ic = np.linalg.lstsq(A, rr * np.sqrt(wts), rcond=None)[0]
            if abs(sl) < 0.1:
                slope, icpt = float(sl), float(ic)
        lines.append((u0, u1, slope, icpt))
    # which side the shadows fall on: the side whose near flank is darker,
    # by a vote of all lines (a scene has one sun)
    line_data = []
    vote, vote_abs = 0.0, 0.0
    offs = np.arange(-half, half + 1)
    for (u0, u1, slope, icpt) in lines:
        u = np.arange(u0, u1)
        v = np.clip(np.round(icpt + slope * u).astype(int), 0, H - 1)
        vv = np.clip(v[None, :] + offs[:, None], 0, H - 1)
        prof = R[vv, u[None, :]]                      # across x along
        line_data.append((u, v, prof))
        P = prof.mean(axis=1)
        up, dn = _flank(P, half, px, -1), _flank(P, half, px, 1)
        w = (u1 - u0)
        vote += w * (up - dn)
        vote_abs += w * abs(up - dn)
    side = 1.0 if vote >= 0 else -1.0                # +1: shadows fall to +v
    decisive = abs(vote) / vote_abs if vote_abs > 0 else 0.0

    out = []
    for li, ((u0, u1, slope, icpt), (u, v, prof)) in enumerate(zip(lines, line_data)):
        occ = S[v, u]
        b = body0[v, u]
        k = px(1.5)
        bp = np.pad(b, k, mode="edge")
        notch = np.abs(b - 0.5 * (bp[:-2 * k] + bp[2 * k:]))
        scale = float(np.median(notch)) + 0.01
        ev = notch / scale
        ev = np.where(occ < thr, np.maximum(ev, 4.0), ev)
        open_start = u0 <= 1 or not vmask[v[0], max(u0 - px(2), 0)]
        open_end = u1 >= W - 1 or not vmask[v[-1], min(u1 + px(2), W - 1)]
        cuts = split_train(ev, gsd, open_start, open_end)
        n_cars = len(cuts) - 1
        neighbours = sum(1 for lj, (a0, a1, s2, i2) in enumerate(lines)
                         if lj != li and 3.8 / gsd <= abs((i2 + s2 * (a0 + a1) / 2)
                                                         - (icpt + slope * (a0 + a1) / 2)) <= 6.0 / gsd
                         and min(a1, u1) - max(a0, u0) > 0)
        for a, c in zip(cuts[:-1], cuts[1:]):
            if c - a < px(4.0):
                continue
            seg = slice(a, c)
            P = prof[:, seg].mean(axis=1)
            length = c - a - (px(0.6) if a > 0 else 0) - (px(0.6) if c < len(u) else 0)
            up, dn = _flank(P, half, px, -1), _flank(P, half, px, 1)
            body = float(P[half - px(1.0):half + px(1.0) + 1].mean())
            anti, sun = (dn, up) if side > 0 else (up, dn)
            width = _width(P, half, gsd)
            seg_occ = occ[seg]
            feats = {
                "contrast": float(seg_occ.mean()),
                "coverage": float((seg_occ > thr).mean()),
                "length_m": length * gsd,
                "width_m": width,
                "body": body,
                "body_texture": float(np.std(b[seg])),
                "flank_min": min(abs(body - up), abs(body - dn)),
                "flank_max": max(abs(body - up), abs(body - dn)),
                "asymmetry": abs(float(P[half - px(1.0):half].mean()) -
                                 float(P[half + 1:half + px(1.0) + 1].mean())),
                "shadow_side": sun - anti,
                "shadow_decisive": decisive,
                "gap_start": float(min(ev[a], 6.0)) if a > 0 else 0.0,
                "gap_end": float(min(ev[c - 1], 6.0)) if c < len(u) else 0.0,
                "cars_in_row": float(n_cars),
                "neighbour_rows": float(neighbours),
                "centre_minus_edge": float(P[half] - 0.5 * (P[half - px(1.2)] + P[half + px(1.2)])),
                "end_sharpness": _end_sharpness(b, a, c, k),
                "darkest_near": float(P[half - px(4.0):half + px(4.0) + 1].min()) - body,
            }
            uc = u0 + (a + c) / 2.0
            vc = icpt + slope * uc
            x, y = frame.to_image(uc, vc)
            car = PixelCar(float(x), float(y), float(max(length, 1)),
                           min(max(width, 2.4), 3.4) / gsd, theta + math.atan(slope), 0.0,
                           classify_type(feats))
            car.features = feats
            out.append(Candidate(car, feats))
    return out


def _flank(P, half, px, sign):
    """Mean of the across profile 1.8-2.6 m from the centre on one side."""
    a, b = half + sign * px(1.8), half + sign * px(2.6)
    lo, hi = min(a, b), max(a, b)
    return float(P[lo:hi + 1].mean())


def _width(P, half, gsd):
    """Body width from the strongest brightness step on each side."""
    d = np.abs(np.diff(P))
    lo = max(0, half - _px(2.2, gsd))
    hi = half - _px(0.9, gsd)
    left = lo + int(np.argmax(d[lo:hi + 1])) if hi >= lo else half - _px(1.5, gsd)
    lo2 = half + _px(0.9, gsd) - 1
    hi2 = min(len(d) - 1, half + _px(2.2, gsd) - 1)
    right = lo2 + int(np.argmax(d[lo2:hi2 + 1])) if hi2 >= lo2 else half + _px(1.5, gsd)
    return float((right - left) * gsd)


def _end_sharpness(b, a, c, k):
    """How sharply the body brightness changes at the car's two ends."""
    n = len(b)
    vals = []
    for e in (a, c - 1):
        i0, i1 = max(0, e - k), min(n - 1, e + k)
        vals.append(abs(float(b[i1]) - float(b[i0])))
    return float(np.mean(vals))


def classify_type(f):
    """Car type from the body's appearance, where it can tell; else
    'unknown'. Rules follow railcars.md: tank cars have a bright axis and
    darker sides, open cars a rim brighter than the interior, covered cars a
    wrinkled (textured) top; locomotives are long and stand at train ends."""
    if 17.5 <= f["length_m"] <= 23.5 and f["cars_in_row"] >= 3 and \
            (f["gap_start"] == 0.0 or f["gap_end"] == 0.0) and f["body_texture"] > 0.08:
        return "locomotive"
    cme = f["centre_minus_edge"]
    if cme > 0.06:
        return "tank"
    if cme < -0.06:
        return "open"
    if f["body_texture"] > 0.07:
        return "covered"
    if f["flank_max"] < 0.08:
        return "flat"
    if f["flank_max"] > 0.12:
        return "box"
    return "unknown"
