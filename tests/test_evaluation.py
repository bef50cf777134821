"""Matching detections to ground truth gives the numbers a reader expects
on small hand-made cases."""
import pytest

from railcar_counter.plugin.core.detections import Detection, rectangle_corners
from railcar_counter.plugin.core.evaluation import match, summarize
from railcar_counter.plugin.core.synthetic import TruthCar


def truth(cx, cy, length=14.0, width=3.0, angle=0.0, type_="open", hidden=False):
    return TruthCar(cx=cx, cy=cy, length_m=length, width_m=width, angle=angle, type=type_,
                    corners=rectangle_corners(cx, cy, length, width, angle), hidden=hidden)


def det(cx, cy, length=14.0, width=3.0, angle=0.0, score=0.9, type_="unknown"):
    return Detection(cx=cx, cy=cy, length_m=length, width_m=width, angle=angle, score=score,
                     type=type_, corners=rectangle_corners(cx, cy, length, width, angle))


def train(n, x0=0.0, y0=0.0, pitch=15.2):
    """A train running north: n cars 14 m long with 1.2 m gaps."""
    return [truth(x0, y0 + i * pitch) for i in range(n)]


def test_perfect_detection():
    t = train(10)
    r = match([det(c.cx, c.cy) for c in t], t)
    assert (r.tp, r.fp, r.fn) == (10, 0, 0)
    assert r.precision == r.recall == r.f1 == 1.0
    assert r.count_error == 0.0


def test_slightly_off_boxes_still_match():
    t = train(5)
    # 0.8 m along the track and 0.4 m across: a fair box at 0.5 m per pixel
    r = match([det(c.cx + 0.4, c.cy + 0.8, length=13.0, angle=3.0) for c in t], t)
    assert r.tp == 5 and r.fp == 0


def test_box_on_the_shadow_does_not_match():
    t = [truth(0, 0)]
    # the shadow lies one car width to the side: IoU 0, centre outside
    r = match([det(3.2, 0.0)], t)
    assert (r.tp, r.fp, r.fn) == (0, 1, 1)
    assert r.f1 == 0.0


def test_merged_pair_counts_once():
    t = train(2)
    # one long box over both cars: centre in the gap, matches one of them
    r = match([det(0, 7.6, length=29.4)], t)
    assert (r.tp, r.fp, r.fn) == (1, 0, 1)
    assert r.count_diff == -1
    assert r.count_error == pytest.approx(-0.5)


def test_one_to_one_and_score_order():
    t = [truth(0, 0)]
    r = match([det(0, 0, score=0.4), det(0.2, 0.1, score=0.9)], t)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    assert r.pairs == [(1, 0)]        # the higher score wins the car
    assert r.precision == 0.5 and r.recall == 1.0
    assert r.f1 == pytest.approx(2 / 3)


def test_known_mix_numbers():
    t = train(20)
    dets = [det(c.cx, c.cy) for c in t[:18]] + [det(100, 100), det(200, 0)]
    r = match(dets, t)
    assert (r.tp, r.fp, r.fn) == (18, 2, 2)
    assert r.precision == pytest.approx(0.9)
    assert r.recall == pytest.approx(0.9)
    assert r.f1 == pytest.approx(0.9)
    assert r.count_error == 0.0       # 20 detected, 20 true: the count is right by luck


def test_locomotives_apart_in_counts():
    t = train(4) + [truth(0, 4 * 15.2 + 3, length=20, type_="locomotive")]
    # the locomotive is found but reported as a freight car
    dets = [det(c.cx, c.cy) for c in t[:4]] + [det(t[4].cx, t[4].cy, length=20)]
    r = match(dets, t)
    assert (r.tp, r.fp, r.fn) == (5, 0, 0)           # every vehicle found
    assert r.true_freight == 4 and r.true_locomotives == 1
    assert r.detected_freight == 5
    assert r.count_error == pytest.approx(0.25)       # but the freight count is off
    dets[-1].type = "locomotive"
    r = match(dets, t)
    assert r.count_error == 0.0 and r.detected_locomotives == 1


def test_no_truth_no_detection_and_false_alarms():
    r = match([], [])
    assert r.f1 == 1.0 and r.count_error == 0.0
    r = match([det(0, 0), det(50, 0)], [])
    assert r.fp == 2 and r.precision == 0.0 and r.f1 == 0.0
    assert r.count_error is None and r.count_diff == 2


def test_hidden_cars_are_dont_care():
    t = [truth(0, 0), truth(0, 15.2, hidden=True)]
    r = match([det(0, 0), det(0, 15.2)], t)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)
    r = match([det(0, 0)], t)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)
    assert r.true_freight == 1 and r.count_error == 0.0


def test_lookalike_and_off_track_false_positives():
    t = [truth(0, 0)]
    truck = "POLYGON((40 -8, 43 -8, 43 8, 40 8, 40 -8))"
    corridor = "POLYGON((-2.5 -100, 2.5 -100, 2.5 100, -2.5 100, -2.5 -100))"
    dets = [det(0, 0), det(41.5, 0), det(0, 60), det(20, 30)]
    r = match(dets, t, lookalikes=[("truck", truck)], track_corridors=[corridor])
    assert r.tp == 1 and r.fp == 3
    # on the truck, and off the tracks; the one on the empty track is a plain FP
    assert r.fp_lookalike == 2
    # a scene without tracks: every false car is off the tracks
    assert match(dets[1:], [], track_corridors=[]).fp_lookalike == 3
    assert match(dets[1:], []).fp_lookalike == 0          # nothing known about the scene


def test_geographic_coordinates():
    # the same car in degrees (about 0.9 m per 1e-5 deg): margins scale with it
    k = 1e-5 / 0.82
    c = rectangle_corners(130.6, 42.42, 14 * k, 3 * k, 30.0)
    t = [TruthCar(cx=130.6, cy=42.42, length_m=14, width_m=3, angle=30, type="box", corners=c)]
    d = Detection(cx=130.6 + 0.3 * k, cy=42.42, length_m=13, width_m=3, angle=31, score=0.8,
                  corners=rectangle_corners(130.6 + 0.3 * k, 42.42, 13 * k, 3 * k, 31.0))
    assert match([d], t).tp == 1


def test_summarize_micro_average():
    a = match([det(0, 0)], [truth(0, 0), truth(0, 15.2)])
    b = match([det(0, 0), det(30, 0)], [truth(0, 0)])
    s = summarize([a, b])
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.true_freight == 3 and s.detected_freight == 3
    assert s.count_error == 0.0
