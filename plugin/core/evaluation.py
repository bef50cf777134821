"""Matching detections to ground truth: precision, recall, F1, count error.

Pure Python + shapely (1.8 and 2.x). Works in any CRS: both rules below are
invariant under the affine map from metres to the raster's map units, so
degrees and feet need no conversion.

Matching rule (greedy, one to one, detections by descending score):
a detection may match a true car when

* its centre lies inside the true rectangle enlarged by ``END_MARGIN_M`` at
  each end and ``SIDE_MARGIN_M`` on each side (a box on the car, slightly
  off, counts; a box on the car's shadow, about one car width to the side,
  does not), or
* the rotated IoU of the two rectangles is at least ``iou_min`` (0.3).

Among the candidates it takes the unmatched true car with the highest IoU
(then the nearest centre). Locomotives and freight cars match alike (for
P/R/F1 a locomotive is a vehicle), but the count error counts freight cars
only, as analysts report them: a locomotive reported as freight is a counting
error.

True cars flagged ``hidden`` (under a thick cloud) are "don't care": a
detection on one is neither a TP nor an FP, and a miss is not an FN.
"""
from dataclasses import dataclass, field

from shapely.geometry import Point, Polygon
from shapely.prepared import prep
from shapely import wkt as shapely_wkt

END_MARGIN_M = 1.0
SIDE_MARGIN_M = 0.5


@dataclass
class MatchResult:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 1.0
    recall: float = 1.0
    f1: float = 1.0
    true_freight: int = 0
    detected_freight: int = 0
    count_diff: int = 0                 # detected freight - true freight
    count_error: float = 0.0            # count_diff / true freight; None when 0 true
    true_locomotives: int = 0
    detected_locomotives: int = 0
    fp_lookalike: int = 0               # FPs on look-alikes or off the tracks
    type_correct: int = 0               # TPs whose type matches (unknown excluded)
    type_known: int = 0                 # TPs with a type other than "unknown"
    pairs: list = field(default_factory=list)       # (detection index, truth index)
    fp_index: list = field(default_factory=list)
    fn_index: list = field(default_factory=list)

    def as_dict(self):
        d = dict(self.__dict__)
        for k in ("pairs", "fp_index", "fn_index"):
            d.pop(k)
        return d


def _poly(corners):
    p = Polygon([tuple(c[:2]) for c in corners])
    if not p.is_valid:
        p = p.buffer(0)
    return p


def _enlarged(t):
    """The truth rectangle grown by the margins, in map units (the growth
    factor along each side comes from the car's size in metres)."""
    c = t.corners
    cx = sum(p[0] for p in c) / 4.0
    cy = sum(p[1] for p in c) / 4.0
    # corners 0-1 run along the car, 0-3 across (rectangle_corners order);
    # tolerate either order by measuring which side is longer
    ax, ay = (c[0][0] - c[1][0]) / 2.0, (c[0][1] - c[1][1]) / 2.0
    bx, by = (c[0][0] - c[3][0]) / 2.0, (c[0][1] - c[3][1]) / 2.0
    la, lb = (ax * ax + ay * ay) ** 0.5, (bx * bx + by * by) ** 0.5
    if la < lb:
        ax, ay, bx, by = bx, by, ax, ay
    fa = (t.length_m / 2.0 + END_MARGIN_M) / (t.length_m / 2.0)
    fb = (t.width_m / 2.0 + SIDE_MARGIN_M) / (t.width_m / 2.0)
    ax, ay, bx, by = ax * fa, ay * fa, bx * fb, by * fb
    return Polygon([(cx + ax + bx, cy + ay + by), (cx - ax + bx, cy - ay + by),
                    (cx - ax - bx, cy - ay - by), (cx + ax - bx, cy + ay - by)])


def _is_freight(obj):
    return getattr(obj, "type", "unknown") != "locomotive"


def match(detections, truth, iou_min=0.3, lookalikes=None, track_corridors=None):
    """Match ``detections`` (objects with cx, cy, corners, score, type) to
    ``truth`` (TruthCar-like: cx, cy, corners, length_m, width_m, type,
    hidden). ``lookalikes``: WKT strings or (type, WKT) of look-alike
    footprints; ``track_corridors``: WKT polygons around the tracks (None:
    unknown; an empty list: the scene has no tracks). A false positive counts
    as a look-alike FP when its centre is on a look-alike or, when corridors
    are given, off every track corridor."""
    res = MatchResult()
    tpolys = [_poly(t.corners) for t in truth]
    tbig = [_enlarged(t) for t in truth]
    hidden = [bool(getattr(t, "hidden", False)) for t in truth]
    dpolys = [_poly(d.corners) if getattr(d, "corners", None) else Point(d.cx, d.cy).buffer(1e-9)
              for d in detections]
    order = sorted(range(len(detections)), key=lambda i: -float(getattr(detections[i], "score", 1.0)))
    taken = [False] * len(truth)
    matched_det = {}
    # spatial index: truth boxes bucketed on a grid as large as the largest box
    bounds = [p.bounds for p in tbig]
    cell = max([max(b[2] - b[0], b[3] - b[1]) for b in bounds] + [1e-12])
    grid = {}
    for j, b in enumerate(bounds):
        for gx in range(int(b[0] // cell), int(b[2] // cell) + 1):
            for gy in range(int(b[1] // cell), int(b[3] // cell) + 1):
                grid.setdefault((gx, gy), []).append(j)
    for i in order:
        d = detections[i]
        pt = Point(d.cx, d.cy)
        dp = dpolys[i]
        db = dp.bounds
        qx0, qy0 = min(db[0], d.cx), min(db[1], d.cy)
        qx1, qy1 = max(db[2], d.cx), max(db[3], d.cy)
        ncell = (int(qx1 // cell) - int(qx0 // cell) + 1) * (int(qy1 // cell) - int(qy0 // cell) + 1)
        if ncell > len(grid):          # a huge box: cheaper to look at every car
            cand = set(range(len(truth)))
        else:
            cand = set()
            for gx in range(int(qx0 // cell), int(qx1 // cell) + 1):
                for gy in range(int(qy0 // cell), int(qy1 // cell) + 1):
                    cand.update(grid.get((gx, gy), ()))
        best, best_key = None, None
        for j in sorted(cand):
            if taken[j]:
                continue
            tb = bounds[j]
            if tb[0] > qx1 or tb[2] < qx0 or tb[1] > qy1 or tb[3] < qy0:
                continue
            inter = dp.intersection(tpolys[j]).area if dp.area > 0 else 0.0
            union = dp.area + tpolys[j].area - inter
            iou = inter / union if union > 0 else 0.0
            if not (iou >= iou_min or tbig[j].contains(pt)):
                continue
            dist = ((truth[j].cx - d.cx) ** 2 + (truth[j].cy - d.cy) ** 2) ** 0.5
            key = (iou, -dist)
            if best_key is None or key > best_key:
                best, best_key = j, key
        if best is not None:
            taken[best] = True
            matched_det[i] = best
    look_polys = []
    for item in lookalikes or []:
        w = item[1] if isinstance(item, (tuple, list)) else item
        look_polys.append(prep(shapely_wkt.loads(w) if isinstance(w, str) else w))
    corridors = [prep(shapely_wkt.loads(w) if isinstance(w, str) else w) for w in (track_corridors or [])]
    for i, d in enumerate(detections):
        if i in matched_det:
            j = matched_det[i]
            if hidden[j]:
                continue
            res.tp += 1
            res.pairs.append((i, j))
            if getattr(d, "type", "unknown") != "unknown":
                res.type_known += 1
                if d.type == truth[j].type:
                    res.type_correct += 1
        else:
            res.fp += 1
            res.fp_index.append(i)
            pt = Point(d.cx, d.cy)
            if any(p.contains(pt) for p in look_polys) or \
               (track_corridors is not None and not any(c.contains(pt) for c in corridors)):
                res.fp_lookalike += 1
    for j, t in enumerate(truth):
        if not taken[j] and not hidden[j]:
            res.fn += 1
            res.fn_index.append(j)
    res.precision = res.tp / (res.tp + res.fp) if res.tp + res.fp else 1.0
    res.recall = res.tp / (res.tp + res.fn) if res.tp + res.fn else 1.0
    res.f1 = (2 * res.precision * res.recall / (res.precision + res.recall)
              if res.precision + res.recall else 0.0)
    # counts: freight only; detections on hidden cars do not count either way
    on_hidden = {i for i, j in matched_det.items() if hidden[j]}
    res.true_freight = sum(1 for j, t in enumerate(truth) if _is_freight(t) and not hidden[j])
    res.true_locomotives = sum(1 for j, t in enumerate(truth) if not _is_freight(t) and not hidden[j])
    res.detected_freight = sum(1 for i, d in enumerate(detections) if _is_freight(d) and i not in on_hidden)
    res.detected_locomotives = sum(1 for i, d in enumerate(detections)
                                   if not _is_freight(d) and i not in on_hidden)
    res.count_diff = res.detected_freight - res.true_freight
    if res.true_freight:
        res.count_error = res.count_diff / res.true_freight
    else:
        res.count_error = 0.0 if res.count_diff == 0 else None
    return res


def summarize(results):
    """Micro-averaged totals over several MatchResults (one per scene)."""
    tot = MatchResult()
    for r in results:
        tot.tp += r.tp
        tot.fp += r.fp
        tot.fn += r.fn
        tot.true_freight += r.true_freight
        tot.detected_freight += r.detected_freight
        tot.true_locomotives += r.true_locomotives
        tot.detected_locomotives += r.detected_locomotives
        tot.fp_lookalike += r.fp_lookalike
        tot.type_correct += r.type_correct
        tot.type_known += r.type_known
    tot.precision = tot.tp / (tot.tp + tot.fp) if tot.tp + tot.fp else 1.0
    tot.recall = tot.tp / (tot.tp + tot.fn) if tot.tp + tot.fn else 1.0
    tot.f1 = (2 * tot.precision * tot.recall / (tot.precision + tot.recall)
              if tot.precision + tot.recall else 0.0)
    tot.count_diff = tot.detected_freight - tot.true_freight
    tot.count_error = (tot.count_diff / tot.true_freight if tot.true_freight
                       else (0.0 if tot.count_diff == 0 else None))
    return tot
