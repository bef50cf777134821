"""Processing algorithm railcarcounter:countseries: the images of one site
on several dates in; one detection layer for all dates (with a ``date``
field), a counts CSV with the baseline statistics, the chart as PNG and the
summary sentence out. The headless twin of the dock."""
import os

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from ..core import baseline as bl
from ..core import dates
from ..core import series_chart
from ..core.detector import CountOptions, count_railcars
from ..core.errors import Canceled, InputError
from ..qgis_layers import (
    ICON_PATH, detection_feature, detection_fields, raster_crs_wkt, raster_file_path,
    source_wkts)
from .count_railcars import DetectionStylePostProcessor, log_result

WINDOW_CHOICES = ("before_latest", "last_years", "range")
WINDOW_LABELS = ("Every date before the latest", "Last N years before the end date",
                 "Date range (start to end)")


def parse_dates_list(text, n):
    """DATES parameter: one date per raster, comma or space separated, in
    the order of the input layers; '-' or empty keeps the found date."""
    text = (text or "").strip()
    if not text:
        return [""] * n
    items = [t.strip() for t in text.replace(";", ",").split(",")]
    if len(items) != n:
        raise InputError("DATES lists %d date(s) for %d image(s). Give one per image in "
                         "the order of the images, '-' to keep a found date." % (len(items), n))
    out = []
    for t in items:
        if t in ("", "-"):
            out.append("")
            continue
        iso = dates.date_from_text(t)
        if not iso:
            raise InputError("'%s' in DATES is not a date: write YYYY-MM-DD." % t)
        out.append(iso)
    return out


class CountSeriesAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    DATES = "DATES"
    AOI = "AOI"
    TRACKS = "TRACKS"
    SENSITIVITY = "SENSITIVITY"
    IMPORTED = "IMPORTED"
    WINDOW = "WINDOW"
    YEARS = "YEARS"
    START = "START"
    END = "END"
    OUTPUT = "OUTPUT"
    COUNTS_CSV = "COUNTS_CSV"
    CHART = "CHART"
    SUMMARY = "SUMMARY"
    LATEST_COUNT = "LATEST_COUNT"
    BREAKS = "BREAKS"

    def createInstance(self):  # noqa: N802
        return CountSeriesAlgorithm()

    def name(self):
        return "countseries"

    def displayName(self):  # noqa: N802
        return "Count railcars over time (series and baseline)"

    def icon(self):
        return QIcon(ICON_PATH)

    def tags(self):
        return ["railcar", "time series", "baseline", "anomaly", "chart", "count"]

    def shortHelpString(self):  # noqa: N802
        return (
            "Counts railcars on every image of one site (one image per date) and "
            "compares each date with the site's baseline.\n\n"
            "Images: rasters of the same site; each needs an acquisition date, read "
            "from the layer or file name (2023-10-05, 20231005 ...) or the raster's "
            "metadata, or given in Dates (one per image, in order, '-' keeps the "
            "found one).\n"
            "Area of interest, rail tracks and sensitivity mean the same as in "
            "'Count railcars'.\n"
            "Historical counts: an optional CSV 'date,count[,note]' of earlier "
            "counts; they join the baseline.\n"
            "Baseline window: every date before the latest (default), the last N "
            "years before the end date, or a date range. A date breaks the baseline "
            "when its count is above the baseline maximum and its robust score "
            "(distance from the median in MADs) is at least 3.5, or below the "
            "minimum with a score of -3.5 or less.\n\n"
            "Outputs: all detections in one layer with a 'date' field, a CSV with "
            "counts, baseline statistics, ratios and flags, the chart as PNG, and "
            "a one-sentence summary of the latest date (SUMMARY).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, "Images of the site (one per date)", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            self.DATES, "Dates, one per image in order (empty: from names/metadata)",
            optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.AOI, "Area of interest (polygons)",
            [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.TRACKS, "Rail tracks (lines)", [QgsProcessing.SourceType.TypeVectorLine], optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.SENSITIVITY, "Sensitivity (0 strict - 1 finds more)",
            QgsProcessingParameterNumber.Type.Double, 0.5, True, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterFile(
            self.IMPORTED, "Historical counts CSV (date,count[,note])",
            extension="csv", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.WINDOW, "Baseline window", list(WINDOW_LABELS), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.YEARS, "Years (last N years window)", QgsProcessingParameterNumber.Type.Integer,
            5, True, 1, 100))
        self.addParameter(QgsProcessingParameterString(
            self.START, "Window start (YYYY-MM-DD, date range)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.END, "Window end (YYYY-MM-DD; default the latest date)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Railcars (all dates)", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.COUNTS_CSV, "Counts and baseline (CSV)", "CSV files (*.csv)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.CHART, "Chart (PNG)", "PNG files (*.png)"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary of the latest date"))
        self.addOutput(QgsProcessingOutputNumber(self.LATEST_COUNT, "Cars on the latest date"))
        self.addOutput(QgsProcessingOutputNumber(self.BREAKS, "Dates that break the baseline"))

    def _window(self, parameters, context):
        mode = WINDOW_CHOICES[self.parameterAsEnum(parameters, self.WINDOW, context)]
        w = bl.Window(mode=mode, years=self.parameterAsInt(parameters, self.YEARS, context) or 5)
        for attr, key in (("start", self.START), ("end", self.END)):
            text = self.parameterAsString(parameters, key, context).strip()
            if text:
                iso = dates.date_from_text(text)
                if not iso:
                    raise InputError("Baseline %s '%s' is not a date: write YYYY-MM-DD."
                                     % (attr, text))
                setattr(w, attr, iso)
        return w

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layers = [l for l in self.parameterAsLayerList(parameters, self.INPUT, context)
                  if isinstance(l, QgsRasterLayer)]
        if not layers:
            raise QgsProcessingException(
                "No images given. Choose the raster layers (or image files) of the site, "
                "one per date.")
        try:
            window = self._window(parameters, context)
            typed = parse_dates_list(self.parameterAsString(parameters, self.DATES, context),
                                     len(layers))
            jobs = []
            for layer, date in zip(layers, typed):
                path = raster_file_path(layer)
                date = date or dates.date_from_text(layer.name()) or dates.raster_date(path)
                if not date:
                    raise InputError(
                        "No acquisition date for %s. Put the date in the file name "
                        "(e.g. site_2023-10-05.tif) or give it in Dates." % layer.name())
                jobs.append((date, layer, path))
            jobs.sort(key=lambda j: j[0])
            imported = []
            imp_path = self.parameterAsFile(parameters, self.IMPORTED, context)
            if imp_path:
                imported = bl.read_counts_csv(imp_path)
                feedback.pushInfo("%d historical count(s) from %s" % (
                    len(imported), os.path.basename(imp_path)))
            aoi_source = self.parameterAsSource(parameters, self.AOI, context)
            tracks_source = self.parameterAsSource(parameters, self.TRACKS, context)
            sensitivity = 0.5
            if parameters.get(self.SENSITIVITY) not in (None, ""):
                sensitivity = self.parameterAsDouble(parameters, self.SENSITIVITY, context)
            sink_crs = jobs[0][1].crs()
            results = []
            n = len(jobs)
            for i, (date, layer, path) in enumerate(jobs):
                if feedback.isCanceled():
                    raise Canceled()
                crs = layer.crs()
                aoi = source_wkts(aoi_source, crs, context.transformContext(),
                                  QgsWkbTypes.GeometryType.PolygonGeometry, "area of interest")
                if aoi_source is not None and not aoi:
                    raise InputError("The area of interest has no polygons over %s. Draw "
                                     "the area or leave it empty." % layer.name())
                tracks = source_wkts(tracks_source, crs, context.transformContext(),
                                     QgsWkbTypes.GeometryType.LineGeometry, "rail tracks")
                source = os.path.basename(path) or layer.name()
                feedback.pushInfo("[%d/%d] %s: %s" % (i + 1, n, date, source))
                opts = CountOptions(sensitivity=sensitivity, aoi_wkt=aoi, tracks_wkt=tracks,
                                    date=date, source=source, crs_wkt=raster_crs_wkt(layer))
                res = count_railcars(
                    path, opts,
                    progress=lambda f, i=i: feedback.setProgress(100.0 * (i + f) / n),
                    is_canceled=feedback.isCanceled)
                for d in res.detections:
                    d.date, d.source = date, source
                log_result(feedback, res, indent="    ")
                results.append((date, layer, source, res))
        except Canceled:
            raise QgsProcessingException("Counting was cancelled; nothing was written.")
        except InputError as exc:
            raise QgsProcessingException(str(exc))

        points = [bl.Point(date, res.count, bl.IMAGERY, note=res.coverage_note, label=source)
                  for date, _l, source, res in results] + imported
        series = bl.compute(points, window)

        fields = detection_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields,
                                             QgsWkbTypes.Type.Polygon, sink_crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for date, layer, _source, res in results:
            tr = None
            if layer.crs() != sink_crs:
                tr = QgsCoordinateTransform(layer.crs(), sink_crs, context.transformContext())
            for det in res.detections:
                feat = detection_feature(det, fields)
                if tr is not None:
                    g = feat.geometry()
                    g.transform(tr)
                    feat.setGeometry(g)
                sink.addFeature(feat, QgsFeatureSink.Flag.FastInsert)

        csv_path = self.parameterAsFileOutput(parameters, self.COUNTS_CSV, context)
        chart_path = self.parameterAsFileOutput(parameters, self.CHART, context)
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            f.write(bl.to_csv(series))
        series_chart.save(series, chart_path)
        feedback.pushInfo(series.summary)
        if context.willLoadLayerOnCompletion(dest_id):
            details = context.layerToLoadOnCompletionDetails(dest_id)
            details.setPostProcessor(DetectionStylePostProcessor.create())
        latest = series.latest.count if series.latest else 0
        return {self.OUTPUT: dest_id, self.COUNTS_CSV: csv_path, self.CHART: chart_path,
                self.SUMMARY: series.summary, self.LATEST_COUNT: latest,
                self.BREAKS: sum(1 for r in series.rows if r.breaks)}
