"""QGIS side of detections: fields, features, styles and input geometries.

One place for the conversion between the pure records of ``core`` and QGIS
objects, so the Processing algorithms, the dock and the command line write
exactly the same layers.
"""
import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .core.errors import InputError

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOURCES_DIR = os.path.join(PLUGIN_DIR, "resources")
STYLE_PATH = os.path.join(RESOURCES_DIR, "detections.qml")
ICON_PATH = os.path.join(RESOURCES_DIR, "icon.svg")

# (name, type, length, precision). Names have at most 10 characters and
# strings a fixed width so shapefiles keep every attribute.
DETECTION_FIELD_SPECS = (
    ("score", QVariant.Double, 10, 3),
    ("length_m", QVariant.Double, 10, 2),
    ("width_m", QVariant.Double, 10, 2),
    ("angle", QVariant.Double, 10, 1),
    ("type", QVariant.String, 16, 0),
    ("date", QVariant.String, 10, 0),     # ISO YYYY-MM-DD: a shapefile has no datetime
    ("source", QVariant.String, 254, 0),
)


def detection_fields():
    """The attribute table of a detection layer."""
    fields = QgsFields()
    for name, vtype, length, precision in DETECTION_FIELD_SPECS:
        fields.append(QgsField(name, vtype, len=length, prec=precision))
    return fields


def detection_feature(det, fields=None):
    """A QgsFeature (polygon in the raster's CRS) for one core Detection."""
    feature = QgsFeature(fields if fields is not None else detection_fields())
    feature.setGeometry(QgsGeometry.fromWkt(det.wkt()))
    feature["score"] = round(float(det.score), 3)
    feature["length_m"] = round(float(det.length_m), 2)
    feature["width_m"] = round(float(det.width_m), 2)
    feature["angle"] = round(float(det.angle), 1)
    feature["type"] = str(det.type)[:16]
    feature["date"] = str(det.date or "")[:10]
    feature["source"] = str(det.source or "")[:254]
    return feature


def detection_features(detections, fields=None):
    fields = fields if fields is not None else detection_fields()
    return [detection_feature(d, fields) for d in detections]


def detections_memory_layer(detections, crs, name="railcars"):
    """An in-memory polygon layer holding ``detections``; ``crs`` is a
    QgsCoordinateReferenceSystem or WKT. Styled with the plugin's style."""
    if not isinstance(crs, QgsCoordinateReferenceSystem):
        crs = QgsCoordinateReferenceSystem.fromWkt(crs or "")
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes(detection_fields().toList())
    layer.updateFields()
    provider.addFeatures(detection_features(detections, layer.fields()))
    layer.updateExtents()
    apply_detection_style(layer)
    return layer


def apply_detection_style(layer):
    """Outline colour by car type, from resources/detections.qml."""
    if layer is not None and os.path.exists(STYLE_PATH):
        layer.loadNamedStyle(STYLE_PATH)
        layer.triggerRepaint()


def source_wkts(source, dest_crs, transform_context=None, geometry_type=None,
                what="layer"):
    """Geometries of a vector layer or Processing feature source as WKT in
    ``dest_crs`` (the raster's CRS), for CountOptions.aoi_wkt / tracks_wkt.

    ``geometry_type`` (QgsWkbTypes.GeometryType.PolygonGeometry or LineGeometry) is checked
    so a wrong layer gives a clear message. Empty and null geometries are
    skipped; invalid polygons are repaired.
    """
    if source is None:
        return []
    if geometry_type is not None:
        wkb = source.wkbType()
        if QgsWkbTypes.geometryType(wkb) != geometry_type:
            wanted = {QgsWkbTypes.GeometryType.PolygonGeometry: "polygons",
                      QgsWkbTypes.GeometryType.LineGeometry: "lines"}.get(geometry_type, "geometries")
            raise InputError(
                "The %s layer holds %s, not %s. Choose a layer of %s."
                % (what, QgsWkbTypes.geometryDisplayString(QgsWkbTypes.geometryType(wkb)).lower(),
                   wanted, wanted))
    if not isinstance(dest_crs, QgsCoordinateReferenceSystem):
        dest_crs = QgsCoordinateReferenceSystem.fromWkt(dest_crs or "")
    if transform_context is None:
        transform_context = QgsProject.instance().transformContext()
    request = QgsFeatureRequest()
    src_crs = source.sourceCrs()
    if dest_crs.isValid() and src_crs.isValid() and src_crs != dest_crs:
        request.setDestinationCrs(dest_crs, transform_context)
    wkts = []
    try:
        for feature in source.getFeatures(request):
            geom = feature.geometry()
            if geom is None or geom.isNull() or geom.isEmpty():
                continue
            if geometry_type == QgsWkbTypes.GeometryType.PolygonGeometry and not geom.isGeosValid():
                geom = geom.makeValid()
            wkts.append(geom.asWkt())
    except Exception as exc:       # QgsCsException: the layer does not reproject
        raise InputError(
            "The %s layer could not be reprojected to the raster's CRS (%s). "
            "Check both layers' coordinate reference systems." % (what, exc))
    return wkts


def layer_wkts(layer, dest_crs, transform_context=None, selected_only=False,
               geometry_type=None, what="layer"):
    """Like :func:`source_wkts` for a QgsVectorLayer; with ``selected_only``
    and a selection, only the selected features (the dock's option)."""
    if layer is None:
        return []
    source = layer
    if selected_only and layer.selectedFeatureCount():
        from qgis.core import QgsVectorLayerSelectedFeatureSource
        source = QgsVectorLayerSelectedFeatureSource(layer)
    return source_wkts(source, dest_crs, transform_context, geometry_type, what)


def raster_file_path(layer):
    """What the detector opens for a raster layer: its GDAL source. Layers
    that are not files (WMS, XYZ tiles, WCS ...) raise InputError."""
    if layer is None or not layer.isValid():
        raise InputError("The raster layer is not valid. Check that its file still exists.")
    provider = layer.providerType()
    if provider != "gdal":
        raise InputError(
            "'%s' is a %s layer, not an image file. Export it to GeoTIFF first "
            "(right-click the layer > Export > Save As...) and count the GeoTIFF."
            % (layer.name(), provider))
    source = layer.source()
    # Options after a pipe are QGIS's, not GDAL's.
    return source.split("|", 1)[0]


def raster_crs_wkt(layer):
    """The layer's CRS for the detector (it overrides the file's: the
    analyst may have set one for an image that has none), or "" when the
    layer has none, and the file's own is used."""
    crs = layer.crs()
    if not crs.isValid():
        return ""
    return crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL)
