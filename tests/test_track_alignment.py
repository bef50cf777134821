"""Lining a tracks layer up with the image (core/track_alignment.py, pure
numpy): cars stand on tracks, so the shift that brings the detected cars
onto the lines is the layer's offset."""
import numpy as np

from railcar_counter.plugin.core.track_alignment import best_shift, near_lines

SPACING = 4.7     # metres between neighbouring yard tracks


def yard(n_tracks=6, cars=10, seed=0, angle_deg=25.0):
    """Car centres on ``n_tracks`` parallel straight tracks (0.3 m of
    scatter, as detections have) and the tracks' centre lines."""
    rng = np.random.default_rng(seed)
    a = np.radians(angle_deg)
    u, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    lines, points = [], []
    for k in range(n_tracks):
        start = k * SPACING * n
        lines.append([tuple(start - 20 * u), tuple(start + 300 * u)])
        for j in range(cars):
            points.append(start + (15.0 * j + 5) * u + rng.normal(0, 0.3, 2))
    return np.array(points), lines, n


def moved(lines, d):
    return [[(x + d[0], y + d[1]) for x, y in line] for line in lines]


def test_finds_the_offset_of_a_misregistered_yard_layer():
    points, lines, n = yard()
    weights = np.full(len(points), 0.8)
    for off in (2.0, 3.5, -3.0):
        layer = moved(lines, off * n)       # the layer lies `off` metres across the tracks
        if abs(off) > 2.5:
            assert near_lines(points, layer).mean() < 0.9   # as given, a track's cars are lost
        shift = np.array(best_shift(points, weights, layer))
        # the shift across the tracks undoes the offset (along them it is
        # free: straight tracks look the same when slid along)
        assert abs(shift @ n + off) < 0.25, (off, shift)
        assert near_lines(points, layer, shift).all()


def test_leaves_a_layer_that_runs_through_its_cars():
    points, lines, n = yard()
    assert best_shift(points, np.ones(len(points)), lines) == (0.0, 0.0)


def test_one_traced_track_is_not_moved_onto_a_busier_neighbour():
    """The analyst traced one track on this image; the next track holds
    more than twice as many cars. They stay out, also when the trace is
    1.7 m off its track: it is moved onto its own cars."""
    points, lines, n = yard(n_tracks=2, cars=20)
    points = np.vstack([points[:8], points[20:]])     # 8 cars on the traced track, 20 next
    here = np.arange(len(points)) < 8
    for off in (0.0, 1.7, -1.7):
        layer = moved(lines[:1], off * n)
        shift = best_shift(points, np.ones(len(points)), layer)
        kept = near_lines(points, layer, shift)
        assert kept[here].all() and not kept[~here].any(), (off, shift)


def test_too_few_cars_to_tell_leave_the_layer_alone():
    points, lines, n = yard(n_tracks=1, cars=5)
    layer = moved(lines, 3.0 * n)
    assert best_shift(points, np.ones(len(points)), layer) == (0.0, 0.0)


def test_one_line_for_a_double_track_keeps_both_tracks():
    """Maps often draw a double main line as one line between its tracks:
    the cars of both, 2.3-2.5 m either side, count, and the line is not
    pulled onto one of them."""
    points, lines, n = yard(n_tracks=2, cars=15)
    a, b = np.array(lines[0]), np.array(lines[1])
    middle = [[tuple(p) for p in (a + b) / 2]]
    assert best_shift(points, np.ones(len(points)), middle) == (0.0, 0.0)
    assert near_lines(points, middle).all()
