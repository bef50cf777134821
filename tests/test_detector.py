"""count_railcars end to end on generated scenes (no QGIS): accuracy on a
small realistic yard, look-alikes, area of interest, known tracks, window
seams, progress and Cancel."""
import math
import os

import numpy as np
import pytest
from osgeo import gdal
from shapely.geometry import LineString, Point, box

from railcar_counter.plugin.core import cars, detector, evaluation, imaging, shadows, synthetic
from railcar_counter.plugin.core.detector import CountOptions, count_railcars
from railcar_counter.plugin.core.errors import Canceled, InputError

YARD = synthetic.SceneSpec(name="test_yard", seed=4242, gsd_m=0.5, size_m=(260.0, 200.0),
                           n_tracks=6, track_angle_deg=63.0, occupancy=0.55, trucks=3,
                           containers=8, date="2023-10-05")
LOOKALIKES = synthetic.SceneSpec(name="test_lookalikes", seed=4243, gsd_m=0.5,
                                 size_m=(260.0, 200.0), n_tracks=4, n_cars=0,
                                 locomotive_rate=0, trucks=10, truck_parking=8,
                                 containers=30, sheds=2)

# a quiet yard seen at 1 m: a few lone cars on many bare tracks
QUIET_1M = synthetic.SceneSpec(name="test_quiet_1m", seed=4260, gsd_m=1.0, size_m=(400.0, 400.0),
                               n_tracks=10, track_angle_deg=50.0, n_cars=5, single_car_rate=1.0,
                               locomotive_rate=0.0, blur=0.6)

# a 1 m yard under a sun 35 degrees high from across its tracks: each
# train's shadow covers the next track like a row of dark cars
LONG_SHADOWS_1M = synthetic.SceneSpec(name="test_long_shadows_1m", seed=3300, gsd_m=1.0,
                                      size_m=(420.0, 90.0), n_tracks=6, track_angle_deg=90.0,
                                      occupancy=0.45, locomotive_rate=0.0, sun_azimuth=170.0,
                                      sun_elevation=35.0, roads=0, trucks=0, containers=0,
                                      sheds=0, buildings=0, platforms=0)

TRAINS = synthetic.SceneSpec(name="test_trains", seed=4254, gsd_m=0.5, size_m=(360.0, 200.0),
                             n_tracks=8, track_angle_deg=20.0, occupancy=0.7,
                             locomotive_rate=1.0, single_car_rate=0.0, date="2023-10-05")


def record_window_sides(monkeypatch):
    """The shadow side each window is read with (None: not told yet), in a
    list that fills as counts run."""
    sides = []
    plain = detector.detect_in_tile

    def recording(*args, **kwargs):
        sides.append(kwargs.get("side"))
        return plain(*args, **kwargs)

    monkeypatch.setattr(detector, "detect_in_tile", recording)
    return sides


@pytest.fixture(scope="module")
def yard(tmp_path_factory):
    return synthetic.cached_scene(YARD, str(tmp_path_factory.mktemp("scenes")))


def test_counts_a_realistic_yard(yard):
    path, truth = yard
    result = count_railcars(path)
    m = evaluation.match(result.detections, truth)
    assert m.true_freight > 30
    assert m.f1 >= 0.7, m.as_dict()
    assert abs(m.count_error) <= 0.25, m.as_dict()
    d = result.detections[0]
    assert 0 <= d.score <= 1 and 0 <= d.angle < 180
    assert 5 <= d.length_m <= 25 and 2 <= d.width_m <= 4
    assert d.date == "2023-10-05" and d.source.startswith("test_yard")
    assert result.count + result.locomotives == len(result.detections)


def test_noisy_image_keeps_its_cars_with_its_own_threshold(yard, tmp_path):
    """Noise lowers every car's score: a fixed threshold would lose a fifth
    of the cars here (59 of 74); the image's own threshold, half the median
    score of its clear cars, keeps them."""
    path, truth = yard
    clean = count_railcars(path)
    src = gdal.Open(path)
    noisy = str(tmp_path / "noisy.tif")
    out = gdal.GetDriverByName("GTiff").CreateCopy(noisy, src)
    rng = np.random.default_rng(1)
    for b in range(1, src.RasterCount + 1):
        a = src.GetRasterBand(b).ReadAsArray().astype(float)
        out.GetRasterBand(b).WriteArray(np.clip(a + rng.normal(0, 0.08 * 255, a.shape), 0, 255))
    out = src = None
    result = count_railcars(noisy)
    m = evaluation.match(result.detections, truth)
    assert result.score_threshold < cars.BASE_THRESHOLD <= clean.score_threshold + 0.05
    assert min(d.score for d in result.detections) >= result.score_threshold
    assert abs(m.count_error) <= 0.1, m.as_dict()


def test_locomotives_are_reported_apart_and_types_are_right(tmp_path):
    """Every train has a locomotive: most are typed as such and not
    counted as freight cars, and a named type is nearly always right."""
    path, truth = synthetic.cached_scene(TRAINS, str(tmp_path))
    result = count_railcars(path)
    m = evaluation.match(result.detections, truth)
    locos = [j for j, t in enumerate(truth) if t.type == "locomotive"]
    assert len(locos) >= 4
    pairs = dict((j, i) for i, j in m.pairs)
    found = [j for j in locos if j in pairs and result.detections[pairs[j]].type == "locomotive"]
    assert len(found) >= 0.5 * len(locos), (len(found), len(locos))
    assert result.locomotives >= len(found)
    assert result.count == len(result.detections) - result.locomotives
    typed = [(truth[j].type, result.detections[i].type) for i, j in m.pairs
             if result.detections[i].type != "unknown"]
    assert len(typed) >= 0.3 * len(m.pairs)
    assert sum(a == b for a, b in typed) >= 0.8 * len(typed), typed


def test_lookalikes_off_the_tracks_are_not_railcars(tmp_path):
    path, _ = synthetic.cached_scene(LOOKALIKES, str(tmp_path))
    assert count_railcars(path).count <= 2


def test_bare_track_of_a_quiet_yard_is_not_boxed_as_cars_at_1m(tmp_path):
    path, truth = synthetic.cached_scene(QUIET_1M, str(tmp_path))
    res = count_railcars(path)
    m = evaluation.match(res.detections, truth)
    assert m.fp <= 3 and m.tp >= 3 and abs(res.count - 5) <= 3


def test_shadows_on_the_next_track_are_not_boxed_as_cars_at_1m(tmp_path, monkeypatch):
    """Coarse imagery is read knowing the side shadows fall on, as finer
    imagery is: without it, the shadows on the next track count as cars."""
    path, truth = synthetic.cached_scene(LONG_SHADOWS_1M, str(tmp_path))
    true = sum(1 for t in truth if not t.hidden)
    res = count_railcars(path)
    assert np.dot(res.shadow_side.direction, shadows.shadow_direction(170.0)) > 0.9
    m = evaluation.match(res.detections, truth)
    plain = detector.models_for
    monkeypatch.setattr(detector, "models_for", lambda gsd_m: plain(gsd_m)[:2] + (None,))
    blind = count_railcars(path)
    mb = evaluation.match(blind.detections, truth)
    assert m.tp >= 0.95 * true                   # here 86 of 89 (blind: 85)
    assert m.fp < 0.6 * mb.fp                    # 15 against 32
    assert abs(res.count - true) < abs(blind.count - true)


def test_area_of_interest_keeps_cars_whose_centre_is_inside(yard):
    path, truth = yard
    xs = sorted(c.cx for c in truth)
    ys = sorted(c.cy for c in truth)
    xcut = xs[len(xs) // 2]
    aoi = "POLYGON((%f %f, %f %f, %f %f, %f %f, %f %f))" % (
        xs[0] - 50, ys[0] - 50, xcut, ys[0] - 50, xcut, ys[-1] + 50, xs[0] - 50, ys[-1] + 50,
        xs[0] - 50, ys[0] - 50)
    full = count_railcars(path)
    part = count_railcars(path, CountOptions(aoi_wkt=[aoi]))
    assert all(d.cx <= xcut for d in part.detections)
    assert 0.3 * full.count <= part.count <= 0.7 * full.count


def test_area_of_interest_partly_off_the_image_is_reported(yard):
    """An image that covers only part of the area of interest (a strip's
    edge) is counted on that part, and the result says how much of the
    area it covers: compared with other dates, its count is a lower bound."""
    from railcar_counter.plugin.core.raster import RasterSource
    path, _ = yard
    src = RasterSource(path)
    (x0, y1), (x1, y0) = src.pixel_to_map(0, 0), src.pixel_to_map(src.width, src.height)
    inside = box(x0 + 20, y0 + 20, x1 - 20, y1 - 20)
    overhang = box(x0 + (x1 - x0) / 2, y0 + 20, x1 + (x1 - x0) / 2, y1 - 20)   # half off
    full = count_railcars(path, CountOptions(aoi_wkt=[inside.wkt]))
    assert full.coverage > 0.99 and full.coverage_note == ""
    half = count_railcars(path, CountOptions(aoi_wkt=[overhang.wkt]))
    assert abs(half.coverage - 0.5) < 0.02, half.coverage
    assert half.coverage_note.startswith("Only 50 % of the area of interest has image data")
    assert half.coverage_note in half.notes
    assert count_railcars(path).coverage is None      # no area of interest: nothing to say


def test_known_tracks_restrict_detection_to_them(yard):
    path, truth = yard
    one_train = [c for c in truth if c.train == truth[0].train]
    (x0, y0), (x1, y1) = (one_train[0].cx, one_train[0].cy), (one_train[-1].cx, one_train[-1].cy)
    dx, dy = x1 - x0, y1 - y0
    line = LineString([(x0 - dx, y0 - dy), (x1 + dx, y1 + dy)])
    result = count_railcars(path, CountOptions(tracks_wkt=[line.wkt]))
    assert len(one_train) // 2 <= len(result.detections) <= len(one_train) + 2
    assert all(line.distance(Point(d.cx, d.cy)) <= 1.5 for d in result.detections)
    # the same track traced 1.7 m off (OpenStreetMap against this image):
    # the same cars, none from the next track (4.5-5 m away)
    norm = math.hypot(dx, dy)
    off = LineString([(x + 1.7 * dy / norm, y - 1.7 * dx / norm) for x, y in line.coords])
    shifted = count_railcars(path, CountOptions(tracks_wkt=[off.wkt]))
    assert abs(len(shifted.detections) - len(result.detections)) <= 1
    assert all(line.distance(Point(d.cx, d.cy)) <= 1.5 for d in shifted.detections)


def test_tracks_layer_beyond_the_image(yard):
    """A railway layer of a whole region counts what the site's part of it
    counts; one that misses the image says so instead of counting nothing."""
    path, truth = yard
    one_train = [c for c in truth if c.train == truth[0].train]
    (x0, y0), (x1, y1) = (one_train[0].cx, one_train[0].cy), (one_train[-1].cx, one_train[-1].cy)
    dx, dy = x1 - x0, y1 - y0
    line = LineString([(x0 - dx, y0 - dy), (x1 + dx, y1 + dy)])
    # the same track running 200 km on, and lines elsewhere in the region
    region = [LineString([(x0 - 1000 * dx, y0 - 1000 * dy), (x1 + 1000 * dx, y1 + 1000 * dy)])]
    region += [LineString([(x0 + 5e4 + k * 10, y0), (x0 + 6e4, y0 + 5e4)]) for k in range(50)]
    near = count_railcars(path, CountOptions(tracks_wkt=[line.wkt])).count
    assert count_railcars(path, CountOptions(tracks_wkt=[g.wkt for g in region])).count == near
    with pytest.raises(InputError, match="no lines over"):
        count_railcars(path, CountOptions(tracks_wkt=[g.wkt for g in region[1:]]))


def test_window_seams_do_not_change_the_count(yard, monkeypatch):
    path, _ = yard
    whole = count_railcars(path).count
    monkeypatch.setattr(detector, "TILE_M", 70.0)        # many seams across the yard
    # windows start on the network's grid, so they see what the whole
    # raster shows: the same cars (give or take float rounding at the
    # threshold, as matrix sizes change)
    assert abs(count_railcars(path).count - whole) <= 1


def test_the_yard_tells_which_side_shadows_fall_on(yard):
    """The generated sun stands at azimuth 150, across the tracks (63):
    the cars' votes put the shadows on its far side."""
    from railcar_counter.plugin.core.shadows import shadow_direction
    side = count_railcars(yard[0]).shadow_side
    assert side.direction is not None, side
    assert np.dot(side.direction, shadow_direction(YARD.sun_azimuth)) > 0.5, side


def test_a_lone_car_s_shadow_side_comes_from_the_date_and_latitude(raster_factory):
    """One car cannot outvote chance; on a winter date at 42 N the sun
    stands in the south all day, so shadows fall north of east-west tracks."""
    path, _ = raster_factory("lone_2022-12-01.tif", n_cars=1, tracks=1)
    res = count_railcars(path)
    side = res.shadow_side
    assert side.by_date and side.z < shadows.MIN_Z, side
    np.testing.assert_allclose(side.direction, (0.0, -1.0), atol=0.03)   # north, pixel frame
    assert side.reading(0.0) is not None                # an east-west car: its side is read
    assert "date and latitude" in res.shadow_note
    assert res.count == 1
    # no date, or a June date (the sun swings from east to west): no side
    assert count_railcars(path, CountOptions(date="2022-06-21")).shadow_side.direction is None
    undated = path.replace("lone_2022-12-01", "lone")
    os.rename(path, undated)
    assert count_railcars(undated).shadow_side.direction is None


def test_the_product_s_sun_azimuth_tells_every_window_the_side(raster_factory, tmp_path,
                                                              monkeypatch):
    """A WorldView .IMD beside the image gives the sun's azimuth: every
    window reads each car with that side alone, no vote needed."""
    from railcar_counter.plugin.core.shadows import shadow_direction
    path, truth = raster_factory("wv_product.tif", n_cars=6, tracks=2)
    unknown = count_railcars(path)         # 12 cars: too few to tell the side
    assert unknown.shadow_side.direction is None
    (tmp_path / "wv_product.IMD").write_text(
        'BEGIN_GROUP = IMAGE_1\n\tmeanSunAz = 160.0;\nEND_GROUP = IMAGE_1\nEND;\n')
    sides = record_window_sides(monkeypatch)
    res = count_railcars(path)
    assert res.shadow_side.sun_azimuth == pytest.approx(160.0)
    # north-up image: the pixel frame's shadow direction is shadow_direction's
    np.testing.assert_allclose(res.shadow_side.direction, shadow_direction(160.0), atol=0.03)
    assert "azimuth 160" in res.shadow_note
    assert unknown.count <= res.count <= truth["cars"]      # here 8 and 10 of 12
    assert sides and all(s is not None and s.sun_azimuth is not None for s in sides)


def test_windows_read_with_the_side_alone_find_what_every_reading_finds(yard, monkeypatch):
    """Once the first windows are sure of the shadow side, the next ones
    are read with it alone (a third of the verifier's work): the cars are
    those that reading every window every way and settling at the end
    gives."""
    path, _ = yard
    monkeypatch.setattr(detector, "TILE_M", 70.0)
    sides = record_window_sides(monkeypatch)
    monkeypatch.setattr(shadows, "SURE_WEIGHT", 10.0)
    early = count_railcars(path)
    assert any(s is None for s in sides) and any(s is not None for s in sides)
    sides.clear()
    monkeypatch.setattr(shadows, "SURE_WEIGHT", float("inf"))
    late = count_railcars(path)
    assert all(s is None for s in sides)
    assert early.shadow_side.direction is not None and late.shadow_side.direction is not None
    key = [(d.cx, d.cy, d.score, d.type) for d in early.detections]
    assert key == [(d.cx, d.cy, d.score, d.type) for d in late.detections]


def test_progress_reaches_the_end_and_cancel_stops(yard):
    path, _ = yard
    seen = []
    count_railcars(path, progress=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(Canceled):
        count_railcars(path, is_canceled=lambda: True)


def test_sensitivity_out_of_range_is_explained(yard):
    with pytest.raises(InputError, match="between 0 and 1"):
        count_railcars(yard[0], CountOptions(sensitivity=3))


def test_openblas_works_single_threaded_during_a_count_and_is_restored(yard):
    """Two window workers already use the cores; OpenBLAS threads on top
    made counting 2-3x slower. The setting is the process's: it must come
    back to what it was."""
    from railcar_counter.plugin.core import blas
    controls = blas._find_controls()
    if not controls:
        pytest.skip("numpy here does not use OpenBLAS")
    setter, getter = controls[0]
    before = getter()
    setter(2)
    try:
        seen = []
        count_railcars(yard[0], progress=lambda f: seen.append(getter()))
        assert seen and set(seen) == {1}
        assert getter() == 2
    finally:
        setter(before)


def test_second_pass_is_skipped_only_where_the_first_sees_nothing(yard):
    """The network's second (turned) pass is left out where there is no
    heat near the threshold: an empty field costs one pass; a yard gets both
    and, wherever a car could reach the threshold, the same outputs as when
    both passes run everywhere (elsewhere the first pass's)."""
    from railcar_counter.plugin.core.network import RailcarNet, input_channels
    from railcar_counter.plugin.core.raster import RasterSource

    class CountingNet(RailcarNet):
        passes = 0

        def __call__(self, x, is_canceled=None):
            CountingNet.passes += 1
            return super().__call__(x, is_canceled)

    net = CountingNet()
    rng = np.random.default_rng(0)
    ground = imaging.gauss_blur(rng.standard_normal((256, 256)), 6.0)
    field, _ = input_channels((0.4 + 0.1 * ground).astype(np.float32))     # a smooth field
    net.predict(field, heat_threshold=0.16)
    assert CountingNet.passes == 1
    src = RasterSource(yard[0])
    gray, _ = src.read(0, 0, 256, 256, 256, 256)
    x, _ = input_channels(gray)
    CountingNet.passes = 0
    both = net.predict(x, heat_threshold=0.16)
    assert CountingNet.passes == 2
    everywhere = net.predict(x)
    near_cars = 1.0 / (1.0 + np.exp(-everywhere[0])) > 0.08
    assert near_cars.any()

    def same(a, b):
        """Pixels where all outputs agree up to float rounding: the gated
        pass convolves a cropped block, which BLAS may sum in another order
        than the whole window."""
        return np.isclose(a, b, rtol=0, atol=1e-4).all(axis=0)

    assert same(both, everywhere)[near_cars].all()
    plain = net(x)
    assert (same(both, everywhere) | same(both, plain)).all()
    assert not same(everywhere, plain)[near_cars].all()     # the passes differ there
