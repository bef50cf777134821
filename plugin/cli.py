"""Command line of Railcar Counter.

    python3 -m railcar_counter.plugin.cli count --input scene.tif --output cars.shp
        [--aoi area.gpkg] [--tracks rails.gpkg] [--sensitivity 0.5]
        [--date 2023-10-05] [--crs EPSG:32652] [--pixel-size 0.5] [--overwrite]

(``make count INPUT=... OUTPUT=...`` runs the same.) ``count`` starts a
headless QGIS and runs the Processing algorithm railcarcounter:countrailcars,
so the command line, the toolbox and qgis_process give identical results.

Subcommands live in a registry: a module calls :func:`register` at import
and is listed in ``EXTENSION_MODULES`` below (``series`` and ``demo`` come
from there). User errors print one line and exit with status 1; Ctrl-C
cancels cleanly (status 130).
"""
import argparse
import contextlib
import importlib
import os
import shutil
import signal
import sys
import tempfile

PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"

# Other modules of this package that add subcommands with register().
EXTENSION_MODULES = ("cli_series",)

COMMANDS = {}      # name -> (help, configure(parser), run(args) -> exit status)

# Files that make up one shapefile: replaced and cleaned up together.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx",
                   ".qmd", ".shp.xml")


class UserError(Exception):
    """Something the user can fix; printed as one line, no traceback."""


def register(name, help, configure, run):  # noqa: A002 - argparse's word
    """Add subcommand ``name``: ``configure(parser)`` adds its arguments,
    ``run(args)`` does the work and returns the exit status."""
    COMMANDS[name] = (help, configure, run)


# ------------------------------------------------------------ headless QGIS
_APP = None
_PROVIDER = None     # the registry does not keep the Python object alive


def headless_qgis():
    """Start QGIS without a display (once per process), initialise
    Processing and register this plugin's provider. Returns the
    QgsApplication."""
    global _APP, _PROVIDER
    if _APP is not None:
        return _APP
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # Qt warns on every start without one; give it a private folder.
        runtime = os.path.join(tempfile.gettempdir(), "runtime-%d" % os.getuid())
        with contextlib.suppress(OSError):
            os.makedirs(runtime, mode=0o700, exist_ok=True)
            os.chmod(runtime, 0o700)
            os.environ["XDG_RUNTIME_DIR"] = runtime
    from qgis.core import QgsApplication
    app = QgsApplication.instance()
    if app is None:
        app = QgsApplication([], False)
        app.initQgis()
    if PROCESSING_PLUGINS not in sys.path:
        sys.path.append(PROCESSING_PLUGINS)
    from processing.core.Processing import Processing
    Processing.initialize()
    if QgsApplication.processingRegistry().providerById("railcarcounter") is None:
        from .processing.provider import RailcarCounterProvider
        _PROVIDER = RailcarCounterProvider()
        QgsApplication.processingRegistry().addProvider(_PROVIDER)
    _APP = app
    return app


def make_feedback(quiet=False):
    """A QgsProcessingFeedback that prints warnings to stderr and, on a
    terminal, a progress percentage."""
    from qgis.core import QgsProcessingFeedback

    class CliFeedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self._last = -1
            self._tty = sys.stderr.isatty() and not quiet
            self.progressChanged.connect(self._show_progress)

        def _show_progress(self, value):
            step = int(value) // 10
            if self._tty and step != self._last:
                self._last = step
                sys.stderr.write("\r%3d%%" % int(value))
                sys.stderr.flush()

        def end_progress(self):
            if self._tty and self._last >= 0:
                sys.stderr.write("\r    \r")
                sys.stderr.flush()

        def pushWarning(self, text):  # noqa: N802
            if not quiet:
                self.end_progress()
                sys.stderr.write("Warning: %s\n" % text)

        def reportError(self, text, fatal=False):  # noqa: N802
            pass     # the exception carries the same message; print it once

        def pushInfo(self, text):  # noqa: N802
            pass

    return CliFeedback()


@contextlib.contextmanager
def cancel_on_interrupt(feedback):
    """Ctrl-C asks the algorithm to stop (the detector polls between
    windows) instead of killing Python halfway through a write."""
    interrupted = []

    def handler(signum, frame):
        interrupted.append(signum)
        feedback.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------- safe outputs
def output_files(path):
    """Every file that belongs to the output ``path`` (a shapefile's
    sidecars too)."""
    base, ext = os.path.splitext(path)
    if ext.lower() == ".shp":
        return [base + part for part in SHAPEFILE_PARTS]
    return [path, path + "-wal", path + "-shm", path + "-journal"] if ext.lower() == ".gpkg" else [path]


def check_output_free(path, overwrite=False):
    """The files of output ``path`` that exist; UserError when there are
    some and ``overwrite`` is false."""
    existing = [p for p in output_files(os.path.abspath(path)) if os.path.exists(p)]
    if existing and not overwrite:
        raise UserError("%s already exists. Choose another output or add --overwrite "
                        "(make count ... OVERWRITE=1) to replace it." % path)
    return existing


@contextlib.contextmanager
def staged_output(path, overwrite=False):
    """Yield a temporary path next to ``path``; on success move the written
    files into place, on failure remove them, so a failed or cancelled run
    never leaves a half-written output (shapefile sidecars included)."""
    path = os.path.abspath(path)
    existing = check_output_free(path, overwrite)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserError("Cannot create the output folder %s: %s" % (folder, exc.strerror))
    if not os.access(folder, os.W_OK):
        raise UserError("Cannot write to %s: choose a folder you can write to." % folder)
    stage = tempfile.mkdtemp(prefix=".railcar_counter-", dir=folder)
    try:
        staged = os.path.join(stage, os.path.basename(path))
        yield staged
        written = [p for p in output_files(staged) if os.path.exists(p)]
        if not written:
            raise UserError("No output was written to %s." % path)
        for old in existing:
            os.remove(old)
        for part in written:
            os.replace(part, os.path.join(folder, os.path.basename(part)))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _existing_file(path, what, hint):
    if path is None:
        return None
    if not path.startswith("/vsi") and not os.path.exists(path.split("|", 1)[0]):
        raise UserError("%s not found: %s. %s" % (what, path, hint))
    return path


# ------------------------------------------------------------------ count
def _configure_count(parser):
    parser.add_argument("--input", "-i", required=True, metavar="RASTER",
                        help="image to count (GeoTIFF or any raster GDAL reads)")
    parser.add_argument("--output", "-o", required=True, metavar="VECTOR",
                        help="detections to write: .shp, .gpkg, .geojson ...")
    parser.add_argument("--aoi", metavar="POLYGONS",
                        help="area of interest: only cars inside its polygons count")
    parser.add_argument("--tracks", metavar="LINES",
                        help="rail track lines (for example from OpenStreetMap); a layer a "
                             "few metres off the image is lined up with the cars first")
    parser.add_argument("--sensitivity", type=float, default=None, metavar="0..1",
                        help="0 finds only clear cars, 1 finds more (default 0.5)")
    parser.add_argument("--date", default="", metavar="YYYY-MM-DD",
                        help="acquisition date (default: from file name or metadata)")
    parser.add_argument("--crs", default="", metavar="EPSG:CODE",
                        help="the image's CRS, for an image whose file has none (a JPEG or "
                             "PNG with a world file) or a wrong one")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="METRES",
                        help="ground size of one pixel in metres, for an image without "
                             "georeferencing (a photo or screen grab) or to overrule it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output if it exists")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the result")


def run_algorithm(algorithm, params, feedback):
    """processing.run for the command line: Ctrl-C cancels, and a failure
    becomes one clear line (UserError)."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProject
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    context.setFeedback(feedback)
    with cancel_on_interrupt(feedback) as interrupted:
        try:
            results = processing.run(algorithm, params, context=context, feedback=feedback)
        except QgsProcessingException as exc:
            feedback.end_progress()
            if interrupted:
                raise KeyboardInterrupt
            raise UserError(_clean_processing_message(str(exc)))
        finally:
            # Release the written files before they are moved into place.
            del context
    feedback.end_progress()
    return results


def run_count(args):
    raster = _existing_file(args.input, "Input raster",
                            "Give the path of an image file (GeoTIFF, JP2, VRT ...).")
    aoi = _existing_file(args.aoi, "Area of interest", "Give a polygon file (.gpkg, .shp, .geojson).")
    tracks = _existing_file(args.tracks, "Tracks layer", "Give a line file (.gpkg, .shp, .geojson).")
    if args.sensitivity is not None and not 0.0 <= args.sensitivity <= 1.0:
        raise UserError("--sensitivity must be between 0 and 1 (default 0.5); got %g."
                        % args.sensitivity)
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise UserError("--pixel-size is the ground size of one pixel in metres, above 0 "
                        "(for example 0.5); got %g." % args.pixel_size)
    check_output_free(args.output, args.overwrite)     # before the slow start of QGIS

    headless_qgis()
    from qgis.core import QgsVectorFileWriter
    ext = os.path.splitext(args.output)[1].lower().lstrip(".")
    if ext not in [e.lower() for e in QgsVectorFileWriter.supportedFormatExtensions()]:
        raise UserError("Cannot tell the output format from '%s'. End the output name "
                        "with .shp, .gpkg or .geojson (or another vector format's "
                        "extension)." % os.path.basename(args.output))

    feedback = make_feedback(args.quiet)
    with staged_output(args.output, args.overwrite) as staged:
        params = {"INPUT": _raster_with_crs(raster, args.crs) if args.crs else raster,
                  "OUTPUT": staged, "DATE": args.date or ""}
        if aoi:
            params["AOI"] = aoi
        if tracks:
            params["TRACKS"] = tracks
        if args.sensitivity is not None:
            params["SENSITIVITY"] = args.sensitivity
        if args.pixel_size is not None:
            params["PIXEL_SIZE"] = args.pixel_size
        results = run_algorithm("railcarcounter:countrailcars", params, feedback)
    count, locos = int(results["COUNT"]), int(results["LOCOMOTIVES"])
    if results.get("SHARPENED") and not args.quiet:
        print("Note: %s is softer than its pixel size; it was sharpened before counting."
              % os.path.basename(raster), file=sys.stderr)
    print("%d railcars (%d locomotives) in %s" % (count, locos, os.path.basename(raster)))
    print(os.path.abspath(args.output))
    return 0


def _raster_with_crs(path, crs_text):
    """The id of the raster as a project layer whose CRS is ``crs_text``,
    as if the analyst had set it in the layer's properties (the project
    owns the layer, so it is freed in order when QGIS exits)."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer
    crs = QgsCoordinateReferenceSystem(crs_text)
    if not crs.isValid():
        raise UserError("--crs %s is not a CRS QGIS knows. Give an EPSG code, for example "
                        "EPSG:32652 (UTM zone 52N) or EPSG:3857 (Web Mercator)." % crs_text)
    layer = QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0], "gdal")
    if not layer.isValid():
        raise UserError("The input raster could not be opened: %s" % path)
    layer.setCrs(crs)
    QgsProject.instance().addMapLayer(layer, False)
    return layer.id()


def _clean_processing_message(message):
    """Processing wraps parameter errors in 'Unable to execute algorithm\\n...';
    keep what tells the user what to do, on one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    lines = [line for line in lines if line != "Unable to execute algorithm"]
    text = " ".join(lines) or "Counting failed."
    if text.startswith("Error: "):
        text = text[len("Error: "):]
    return text.replace("Could not load source layer for INPUT:",
                        "The input raster could not be opened:")


register("count", "count railcars on one raster and write one polygon per car",
         _configure_count, run_count)


# ------------------------------------------------------------------- main
def _load_extensions():
    for name in EXTENSION_MODULES:
        try:
            importlib.import_module("%s.%s" % (__package__, name))
        except ModuleNotFoundError as exc:
            if exc.name != "%s.%s" % (__package__, name):
                raise       # the module exists but something it imports is missing


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m railcar_counter.plugin.cli",
        description="Railcar Counter: count railcars on satellite and aerial images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, configure, _run) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None):
    _load_extensions()
    args = build_parser().parse_args(argv)
    _help, _configure, run = COMMANDS[args.command]
    try:
        return run(args) or 0
    except UserError as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Cancelled: nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:
        # Messages of the core's errors are written for users.
        from .core.errors import Canceled, RailcarCounterError
        if isinstance(exc, Canceled):
            print("Cancelled: nothing was written.", file=sys.stderr)
            return 130
        if isinstance(exc, RailcarCounterError):
            print("Error: %s" % exc, file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    # Under "python3 -m" this file is __main__, a second copy of the module:
    # run the package's copy so subcommands registered by extension modules
    # (and their UserError) are the ones main() sees.
    from . import cli as _cli
    sys.exit(_cli.main())
