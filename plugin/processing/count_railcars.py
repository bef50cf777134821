"""Processing algorithm railcarcounter:countrailcars: one raster in, one
polygon per railcar out. Runs from the toolbox, in batch, from
processing.run and from qgis_process."""
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsFeatureSink,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from ..core import dates
from ..core.detector import MAX_GSD_M, CountOptions, count_railcars
from ..core.errors import Canceled, InputError
from ..qgis_layers import (
    ICON_PATH, apply_detection_style, detection_feature, detection_fields,
    raster_crs_wkt, raster_file_path, source_wkts)


class DetectionStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles the output layer once Processing has loaded it in the project.

    QGIS takes the C++ object but not the Python wrapper: keep a reference
    (``instance``) or the wrapper is garbage collected before QGIS calls it.
    """
    instance = None

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer):
            apply_detection_style(layer)

    @staticmethod
    def create():
        DetectionStylePostProcessor.instance = DetectionStylePostProcessor()
        return DetectionStylePostProcessor.instance


def layer_temporal_date(layer):
    """Start date of a layer's fixed temporal range (Layer Properties >
    Temporal), or ""."""
    try:
        props = layer.temporalProperties()
        if props is None or not props.isActive():
            return ""
        begin = props.fixedTemporalRange().begin()
        return begin.date().toString("yyyy-MM-dd") if begin.isValid() else ""
    except (AttributeError, RuntimeError):
        return ""


def resolve_date(typed, layer, path):
    """The acquisition date to write: what the user typed (any form
    dates.date_from_text reads), else the layer's name, its temporal
    properties, the file's name or its metadata. Raises InputError for a
    typed value that is not a date."""
    typed = (typed or "").strip()
    if typed:
        iso = dates.date_from_text(typed)
        if not iso:
            raise InputError(
                "'%s' is not a date. Type the acquisition date as YYYY-MM-DD "
                "(for example 2023-10-05), or leave it empty to read it from "
                "the layer name or the raster's metadata." % typed)
        return iso
    return (dates.date_from_text(layer.name()) or layer_temporal_date(layer)
            or dates.raster_date(path))


def log_result(feedback, result, indent=""):
    """What Processing's log says about one counted image (both algorithms):
    how it was counted, what the analyst should know, and its count."""
    for note in (result.sharpening_note, result.shadow_note):
        if note:
            feedback.pushInfo(indent + note)
    for warning in result.warnings:
        feedback.pushWarning(indent + warning)
    feedback.pushInfo("%s%d railcars (%d locomotives) scoring %.2f or more (this image's "
                      "threshold), pixel size %.2f m" % (indent, result.count, result.locomotives,
                                                         result.score_threshold,
                                                         result.gsd_m or 0.0))


class CountRailcarsAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    AOI = "AOI"
    TRACKS = "TRACKS"
    SENSITIVITY = "SENSITIVITY"
    DATE = "DATE"
    PIXEL_SIZE = "PIXEL_SIZE"
    OUTPUT = "OUTPUT"
    COUNT = "COUNT"
    LOCOMOTIVES = "LOCOMOTIVES"
    SHARPENED = "SHARPENED"

    def createInstance(self):  # noqa: N802
        return CountRailcarsAlgorithm()

    def name(self):
        return "countrailcars"

    def displayName(self):  # noqa: N802
        return "Count railcars"

    def icon(self):
        return QIcon(ICON_PATH)

    def tags(self):
        return ["railcar", "railway", "wagon", "train", "count", "detect", "satellite"]

    def shortHelpString(self):  # noqa: N802
        return (
            "Finds every railcar on one satellite or aerial image and writes one "
            "rectangle per car, in the raster's CRS, with its score (0-1), length "
            "and width in metres, angle, type (box, tank, open, flat, covered, "
            "locomotive, unknown), acquisition date and source image.\n\n"
            "Input: an image file of 0.1 to 1 m per pixel, any CRS (also degrees), "
            "1 band, RGB or 4 bands, 8 or 16 bit. Web layers (WMS, XYZ) must be "
            "exported to GeoTIFF first.\n"
            "Area of interest: only cars whose centre lies inside its polygons "
            "count (any CRS).\n"
            "Rail tracks: lines along the tracks (for example from OpenStreetMap) "
            "to look for cars only there; a layer a few metres off the image is "
            "lined up with the cars first (the log says by how much); without it "
            "the tracks are found on the image.\n"
            "Sensitivity: 0 finds only clear cars, 1 finds more and risks false "
            "ones; 0.5 suits most images. The score a car must reach follows the "
            "image (half the median score of its clear cars); the log gives it.\n"
            "Date: the acquisition date (YYYY-MM-DD); when empty it is read from "
            "the layer or file name (2023-10-05, 20231005, 5 Oct 2023, Maxar and "
            "Pleiades product names ...) or the "
            "raster's metadata (TIFFTAG_DATETIME and similar).\n"
            "Pixel size (advanced): the ground size of one pixel in metres, for an "
            "image without georeferencing (a photo or screen grab; the cars are "
            "then drawn where QGIS draws such an image) or when its "
            "georeferencing is wrong. 0 reads it from the georeferencing.\n\n"
            "COUNT is the number of freight cars; locomotives are drawn with "
            "their own type and reported apart (LOCOMOTIVES). SHARPENED is above 0 "
            "when the image was softer than its pixel size and was sharpened "
            "before counting (the log says by how much)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.INPUT, "Image (raster layer)"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.AOI, "Area of interest (polygons)",
            [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.TRACKS, "Rail tracks (lines)",
            [QgsProcessing.SourceType.TypeVectorLine], optional=True))
        sensitivity = QgsProcessingParameterNumber(
            self.SENSITIVITY, "Sensitivity (0 strict - 1 finds more)",
            QgsProcessingParameterNumber.Type.Double, 0.5, True, 0.0, 1.0)
        sensitivity.setMetadata({"widget_wrapper": {"decimals": 2}})
        self.addParameter(sensitivity)
        self.addParameter(QgsProcessingParameterString(
            self.DATE, "Acquisition date (YYYY-MM-DD; default from name or metadata)",
            optional=True))
        pixel_size = QgsProcessingParameterNumber(
            self.PIXEL_SIZE, "Pixel size in metres (0 = from the georeferencing)",
            QgsProcessingParameterNumber.Type.Double, 0.0, True, 0.0, MAX_GSD_M)
        pixel_size.setMetadata({"widget_wrapper": {"decimals": 2}})
        pixel_size.setFlags(pixel_size.flags()
                            | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(pixel_size)
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Railcars", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.COUNT, "Number of freight cars"))
        self.addOutput(QgsProcessingOutputNumber(self.LOCOMOTIVES, "Number of locomotives"))
        self.addOutput(QgsProcessingOutputNumber(
            self.SHARPENED, "Sharpening applied to a soft image (0 = none)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(
                "The image could not be opened. Choose a raster layer or the "
                "path of an image file GDAL can read (GeoTIFF, JP2, VRT ...).")
        try:
            path = raster_file_path(layer)
            crs = layer.crs()
            transform_context = context.transformContext()
            aoi_source = self.parameterAsSource(parameters, self.AOI, context)
            aoi = source_wkts(aoi_source, crs, transform_context,
                              QgsWkbTypes.GeometryType.PolygonGeometry, "area of interest")
            if aoi_source is not None and not aoi:
                raise InputError(
                    "The area of interest has no polygons. Draw the area, or leave "
                    "the parameter empty to count the whole image.")
            tracks = source_wkts(
                self.parameterAsSource(parameters, self.TRACKS, context), crs,
                transform_context, QgsWkbTypes.GeometryType.LineGeometry, "rail tracks")
            sensitivity = 0.5
            if parameters.get(self.SENSITIVITY) not in (None, ""):
                sensitivity = self.parameterAsDouble(parameters, self.SENSITIVITY, context)
            pixel_size = 0.0
            if parameters.get(self.PIXEL_SIZE) not in (None, ""):
                pixel_size = self.parameterAsDouble(parameters, self.PIXEL_SIZE, context)
            date = resolve_date(self.parameterAsString(parameters, self.DATE, context),
                                layer, path)
            source = os.path.basename(path) or layer.name()
            if not date:
                feedback.pushWarning(
                    "No acquisition date in the layer name or the raster's "
                    "metadata: the 'date' field stays empty. Set DATE to fill it.")
            feedback.pushInfo("Counting railcars on %s (%s)" % (source, date or "no date"))
            options = CountOptions(sensitivity=sensitivity, aoi_wkt=aoi,
                                   tracks_wkt=tracks, date=date, source=source,
                                   crs_wkt=raster_crs_wkt(layer), pixel_size_m=pixel_size)
            result = count_railcars(
                path, options,
                progress=lambda fraction: feedback.setProgress(100.0 * fraction),
                is_canceled=feedback.isCanceled)
        except Canceled:
            raise QgsProcessingException("Counting was cancelled; nothing was written.")
        except InputError as exc:
            raise QgsProcessingException(str(exc))

        # The sink is created only now, so a failed or cancelled run leaves
        # no empty output behind.
        fields = detection_fields()
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.Polygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for det in result.detections:
            if not det.date:
                det.date = date
            if not det.source:
                det.source = source
            sink.addFeature(detection_feature(det, fields), QgsFeatureSink.Flag.FastInsert)

        log_result(feedback, result)
        if context.willLoadLayerOnCompletion(dest_id):
            details = context.layerToLoadOnCompletionDetails(dest_id)
            details.setPostProcessor(DetectionStylePostProcessor.create())
            if date:
                details.name = "Railcars %s" % date
        return {self.OUTPUT: dest_id, self.COUNT: result.count,
                self.LOCOMOTIVES: result.locomotives, self.SHARPENED: result.sharpened}
