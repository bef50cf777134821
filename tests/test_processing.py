"""railcarcounter:countrailcars run for real through processing.run in a real
QGIS, on generated rasters: projected and geographic CRS, 1 band and 4-band
uint16, with an area of interest and a tracks layer in other CRSs."""
import pytest
from osgeo import ogr, osr
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)

ALG = "railcarcounter:countrailcars"
FIELDS = ["score", "length_m", "width_m", "angle", "type", "date", "source"]


def run_count(params, feedback=None):
    import processing
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = feedback or QgsProcessingFeedback()
    return processing.run(ALG, params, context=context, feedback=feedback)


def load(path):
    layer = QgsVectorLayer(str(path), "out", "ogr")
    assert layer.isValid(), path
    return layer


def close_to(found, truth, rel=0.25):
    """Within rel of the truth, at least one car either way. These tests check
    that every path through the algorithm counts what is there; how well the
    detector counts is measured by make bench-accuracy."""
    return abs(found - truth) <= max(1, round(rel * truth))


def check_output(layer, results, epsg):
    assert [f.name() for f in layer.fields() if f.name() != "fid"] == FIELDS
    assert layer.crs().authid() == "EPSG:%d" % epsg
    assert QgsWkbTypes.geometryType(layer.wkbType()) == QgsWkbTypes.GeometryType.PolygonGeometry
    feats = list(layer.getFeatures())
    locos = sum(1 for f in feats if f["type"] == "locomotive")
    assert results["COUNT"] == len(feats) - locos
    assert results["LOCOMOTIVES"] == locos
    for f in feats:
        assert 0.0 <= f["score"] <= 1.0
        assert f["type"] in ("box", "tank", "open", "flat", "covered", "locomotive", "unknown")
        assert 0.0 <= f["angle"] < 180.0
        assert f.geometry().isGeosValid()
    return feats


@pytest.mark.parametrize("bands, dtype", [(3, "uint8"), (1, "uint8"), (4, "uint16")])
def test_projected_raster(processing_ready, raster_factory, tmp_path, bands, dtype):
    path, truth = raster_factory("yard_2023-10-05.tif", kind="utm", bands=bands, dtype=dtype)
    out = tmp_path / "cars.gpkg"
    results = run_count({"INPUT": path, "OUTPUT": str(out)})
    feats = check_output(load(out), results, 32652)
    assert close_to(len(feats), truth["cars"]), (len(feats), truth["cars"])
    for f in feats:
        assert f["date"] == "2023-10-05"
        assert f["source"] == "yard_2023-10-05.tif"
        # Real car sizes: the detector knows the pixel size in metres.
        assert 8.0 <= f["length_m"] <= 25.0 and 2.0 <= f["width_m"] <= 4.5
        # Every rectangle lies on the raster.
        xmin, ymin, xmax, ymax = truth["extent"]
        c = f.geometry().centroid().asPoint()
        assert xmin <= c.x() <= xmax and ymin <= c.y() <= ymax


def test_geographic_raster_sizes_in_metres(processing_ready, raster_factory, tmp_path):
    """EPSG:4326 raster: sizes in metres, geometries in degrees."""
    path, truth = raster_factory("yard_geo.tif", kind="geographic", bands=3)
    out = tmp_path / "cars.shp"
    results = run_count({"INPUT": path, "OUTPUT": str(out)})
    feats = check_output(load(out), results, 4326)
    assert close_to(len(feats), truth["cars"]), (len(feats), truth["cars"])
    for f in feats:
        assert 8.0 <= f["length_m"] <= 25.0
        bbox = f.geometry().boundingBox()
        assert bbox.width() < 0.001 and bbox.height() < 0.001      # degrees
    assert results["COUNT"] + results["LOCOMOTIVES"] == len(feats)


def test_raster_table_in_a_geopackage(processing_ready, raster_factory, tmp_path):
    """A GeoPackage holding two dates as raster tables: the layer of one
    table (source GPKG:file.gpkg:table) counts like the GeoTIFF."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer
    path, truth = raster_factory("yard.tif", kind="utm", bands=3)
    gpkg = str(tmp_path / "site.gpkg")
    gdal.Translate(gpkg, path, format="GPKG", creationOptions=["RASTER_TABLE=d20231005"])
    gdal.Translate(gpkg, path, format="GPKG", creationOptions=[
        "RASTER_TABLE=d20220601", "APPEND_SUBDATASET=YES"])
    layer = QgsRasterLayer("GPKG:%s:d20231005" % gpkg, "site 2023-10-05", "gdal")
    assert layer.isValid()
    out = tmp_path / "cars.gpkg"
    results = run_count({"INPUT": layer, "OUTPUT": str(out)})
    feats = check_output(load(out), results, 32652)
    assert close_to(len(feats), truth["cars"]), (len(feats), truth["cars"])
    assert {f["date"] for f in feats} == {"2023-10-05"}


def _to_wgs84(points, epsg=32652):
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(epsg)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    return [tr.TransformPoint(x, y)[:2] for x, y in points]


def test_area_of_interest_in_another_crs(processing_ready, raster_factory,
                                         vector_factory, tmp_path):
    path, truth = raster_factory("yard.tif", kind="utm", bands=3, n_cars=12)
    xmin, ymin, xmax, ymax = truth["extent"]
    # The western half of the yard, drawn in EPSG:4326.
    xcut = xmin + (xmax - xmin) / 2.0
    ring = _to_wgs84([(xmin - 5, ymin - 5), (xcut, ymin - 5), (xcut, ymax + 5),
                      (xmin - 5, ymax + 5), (xmin - 5, ymin - 5)])
    aoi_wkt = "POLYGON((%s))" % ", ".join("%.9f %.9f" % p for p in ring)
    aoi = vector_factory("aoi.gpkg", [aoi_wkt], 4326)
    inside = sum(1 for cx, _cy in truth["centres_m"] if xmin + cx < xcut)
    out = tmp_path / "cars.gpkg"
    results = run_count({"INPUT": path, "AOI": aoi, "OUTPUT": str(out)})
    feats = check_output(load(out), results, 32652)
    assert close_to(len(feats), inside), (len(feats), inside)
    for f in feats:      # only cars whose centre is inside the AOI
        assert f.geometry().centroid().asPoint().x() < xcut + 0.01


def test_tracks_layer_constrains_detection(processing_ready, raster_factory,
                                           vector_factory, tmp_path):
    """Tracks given for one of two tracks, in Web Mercator: only that track's
    cars are found."""
    path, truth = raster_factory("yard.tif", kind="utm", bands=3, tracks=2)
    xmin, ymin, xmax, ymax = truth["extent"]
    track_y = sorted({cy for _cx, cy in truth["centres_m"]})[0]
    y = ymax - track_y
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32652)
    dst.ImportFromEPSG(3857)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    pts = [tr.TransformPoint(x, y)[:2] for x in (xmin, (xmin + xmax) / 2, xmax)]
    line = "LINESTRING(%s)" % ", ".join("%.3f %.3f" % p for p in pts)
    tracks = vector_factory("tracks.gpkg", [line], 3857, ogr.wkbLineString)
    on_track = sum(1 for _cx, cy in truth["centres_m"] if cy == track_y)
    out = tmp_path / "cars.gpkg"
    results = run_count({"INPUT": path, "TRACKS": tracks, "OUTPUT": str(out)})
    feats = check_output(load(out), results, 32652)
    assert close_to(len(feats), on_track), (len(feats), on_track)
    for f in feats:
        assert abs(f.geometry().centroid().asPoint().y() - y) < 2.5


def test_date_from_name_metadata_and_parameter(processing_ready, raster_factory, tmp_path):
    named, _ = raster_factory("tumangang_20231005.tif", n_cars=3, tracks=1)
    tagged, _ = raster_factory("tumangang.tif", n_cars=3, tracks=1,
                               metadata={"TIFFTAG_DATETIME": "2021:06:30 10:30:00"})
    cases = [({"INPUT": named}, "2023-10-05"),
             ({"INPUT": tagged}, "2021-06-30"),
             ({"INPUT": tagged, "DATE": "2019-02-03"}, "2019-02-03"),
             ({"INPUT": tagged, "DATE": "03.02.2019"}, "2019-02-03")]
    for i, (params, iso) in enumerate(cases):
        out = tmp_path / ("cars%d.gpkg" % i)
        run_count(dict(params, OUTPUT=str(out)))
        dates = {f["date"] for f in load(out).getFeatures()}
        assert dates <= {iso}, (params, dates)


def test_bad_date_is_explained(processing_ready, raster_factory, tmp_path):
    path, _ = raster_factory("yard.tif", n_cars=2, tracks=1)
    with pytest.raises(QgsProcessingException, match="YYYY-MM-DD"):
        run_count({"INPUT": path, "DATE": "yesterday", "OUTPUT": str(tmp_path / "x.gpkg")})
    assert not (tmp_path / "x.gpkg").exists()


def test_raster_without_georeferencing(processing_ready, tmp_path):
    import numpy as np
    from osgeo import gdal
    path = str(tmp_path / "photo.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 64, 64, 3, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(np.zeros((64, 64), dtype="uint8"))
    ds = None
    with pytest.raises(QgsProcessingException) as err:
        run_count({"INPUT": path, "OUTPUT": str(tmp_path / "x.gpkg")})
    assert "georeferenc" in str(err.value).lower()
    assert not (tmp_path / "x.gpkg").exists()


def test_image_without_crs_counts_with_the_layers_crs(processing_ready, raster_factory,
                                                       world_file_jpeg, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem
    path, truth = raster_factory("yard.tif")
    layer = QgsRasterLayer(world_file_jpeg(path), "site 2023-10-05", "gdal")
    assert layer.isValid() and not layer.crs().isValid()
    QgsProject.instance().addMapLayer(layer)
    try:
        with pytest.raises(QgsProcessingException, match="no CRS"):
            run_count({"INPUT": layer.id(), "OUTPUT": str(tmp_path / "x.gpkg")})
        assert not (tmp_path / "x.gpkg").exists()
        # what the analyst does: Layer Properties > Source > CRS
        layer.setCrs(QgsCoordinateReferenceSystem("EPSG:%d" % truth["epsg"]))
        out = tmp_path / "cars.gpkg"
        results = run_count({"INPUT": layer.id(), "OUTPUT": str(out)})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    feats = check_output(load(out), results, truth["epsg"])
    assert close_to(results["COUNT"], truth["cars"])
    assert {f["date"] for f in feats} == {"2023-10-05"}


def test_missing_raster(processing_ready, tmp_path):
    with pytest.raises(QgsProcessingException, match="not found"):
        run_count({"INPUT": str(tmp_path / "missing.tif"), "OUTPUT": str(tmp_path / "x.gpkg")})


def test_web_layer_asks_for_geotiff(processing_ready, tmp_path):
    layer = QgsRasterLayer(
        "type=xyz&url=https://tile.openstreetmap.org/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0",
        "OpenStreetMap", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    try:
        with pytest.raises(QgsProcessingException, match="GeoTIFF"):
            run_count({"INPUT": layer.id(), "OUTPUT": str(tmp_path / "x.gpkg")})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_cancel_writes_nothing(processing_ready, raster_factory, tmp_path):
    path, _ = raster_factory("yard.tif")
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="ancel"):
        run_count({"INPUT": path, "OUTPUT": str(tmp_path / "x.gpkg")}, feedback)
    assert not (tmp_path / "x.gpkg").exists()


def test_progress_is_reported(processing_ready, raster_factory, tmp_path):
    path, _ = raster_factory("yard.tif")
    seen = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(seen.append)
    run_count({"INPUT": path, "OUTPUT": str(tmp_path / "x.gpkg")}, feedback)
    assert seen and max(seen) == pytest.approx(100.0)


def test_loaded_output_is_styled(processing_ready, raster_factory, qgis_iface):
    """Loaded into the project, the output gets the plugin's style."""
    import processing
    path, _ = raster_factory("yard_2023-10-05.tif")
    results = processing.runAndLoadResults(ALG, {"INPUT": path, "OUTPUT": "TEMPORARY_OUTPUT"})
    layer = QgsProject.instance().mapLayer(results["OUTPUT"])
    try:
        assert layer is not None
        assert layer.name() == "Railcars 2023-10-05"
        renderer = layer.renderer()
        assert renderer.type() == "categorizedSymbol"
        assert renderer.classAttribute() == "type"
        assert "locomotive" in [c.value() for c in renderer.categories()]
    finally:
        QgsProject.instance().removeMapLayer(results["OUTPUT"])


def test_batch_of_rasters(processing_ready, raster_factory, tmp_path):
    """What batch mode does: the same algorithm over several rasters."""
    totals = []
    for i, kind in enumerate(("utm", "geographic")):
        path, truth = raster_factory("yard%d_2022010%d.tif" % (i, i + 1), kind=kind)
        results = run_count({"INPUT": path, "OUTPUT": str(tmp_path / ("c%d.gpkg" % i))})
        totals.append((results["COUNT"] + results["LOCOMOTIVES"], truth["cars"]))
    assert all(close_to(found, cars) for found, cars in totals), totals


@pytest.mark.parametrize("crs, bands, dtype", [("EPSG:4326", "bgrn", "uint16"),
                                               ("EPSG:32652", "pan", "uint8")])
def test_realistic_synthetic_yard(processing_ready, vector_factory, tmp_path, crs, bands,
                                  dtype):
    """A generated yard with shadows, look-alikes and every car type, with
    and without the scene's tracks as a layer: the count is close to the
    truth."""
    from railcar_counter.plugin.core import synthetic
    spec = synthetic.SceneSpec(name="yard", seed=3, size_m=(220.0, 220.0), crs=crs,
                               bands=bands, dtype=dtype, n_tracks=6, date="2023-10-05")
    path = str(tmp_path / "yard.tif")
    synthetic.generate_scene(spec, path)
    truth = synthetic.load_truth(path, include_hidden=False)
    freight = sum(1 for car in truth if car.is_freight())
    info = synthetic.load_scene_info(path)
    epsg = int(crs.split(":")[1])
    tracks = vector_factory("tracks.gpkg", info["tracks"], epsg, ogr.wkbLineString)
    for params in ({}, {"TRACKS": tracks}):
        out = tmp_path / ("cars%d.gpkg" % len(params))
        results = run_count(dict(params, INPUT=path, OUTPUT=str(out)))
        feats = check_output(load(out), results, epsg)
        assert close_to(results["COUNT"], freight, rel=0.35), (params.keys(), results["COUNT"],
                                                                freight)
        assert {f["date"] for f in feats} <= {"2023-10-05"}      # TIFFTAG_DATETIME



def test_date_from_layer_temporal_properties(processing_ready, raster_factory, tmp_path):
    from qgis.core import QgsDateTimeRange, QgsRasterLayerTemporalProperties
    from qgis.PyQt.QtCore import QDate, QDateTime, QTime
    path, _ = raster_factory("scene.tif", n_cars=3, tracks=1)
    layer = QgsRasterLayer(path, "scene")
    props = layer.temporalProperties()
    props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
    start = QDateTime(QDate(2020, 5, 6), QTime(0, 0))
    props.setFixedTemporalRange(QgsDateTimeRange(start, start.addDays(1)))
    props.setIsActive(True)
    QgsProject.instance().addMapLayer(layer)
    try:
        out = tmp_path / "cars.gpkg"
        run_count({"INPUT": layer.id(), "OUTPUT": str(out)})
        assert {f["date"] for f in load(out).getFeatures()} <= {"2020-05-06"}
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_empty_area_of_interest_is_explained(processing_ready, raster_factory, vector_factory,
                                             tmp_path):
    path, _ = raster_factory("yard.tif", n_cars=2, tracks=1)
    aoi = vector_factory("empty.gpkg", [], 32652)
    with pytest.raises(QgsProcessingException, match="no polygons"):
        run_count({"INPUT": path, "AOI": aoi, "OUTPUT": str(tmp_path / "x.gpkg")})


def test_log_and_output_say_when_a_soft_image_was_sharpened(processing_ready, soft_yard,
                                                             tmp_path):
    path, soft, _ = soft_yard
    logs, amounts = {}, {}
    for name, image in (("sharp", path), ("soft", soft)):
        feedback = QgsProcessingFeedback()
        results = run_count({"INPUT": image, "OUTPUT": str(tmp_path / (name + ".gpkg"))}, feedback)
        logs[name], amounts[name] = feedback.textLog(), results["SHARPENED"]
    assert "sharpened before counting" in logs["soft"] and amounts["soft"] > 0
    assert "sharpened" not in logs["sharp"] and amounts["sharp"] == 0
    # and whether its cars told which side their shadows fall on (they do)
    assert "The cars agree on the side their shadows fall on" in logs["sharp"]
