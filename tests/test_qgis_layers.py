"""The QGIS side of detections (plugin/qgis_layers.py): fields, features,
style, and AOI/track geometries brought into the raster's CRS."""
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsRasterLayer,
    QgsVectorLayer, QgsWkbTypes)

from railcar_counter.plugin.core.detections import Detection, rectangle_corners
from railcar_counter.plugin.core.errors import InputError
from railcar_counter.plugin import qgis_layers

UTM = QgsCoordinateReferenceSystem("EPSG:32652")


def _det(**kw):
    d = dict(cx=500100.0, cy=4699900.0, length_m=14.0, width_m=3.1, angle=30.0,
             score=0.87654, type="tank", date="2023-10-05", source="yard.tif")
    d.update(kw)
    d["corners"] = rectangle_corners(d["cx"], d["cy"], d["length_m"], d["width_m"], d["angle"])
    return Detection(**d)


def test_fields_fit_a_shapefile():
    fields = qgis_layers.detection_fields()
    assert fields.names() == ["score", "length_m", "width_m", "angle", "type", "date", "source"]
    assert all(len(name) <= 10 for name in fields.names())
    assert fields.field("type").length() == 16
    assert fields.field("date").length() == 10
    assert fields.field("source").length() == 254


def test_feature_from_detection():
    feat = qgis_layers.detection_feature(_det())
    assert feat["score"] == pytest.approx(0.877)
    assert feat["type"] == "tank" and feat["date"] == "2023-10-05" and feat["source"] == "yard.tif"
    geom = feat.geometry()
    assert geom.type() == QgsWkbTypes.GeometryType.PolygonGeometry
    assert geom.area() == pytest.approx(14.0 * 3.1, rel=1e-3)   # WKT keeps mm
    c = geom.centroid().asPoint()
    assert (c.x(), c.y()) == pytest.approx((500100.0, 4699900.0))


def test_memory_layer_is_styled_by_type():
    layer = qgis_layers.detections_memory_layer(
        [_det(), _det(cx=500130.0, type="locomotive")], UTM, "cars 2023-10-05")
    assert layer.isValid() and layer.featureCount() == 2
    assert layer.crs() == UTM
    assert layer.renderer().type() == "categorizedSymbol"
    values = [c.value() for c in layer.renderer().categories()]
    for car_type in ("box", "tank", "open", "flat", "covered", "locomotive", "unknown"):
        assert car_type in values


def _memory(geom_type, crs, wkts):
    layer = QgsVectorLayer("%s?crs=%s" % (geom_type, crs), "m", "memory")
    feats = []
    for wkt in wkts:
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def test_aoi_is_reprojected_into_the_raster_crs():
    # A small square near Tumangang in degrees.
    aoi = _memory("Polygon", "EPSG:4326",
                  ["POLYGON((130.60 42.42, 130.601 42.42, 130.601 42.421, 130.60 42.421, 130.60 42.42))"])
    wkts = qgis_layers.layer_wkts(aoi, UTM, geometry_type=QgsWkbTypes.GeometryType.PolygonGeometry)
    assert len(wkts) == 1
    geom = QgsGeometry.fromWkt(wkts[0])
    box = geom.boundingBox()
    assert 600000 < box.xMinimum() < 700000 and 4690000 < box.yMinimum() < 4710000
    assert 70 < box.width() < 95 and 100 < box.height() < 125      # metres


def test_selected_features_only():
    lines = _memory("LineString", "EPSG:32652",
                    ["LINESTRING(0 0, 10 0)", "LINESTRING(0 5, 10 5)", "LINESTRING(0 10, 10 10)"])
    lines.selectByIds([lines.allFeatureIds()[1]])
    assert len(qgis_layers.layer_wkts(lines, UTM, selected_only=True)) == 1
    assert len(qgis_layers.layer_wkts(lines, UTM)) == 3


def test_wrong_geometry_type_is_explained():
    points = _memory("Point", "EPSG:32652", ["POINT(1 2)"])
    with pytest.raises(InputError, match="area of interest.*polygons"):
        qgis_layers.layer_wkts(points, UTM, geometry_type=QgsWkbTypes.GeometryType.PolygonGeometry,
                               what="area of interest")


def test_invalid_polygon_is_repaired():
    bowtie = _memory("Polygon", "EPSG:32652", ["POLYGON((0 0, 10 10, 10 0, 0 10, 0 0))"])
    wkts = qgis_layers.layer_wkts(bowtie, UTM,
                                  geometry_type=QgsWkbTypes.GeometryType.PolygonGeometry)
    assert QgsGeometry.fromWkt(wkts[0]).isGeosValid()


def test_web_layers_are_refused_with_advice(raster_factory):
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/%7Bz%7D/%7Bx%7D/%7By%7D.png",
                         "OSM", "wms")
    with pytest.raises(InputError, match="GeoTIFF"):
        qgis_layers.raster_file_path(xyz)
    path, _ = raster_factory("yard.tif", n_cars=1, tracks=1)
    assert qgis_layers.raster_file_path(QgsRasterLayer(path, "yard")) == path
