"""The scene generator writes readable, georeferenced rasters of each product
type with ground truth that fits them, deterministically per seed, and a site
keeps its layout from date to date."""
import math
import os

import numpy as np
import pytest
from osgeo import gdal, osr

from railcar_counter.plugin.core import synthetic
from railcar_counter.plugin.core.detections import CAR_TYPES
from railcar_counter.plugin.core.synthetic import SceneSpec, generate_scene, load_scene_info, load_truth

gdal.UseExceptions()

SMALL = dict(size_m=(160.0, 160.0), n_tracks=5, containers=4, trucks=2, buildings=2, sheds=1)


def _scene(tmp_path, **kw):
    args = dict(SMALL)
    args.update(kw)
    spec = SceneSpec(**args)
    path = str(tmp_path / ("%s.tif" % spec.name))
    truth = generate_scene(spec, path)
    return spec, path, truth


def _pixel_size_m(ds):
    """Ground pixel size in metres at the raster centre (independent of the
    generator's own arithmetic: through OSR and a geodesic-ish formula)."""
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gt = ds.GetGeoTransform()
    cx, cy = ds.RasterXSize / 2, ds.RasterYSize / 2
    pts = [(gt[0] + c * gt[1], gt[3] + r * gt[5]) for c, r in ((cx, cy), (cx + 100, cy))]
    geo = srs.CloneGeogCS()
    geo.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(srs, geo)
    (lon0, lat0, _), (lon1, lat1, _) = [tr.TransformPoint(*p) for p in pts]
    r = 6371008.8
    dx = math.radians(lon1 - lon0) * math.cos(math.radians((lat0 + lat1) / 2)) * r
    dy = math.radians(lat1 - lat0) * r
    return math.hypot(dx, dy) / 100.0


@pytest.mark.parametrize("kw, nbands, gdt, nodata", [
    (dict(name="rgb", dtype="uint8", bands="rgb"), 3, gdal.GDT_Byte, None),
    (dict(name="bgrn", dtype="uint16", bit_depth=11, bands="bgrn", nodata_edge=0.1), 4, gdal.GDT_UInt16, 0),
    (dict(name="pan", dtype="uint8", bands="pan", nodata_edge=0.1), 1, gdal.GDT_Byte, 0),
    (dict(name="f32", dtype="float32", bands="rgb"), 3, gdal.GDT_Float32, -9999.0),
])
def test_products(tmp_path, kw, nbands, gdt, nodata):
    spec, path, truth = _scene(tmp_path, **kw)
    ds = gdal.Open(path)
    assert ds.RasterCount == nbands
    b = ds.GetRasterBand(1)
    assert b.DataType == gdt
    assert b.GetNoDataValue() == nodata
    assert b.GetBlockSize() == [256, 256]          # tiled
    a = ds.ReadAsArray()
    if gdt == gdal.GDT_UInt16:
        valid = a[0] != 0
        assert 0 < a[:, valid].max() <= 2047      # 11-bit data in 16 bits
        assert (~valid).mean() > 0.02             # the nodata collar is there
    if gdt == gdal.GDT_Float32:
        assert 0.0 <= np.nanmin(a) and np.nanmax(a) < 1.5
    if kw.get("bands") == "bgrn":
        names = [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)]
        assert names == ["Blue", "Green", "Red", "NIR"]
    assert a.std() > 5 if gdt != gdal.GDT_Float32 else a.std() > 0.02
    assert truth and all(t.type in CAR_TYPES for t in truth)


@pytest.mark.parametrize("crs, gsd", [("EPSG:32652", 0.5), ("EPSG:4326", 0.7), ("EPSG:2263", 0.3),
                                      ("EPSG:3857", 1.0)])
def test_crs_and_ground_pixel_size(tmp_path, crs, gsd):
    spec, path, truth = _scene(tmp_path, name="crs", crs=crs, gsd_m=gsd)
    ds = gdal.Open(path)
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    want = osr.SpatialReference()
    want.SetFromUserInput(crs)
    assert srs.IsSame(want)
    assert _pixel_size_m(ds) == pytest.approx(gsd, rel=0.02)
    assert ds.RasterXSize == round(160.0 / gsd)


def test_truth_lies_inside_and_has_real_sizes(tmp_path):
    spec, path, truth = _scene(tmp_path, name="truth", crs="EPSG:4326", size_m=(300.0, 300.0),
                               n_tracks=8, occupancy=0.6)
    ds = gdal.Open(path)
    gt = ds.GetGeoTransform()
    assert len(truth) > 30
    for t in truth:
        for x, y in t.corners:
            col, row = (x - gt[0]) / gt[1], (y - gt[3]) / gt[5]
            assert 0 <= col <= ds.RasterXSize and 0 <= row <= ds.RasterYSize
        assert 9.5 <= t.length_m <= 23.5 and 2.6 <= t.width_m <= 3.3
        assert 0 <= t.angle < 180
    # the truth file round-trips and OGR reads it in the raster's CRS
    again = load_truth(path)
    assert [(round(a.cx, 9), a.type) for a in again] == [(round(b.cx, 9), b.type) for b in truth]
    from osgeo import ogr
    v = ogr.Open(synthetic.truth_path(path))
    assert v.GetLayer(0).GetFeatureCount() == len(truth)
    info = load_scene_info(path)
    assert info["tracks"] and info["track_corridors"] and info["lookalikes"]
    # cars of a train: bodies 1-1.5 m apart
    trains = {}
    for t in truth:
        trains.setdefault(t.train, []).append(t)
    gaps = []
    m_per_deg = 111320.0 * math.cos(math.radians(42.42))
    for cars in trains.values():
        for a, b in zip(cars[:-1], cars[1:]):
            d = math.hypot((a.cx - b.cx) * m_per_deg, (a.cy - b.cy) * 111050.0)
            gaps.append(d - (a.length_m + b.length_m) / 2)
    assert gaps and 0.9 < min(gaps) and max(gaps) < 1.6


def test_deterministic_per_seed(tmp_path):
    _, p1, t1 = _scene(tmp_path, name="a", seed=5)
    _, p2, t2 = _scene(tmp_path, name="b", seed=5)
    _, p3, t3 = _scene(tmp_path, name="c", seed=6)
    a1, a2, a3 = (gdal.Open(p).ReadAsArray() for p in (p1, p2, p3))
    assert np.array_equal(a1, a2)
    assert [t.corners for t in t1] == [t.corners for t in t2]
    assert not np.array_equal(a1, a3)


def test_exact_car_count_and_date_tag(tmp_path):
    spec, path, truth = _scene(tmp_path, name="n", n_cars=23, date="2023-10-05", locomotive_rate=0.0)
    assert sum(1 for t in truth if t.is_freight()) == 23
    ds = gdal.Open(path)
    assert ds.GetMetadataItem("TIFFTAG_DATETIME").startswith("2023:10:05")


def test_lookalike_scene_has_no_cars(tmp_path):
    spec, path, truth = _scene(tmp_path, name="look", n_cars=0, locomotive_rate=0, trucks=6,
                               truck_parking=6, containers=20)
    assert truth == []
    info = load_scene_info(path)
    kinds = {k for k, _ in info["lookalikes"]}
    assert {"truck", "container"} <= kinds


def test_clouds_flag_hidden_cars_and_alpha(tmp_path):
    spec, path, truth = _scene(tmp_path, name="cloud", size_m=(300.0, 300.0), n_tracks=8,
                               clouds=0.6, nodata_edge=0.1, alpha=True, seed=3)
    ds = gdal.Open(path)
    assert ds.RasterCount == 4
    assert ds.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    assert (ds.GetRasterBand(4).ReadAsArray() == 0).any()
    assert any(t.hidden for t in truth) and not all(t.hidden for t in truth)


def test_jpeg_roundtrip_changes_pixels_a_little(tmp_path):
    _, p1, _ = _scene(tmp_path, name="raw", seed=9)
    _, p2, _ = _scene(tmp_path, name="jpg", seed=9, jpeg_quality=40)
    a, b = (gdal.Open(p).ReadAsArray().astype(float) for p in (p1, p2))
    diff = np.abs(a - b).mean()
    assert 0.3 < diff < 12


def test_site_keeps_its_layout(tmp_path):
    site = synthetic.generate_site(str(tmp_path / "site"), {"2019-01-20": 5, "2023-10-05": 40},
                                   size_m=(250.0, 250.0))
    assert [os.path.basename(p) for p, _, _ in site] == ["tumangang_2019-01-20.tif", "tumangang_2023-10-05.tif"]
    (p1, _, t1), (p2, _, t2) = site
    assert sum(t.is_freight() for t in t1) == 5 and sum(t.is_freight() for t in t2) == 40
    i1, i2 = load_scene_info(p1), load_scene_info(p2)
    assert i1["tracks"] == i2["tracks"]
    assert i1["lookalikes"] == i2["lookalikes"]
    d1, d2 = gdal.Open(p1), gdal.Open(p2)
    assert d1.GetGeoTransform() == d2.GetGeoTransform()
    assert d1.GetMetadataItem("TIFFTAG_DATETIME").startswith("2019:01:20")


def test_suites_are_distinct_and_cover_the_brief():
    tune, hold = synthetic.tuning_suite(), synthetic.holdout_suite()
    assert 10 <= len(tune) <= 16 and 10 <= len(hold) <= 16
    assert not {s.seed for s in tune} & {s.seed for s in hold}
    for suite in (tune, hold):
        assert {0.3, 0.5, 0.7, 1.0} <= {s.gsd_m for s in suite}
        crss = {s.crs for s in suite}
        assert "EPSG:4326" in crss and "EPSG:2263" in crss
        assert {"uint8", "uint16"} <= {s.dtype for s in suite}
        assert "pan" in {s.bands for s in suite}
        assert any(s.n_cars == 0 for s in suite)                 # look-alikes only
        # a quiet yard of lone cars at 1 m, where bare track once read as cars
        assert any(s.n_cars and s.n_cars <= 15 and s.single_car_rate >= 0.9 and s.gsd_m == 1.0
                   for s in suite)
        assert any(s.n_cars == 0 and s.n_tracks >= 10 and s.gsd_m >= 0.7 for s in suite)
        assert any(s.curve_radius_m for s in suite) and any(s.turnouts for s in suite)
        assert any(s.clouds for s in suite) and any(s.jpeg_quality for s in suite)
        assert any(s.nodata_edge for s in suite) and any(s.sun_elevation <= 20 for s in suite)
    # each spec has a stable cache key
    assert tune[0].key() == synthetic.tuning_suite()[0].key()
    assert len({s.key() for s in tune + hold}) == len(tune) + len(hold)


def test_off_nadir_roofs_lean_away_from_the_satellite(tmp_path):
    _, _, flat = _scene(tmp_path, name="nadir", seed=4)
    _, path, lean = _scene(tmp_path, name="lean", seed=4, off_nadir_deg=20.0, view_azimuth=90.0)
    ds = gdal.Open(path)
    gt = ds.GetGeoTransform()
    same = {(round(t.length_m, 6), t.train): t for t in flat}
    shifts = [same[(round(t.length_m, 6), t.train)].cx - t.cx for t in lean
              if (round(t.length_m, 6), t.train) in same]
    assert shifts
    # satellite to the east: roofs seen about 4.5 m * tan(20 deg) further west
    assert all(1.2 < dx < 2.0 for dx in shifts)
    for t in lean:
        for x, y in t.corners:
            assert 0 <= (x - gt[0]) / gt[1] <= ds.RasterXSize
