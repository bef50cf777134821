"""The detector's building blocks, without QGIS: pixel sizes from any CRS,
band layouts, the network's numpy convolution, the score threshold."""
import math

import numpy as np
import pytest
from osgeo import gdal, osr

from railcar_counter.plugin.core import cars
from railcar_counter.plugin.core.errors import InputError
from railcar_counter.plugin.core.network import conv
from railcar_counter.plugin.core.raster import TONE_MEDIAN_RANGE, RasterSource, tone_gamma
from railcar_counter.plugin.core.verifier import CLASSES


def _write(path, epsg, gt, width=100, height=100, bands=1, dtype=gdal.GDT_Byte, nodata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, dtype)
    ds.SetGeoTransform(gt)
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(rng.integers(1, 200, (height, width)).astype(np.uint16))
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return str(path)


@pytest.mark.parametrize("epsg, gt, expected", [
    (32652, (500000, 0.5, 0, 4700000, 0, -0.5), 0.5),                   # UTM metres
    (4326, (130.6, 0.5 / 82200.0, 0, 42.42, 0, -0.5 / 111050.0), 0.5),  # degrees at 42 N
    (2263, (980000, 1.0, 0, 200000, 0, -1.0), 0.3048),                  # US feet
    (3857, (14538000, 1.0, 0, 5225000, 0, -1.0), 1.0 * math.cos(math.radians(42.42))),  # Web Mercator
])
def test_pixel_size_in_metres_from_any_crs(tmp_path, epsg, gt, expected):
    src = RasterSource(_write(tmp_path / "r.tif", epsg, gt))
    assert src.gsd_m == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("epsg, gt, east, north", [
    (32652, (500000, 0.5, 0, 4700000, 0, -0.5), (1, 0), (0, -1)),          # north up
    (4326, (130.6, 0.5 / 82200.0, 0, 42.42, 0, -0.5 / 111050.0), (1, 0), (0, -1)),
    (32652, (500000, 0.5, 0, 4699950, 0, 0.5), (1, 0), (0, 1)),            # south up
    (32652, (500000, 0, 0.5, 4700000, 0.5, 0), (0, 1), (1, 0)),            # turned, mirrored
])
def test_the_raster_knows_its_latitude_and_where_north_lies(tmp_path, epsg, gt, east, north):
    """For the shadows' side by date (shadows.daytime_shadows): the
    latitude and the unit vectors east and north along its columns and rows."""
    lat, e, n = RasterSource(_write(tmp_path / "r.tif", epsg, gt)).ground_frame()
    assert lat == pytest.approx(42.4, abs=0.1)
    np.testing.assert_allclose(e, east, atol=0.03)        # UTM grid north is 1 degree off
    np.testing.assert_allclose(n, north, atol=0.03)
    photo = _write(tmp_path / "photo.tif", None, (0, 1, 0, 0, 0, 1))
    assert RasterSource(photo, pixel_size_m=0.3).ground_frame() is None
    # QGIS gives such a layer the project's CRS: it is still nowhere
    assert RasterSource(photo, _wkt(3857), pixel_size_m=0.3).ground_frame() is None


IMD = """version = "28.4";
BEGIN_GROUP = IMAGE_1
	satId = "WV02";
	firstLineTime = 2012-12-01T02:15:00.000000Z;
	meanSunAz = %s;
	meanSunEl = 25.1;
END_GROUP = IMAGE_1
END;
"""


def test_the_sun_s_azimuth_is_read_from_the_product_s_metadata(tmp_path):
    """A WorldView product's .IMD beside the image (read by GDAL), or a
    plain tag; several values are averaged as angles."""
    gt = (500000, 0.5, 0, 4700000, 0, -0.5)
    product = _write(tmp_path / "wv.tif", 32652, gt)
    (tmp_path / "wv.IMD").write_text(IMD % "160.2")
    assert RasterSource(product).sun_azimuth() == pytest.approx(160.2)
    tagged = _write(tmp_path / "tagged.tif", 32652, gt)
    ds = gdal.Open(tagged, gdal.GA_Update)
    ds.SetMetadata({"SUN_AZIMUTH": "350", "Solar_Incidences.SUN_AZIMUTH": "10"})
    ds = None
    assert RasterSource(tagged).sun_azimuth() == pytest.approx(0.0, abs=1e-6) or \
        RasterSource(tagged).sun_azimuth() == pytest.approx(360.0, abs=1e-6)
    assert RasterSource(_write(tmp_path / "plain.tif", 32652, gt)).sun_azimuth() is None


def test_raster_without_georeferencing_is_refused_with_advice(tmp_path):
    path = _write(tmp_path / "plain.tif", None, (0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="Georeference the image.*pixel size"):
        RasterSource(path)
    # Given the pixel size, it is read in the frame QGIS draws it in.
    src = RasterSource(path, pixel_size_m=0.3)
    assert (src.gsd_x_m, src.gsd_y_m) == (0.3, 0.3)
    assert src.pixel_to_map(10, 20) == (10.0, -20.0)


def test_image_located_by_control_points_is_sent_to_warp(tmp_path):
    path = str(tmp_path / "l1.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 100, 100, 1, gdal.GDT_Byte)
    ds.SetGCPs([gdal.GCP(130.6 + 0.001 * i, 42.4 - 0.001 * j, 0, 100 * i, 100 * j)
                for i in (0, 1) for j in (0, 1)], _wkt(4326))
    ds = None
    with pytest.raises(InputError, match="control points.*Warp"):
        RasterSource(path)


def _wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def test_image_without_crs_takes_the_crs_the_analyst_gives(tmp_path):
    """A JPEG or PNG with a world file has pixel sizes but no CRS: the
    detector asks for one, takes the layer's, and refuses a geographic CRS
    for coordinates that cannot be degrees."""
    path = _write(tmp_path / "worldfile.tif", None, (500000, 0.5, 0, 4700000, 0, -0.5))
    with pytest.raises(InputError, match="no CRS.*Layer Properties"):
        RasterSource(path)
    assert RasterSource(path, _wkt(32652)).gsd_m == pytest.approx(0.5, rel=0.01)
    with pytest.raises(InputError, match="not degrees.*UTM"):
        RasterSource(path, _wkt(4326))


def test_paletted_image_is_read_as_colours_not_indices(tmp_path):
    path = _write(tmp_path / "pal.tif", 32652, (500000, 0.5, 0, 4700000, 0, -0.5))
    ds = gdal.Open(path, gdal.GA_Update)
    band = ds.GetRasterBand(1)
    table = gdal.ColorTable()
    for i in range(256):                       # index 0 is white, 255 near black
        v = max(255 - i, 10)                   # (pure black would be a collar)
        table.SetColorEntry(i, (v, v, v, 255))
    band.SetColorTable(table)
    band.SetColorInterpretation(gdal.GCI_PaletteIndex)
    band.WriteArray(np.repeat([[0] * 50 + [255] * 50], 100, axis=0).astype(np.uint8))
    ds = None
    src = RasterSource(path)
    gray, _ = src.read(0, 0, 100, 100, 50, 50)
    src.close()
    assert gray[:, :25].mean() > 0.9 and gray[:, 25:].mean() < 0.1


def test_missing_file_says_so(tmp_path):
    with pytest.raises(InputError, match="not found"):
        RasterSource(str(tmp_path / "nope.tif"))


def test_four_band_uint16_uses_visible_bands_and_masks_nodata(tmp_path):
    path = _write(tmp_path / "bgrn.tif", 32652, (500000, 0.5, 0, 4700000, 0, -0.5),
                  bands=4, dtype=gdal.GDT_UInt16, nodata=0)
    ds = gdal.Open(path, gdal.GA_Update)
    a = ds.GetRasterBand(1).ReadAsArray()
    a[:10, :] = 0
    for b in range(4):
        ds.GetRasterBand(b + 1).WriteArray(a)
    ds = None
    src = RasterSource(path)
    assert src.bands == [1, 2, 3]
    gray, valid = src.read(0, 0, 100, 100, 100, 100)
    assert not valid[:10].any() and valid[10:].all()
    assert np.isnan(gray[:10]).all()
    assert 0.0 <= np.nanpercentile(gray, 50) <= 1.0


def test_eight_band_worldview_product_is_read_through_blue_green_red(tmp_path):
    path = _write(tmp_path / "wv3_8band.tif", 32652, (500000, 0.3, 0, 4700000, 0, -0.3),
                  bands=8, dtype=gdal.GDT_UInt16)
    assert RasterSource(path).bands == [2, 3, 5]


def test_black_collar_without_nodata_is_not_image(tmp_path):
    """An 8-bit RGB export with a black collar and no nodata declared: the
    collar is read as no data and kept out of the brightness stretch, as
    if nodata were set; a car-sized black patch inside stays image."""
    path = _write(tmp_path / "collar.tif", 32652, (500000, 0.5, 0, 4700000, 0, -0.5),
                  width=200, height=200, bands=3)
    ds = gdal.Open(path, gdal.GA_Update)
    arrays = [ds.GetRasterBand(b + 1).ReadAsArray() for b in range(3)]
    for b, a in enumerate(arrays):
        a[:, :60] = 0                 # the collar: 30 m
        a[100:106, 120:150] = 0       # a black car, 3 m x 15 m
        ds.GetRasterBand(b + 1).WriteArray(a)
    ds = None
    src = RasterSource(path)
    gray, valid = src.read(0, 0, 200, 200, 200, 200)
    assert not valid[:, :60].any() and valid[:, 60:].all()
    assert np.isnan(gray[:, :60]).all() and (gray[100:106, 120:150] < 0.05).all()
    # the stretch is the one the image gives with its collar declared
    with_nodata = _write(tmp_path / "declared.tif", 32652, (500000, 0.5, 0, 4700000, 0, -0.5),
                         width=200, height=200, bands=3, nodata=0)
    ds = gdal.Open(with_nodata, gdal.GA_Update)
    for b, a in enumerate(arrays):
        ds.GetRasterBand(b + 1).WriteArray(a)
    ds = None
    lo, scale, gamma = src.stretch()
    assert (lo, scale, gamma) == RasterSource(with_nodata).stretch()
    assert lo > 1.0


def test_internal_mask_band_is_no_data(tmp_path):
    """A GeoTIFF whose mask band (gdal_translate -mask, JPEG-compressed
    products) hides a white collar: the collar is neither read nor
    stretched."""
    path = _write(tmp_path / "masked.tif", 32652, (500000, 0.5, 0, 4700000, 0, -0.5),
                  width=200, height=200, bands=3)
    plain = RasterSource(path).stretch()
    ds = gdal.Open(path, gdal.GA_Update)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    for b in range(3):
        a = ds.GetRasterBand(b + 1).ReadAsArray()
        a[:50] = 255
        ds.GetRasterBand(b + 1).WriteArray(a)
    m = np.full((200, 200), 255, np.uint8)
    m[:50] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(m)
    ds = None
    src = RasterSource(path)
    _gray, valid = src.read(0, 0, 200, 200, 200, 200)
    assert not valid[:50].any() and valid[50:].all()
    lo, scale, _gamma = src.stretch()
    assert abs(1.0 / scale - 1.0 / plain[1]) < 0.05 / plain[1]    # not widened to 255


def test_dark_products_are_brought_to_the_tones_the_network_knows(tmp_path):
    """A linear 11-bit product (most pixels dark, a few bright roofs) is
    brightened until its median is where the training scenes' medians
    are; a product that is already there is read as it is."""
    rng = np.random.default_rng(1)
    linear = rng.gamma(2.0, 60.0, (200, 200))          # long bright tail
    linear[:20, :20] = 2047
    normal = rng.uniform(0, 255, (200, 200))
    medians = {}
    for name, a, dtype in (("linear", linear, gdal.GDT_UInt16), ("normal", normal, gdal.GDT_Byte)):
        path = str(tmp_path / (name + ".tif"))
        ds = gdal.GetDriverByName("GTiff").Create(path, 200, 200, 1, dtype)
        ds.SetGeoTransform((500000, 0.5, 0, 4700000, 0, -0.5))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32652)
        ds.SetProjection(srs.ExportToWkt())
        ds.GetRasterBand(1).WriteArray(a)
        ds = None
        src = RasterSource(path)
        gray, _ = src.read(0, 0, 200, 200, 200, 200)
        medians[name] = (float(np.median(gray)), src.stretch()[2])
    lo, hi = TONE_MEDIAN_RANGE
    assert medians["normal"][1] == 1.0
    assert medians["linear"][1] < 1.0
    assert medians["linear"][0] == pytest.approx(lo, abs=0.03)
    assert tone_gamma(0.1) < tone_gamma(0.2) < 1.0 == tone_gamma(0.4) == tone_gamma(0.7)
    assert tone_gamma(0.9) > 1.0 and tone_gamma(0.001) == 0.5


def _naive_conv(x, w, b, stride, dil):
    c, h, wd = x.shape
    k = w.shape[2]
    r = dil * (k // 2)
    xp = np.pad(x, ((0, 0), (r, r), (r, r)))
    ho, wo = (h + stride - 1) // stride, (wd + stride - 1) // stride
    out = np.zeros((w.shape[0], ho, wo))
    for o in range(w.shape[0]):
        for yy in range(ho):
            for xx in range(wo):
                y, x_ = yy * stride, xx * stride
                patch = xp[:, y:y + 2 * r + 1:dil, x_:x_ + 2 * r + 1:dil]
                out[o, yy, xx] = (patch * w[o]).sum() + b[o]
    return out


@pytest.mark.parametrize("k, stride, dil", [(3, 1, 1), (3, 2, 1), (3, 1, 2), (3, 1, 4), (1, 1, 1)])
def test_numpy_convolution_matches_the_definition(k, stride, dil):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 11, 9)).astype(np.float32)
    w = rng.normal(size=(4, 3, k, k)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    np.testing.assert_allclose(conv(x, w, b, stride, dil), _naive_conv(x, w, b, stride, dil),
                               rtol=1e-4, atol=1e-4)


def _reference_forward(x, p):
    """The network by its definition (network.LAYERS): naive convolutions,
    'up' as nearest-neighbour upsampling concatenated with c2's output."""
    from railcar_counter.plugin.core.network import LAYERS
    feats = {}
    for name, cin, cout, k, stride, dil in LAYERS:
        if name == "up":
            skip = feats["c2"]
            up = x.repeat(2, axis=1).repeat(2, axis=2)[:, :skip.shape[1], :skip.shape[2]]
            x = np.concatenate([up, skip])
            continue
        x = np.maximum(_naive_conv(x, p[name + ".weight"], p[name + ".bias"], stride, dil), 0)
        feats[name] = x
    return _naive_conv(x, p["head.weight"], p["head.bias"], 1, 1)


@pytest.mark.parametrize("h, w", [(21, 19), (22, 17)])
def test_network_computes_its_definition(monkeypatch, h, w):
    """The fast forward pass (banded first layers, the layer after 'up'
    applied at 2 m and added in place) gives what the layers define, also
    with several bands and sizes that are not multiples of the stride."""
    from railcar_counter.plugin.core import network
    monkeypatch.setattr(network, "BAND_ROWS", 3)
    net = network.RailcarNet()
    x = np.random.default_rng(5).normal(0, 0.5, (2, h, w)).astype(np.float32)
    np.testing.assert_allclose(net(x), _reference_forward(x.astype(np.float64), net.p),
                               rtol=1e-3, atol=1e-3)


def test_prediction_does_not_depend_on_where_the_window_starts():
    """Windows start on multiples of the network's 4-pixel grid and have any
    size; the two-pass prediction (as is + turned by 180 degrees) must then
    give every pixel the same outputs whichever window it is seen in."""
    from railcar_counter.plugin.core.network import default_network, grid_step, reach_m
    rng = np.random.default_rng(3)
    image = rng.normal(0, 0.3, (2, 240, 260)).astype(np.float32)
    image[:, 100:108, 90:122] += 0.8                      # a bright car-sized block
    step = grid_step()
    a = default_network().predict(image[:, :230, :250])
    b = default_network().predict(image[:, step:232, 2 * step:256])   # 228 x 248
    m = int(reach_m() / 0.5) // 2 + 2                        # output pixels the borders reach
    sy, sx = step // 2, step                                 # the offsets at 1 m
    inner_a = a[:, sy + m:112 - m, sx + m:122 - m]
    inner_b = b[:, m:112 - m - sy, m:122 - m - sx]
    assert inner_a.size > 0
    np.testing.assert_allclose(inner_a, inner_b, atol=1e-4)


def test_verifier_computes_its_definition():
    """The verifier's fast layers (one long list of pixels per batch, its
    first layer gathered channels-first) give what its layers define: 3x3
    convolutions, 2x2 max pooling, ReLU, two dense layers."""
    from railcar_counter.plugin.core.verifier import (CONVS, STRIP_LENGTH, STRIP_WIDTH,
                                                       Verifier)
    ver = Verifier()
    p = {k: v.astype(np.float64) for k, v in ver.p.items()}
    batch = np.random.default_rng(7).normal(0, 0.4, (3, 2, STRIP_WIDTH, STRIP_LENGTH))
    want = []
    for strip in batch:
        a = strip
        for name, _, _ in CONVS:
            a = _naive_conv(a, p[name + ".weight"], p[name + ".bias"], 1, 1)
            c, h, w = a.shape
            a = np.maximum(a.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4)), 0)
        a = np.maximum(p["fc1.weight"] @ a.reshape(-1) + p["fc1.bias"], 0)
        want.append(p["fc2.weight"] @ a + p["fc2.bias"])
    np.testing.assert_allclose(ver.logits(batch.astype(np.float32)), np.array(want),
                               rtol=1e-3, atol=1e-3)


def test_verifier_strip_follows_the_car_axis():
    """A strip is cut along the candidate's axis, centred on it: a bright
    bar drawn at 30 degrees lies along the middle row of its strip, and a
    strip turned end for end is the same strip reversed."""
    from railcar_counter.plugin.core.verifier import STRIP_LENGTH, STRIP_WIDTH, strips
    h = w = 120
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = math.radians(30)
    cx, cy = 60.3, 58.7
    along = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
    across = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
    bar = ((np.abs(along) < 20) & (np.abs(across) < 3)).astype(np.float32)
    x = np.stack([bar, -bar])
    s = strips(x, [cx], [cy], [th])[0]
    assert s.shape == (2, STRIP_WIDTH, STRIP_LENGTH)
    mid, ends = STRIP_WIDTH // 2, STRIP_LENGTH // 2
    assert s[0, mid - 2:mid + 2, ends - 15:ends + 15].min() > 0.9     # on the bar
    assert s[0, :mid - 5].max() < 0.1 and s[0, mid + 5:].max() < 0.1   # beside it
    assert s[0, mid, :ends - 23].max() < 0.1                            # past its ends
    np.testing.assert_allclose(s[1], -s[0])
    turned = strips(x, [cx], [cy], [th + math.pi])[0]
    np.testing.assert_allclose(turned, s[:, ::-1, ::-1], atol=1e-4)


@pytest.mark.parametrize("scores, sensitivity, expected", [
    ([], 0.5, 0.40),                       # no clear car: the base threshold
    ([0.9] * 100, 0.5, 0.45),              # crisp image: half the median
    ([0.6] * 100, 0.5, 0.35),              # soft image: half the median, bounded
    ([0.6] * 10 + [0.2] * 50, 0.5, 0.3875),  # few clear cars: leans to the base
    ([0.9] * 100, 1.0, 0.20),              # sensitivity 1 lowers it by 0.25
    ([0.9] * 100, 0.0, 0.70),
])
def test_threshold_follows_the_image_s_clear_cars(scores, sensitivity, expected):
    assert cars.scene_threshold(scores, sensitivity) == pytest.approx(expected)
    assert cars.floor_threshold(sensitivity) <= cars.scene_threshold(scores, sensitivity)


def test_the_shadow_side_verifier_s_doubt_is_not_outweighed_by_heat():
    """A hot candidate that the shadow-side verifier, told the side, gives
    less than even odds is no car; the side-unknown verifier's doubt only
    lowers the score."""
    doubt = np.array([0.55, 0.45] + [0.0] * (len(CLASSES) - 2), np.float32)   # p(car) 0.45
    sure = np.array([0.05, 0.95] + [0.0] * (len(CLASSES) - 2), np.float32)
    assert cars._reading(0.9, doubt, by_side=True)[0] == 0.0
    assert cars._reading(0.9, doubt)[0] == pytest.approx(math.sqrt(0.9 * 0.45))
    assert cars._reading(0.3, sure, by_side=True)[0] == pytest.approx(math.sqrt(0.3 * 0.95))
