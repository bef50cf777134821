"""Command-line subcommands ``series`` and ``demo`` (registered into cli.py).

    python3 -m railcar_counter.plugin.cli series --input a.tif b.tif ... \\
        --output cars.shp --csv counts.csv --chart chart.png [--import old.csv]
    python3 -m railcar_counter.plugin.cli demo --out DIR [--open]

Both run the Processing algorithm railcarcounter:countseries, so the command
line, the toolbox and qgis_process give the same numbers.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys

from .cli import (
    UserError, _existing_file, headless_qgis, make_feedback, output_files, register,
    run_algorithm, staged_output)
from .processing.count_series import WINDOW_CHOICES

# The demo site: 9 dates over 5.4 years, a quiet yard (8-20 cars) and a
# surge on the last date.
DEMO_DATES = (
    ("2018-05-14", 12), ("2018-11-02", 9), ("2019-06-21", 15), ("2020-03-30", 8),
    ("2020-10-12", 20), ("2021-07-08", 11), ("2022-04-19", 14), ("2022-12-01", 10),
    ("2023-10-05", 73),
)
DEMO_SITE = "tumangang"


def _run_series(rasters, output, csv_path, chart_path, extra, quiet=False):
    """processing.run countseries; returns its results. ``output`` etc. are
    final paths (the caller stages them)."""
    headless_qgis()
    params = dict(extra)
    params.update({"INPUT": list(rasters), "OUTPUT": output, "COUNTS_CSV": csv_path,
                   "CHART": chart_path})
    return run_algorithm("railcarcounter:countseries", params, make_feedback(quiet))


# ------------------------------------------------------------------ series

def _configure_series(parser):
    parser.add_argument("--input", "-i", required=True, nargs="+", metavar="RASTER",
                        help="images of the site, one per date")
    parser.add_argument("--output", "-o", required=True, metavar="VECTOR",
                        help="detections of all dates (.shp, .gpkg ...) with a date field")
    parser.add_argument("--csv", required=True, metavar="CSV",
                        help="counts with baseline statistics, ratios and flags")
    parser.add_argument("--chart", required=True, metavar="PNG", help="the chart")
    parser.add_argument("--dates", default="", metavar="D1,D2,...",
                        help="one date per image in order ('-' keeps the found date)")
    parser.add_argument("--import", dest="imported", metavar="CSV",
                        help="historical counts 'date,count[,note]' that join the baseline")
    parser.add_argument("--aoi", metavar="POLYGONS", help="area of interest")
    parser.add_argument("--tracks", metavar="LINES", help="rail track lines")
    parser.add_argument("--sensitivity", type=float, default=None, metavar="0..1")
    parser.add_argument("--window", choices=WINDOW_CHOICES, default="before_latest",
                        help="baseline window (default: every date before the latest)")
    parser.add_argument("--years", type=int, default=5, help="N for --window last_years")
    parser.add_argument("--start", default="", metavar="YYYY-MM-DD", help="window start")
    parser.add_argument("--end", default="", metavar="YYYY-MM-DD", help="window end")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", "-q", action="store_true")


def run_series(args):
    rasters = [_existing_file(p, "Input raster", "Give the path of an image file.")
               for p in args.input]
    extra = {"DATES": args.dates, "WINDOW": WINDOW_CHOICES.index(args.window),
             "YEARS": args.years, "START": args.start, "END": args.end}
    if args.imported:
        extra["IMPORTED"] = _existing_file(args.imported, "Historical counts CSV",
                                           "Give a CSV file with 'date,count' lines.")
    if args.aoi:
        extra["AOI"] = _existing_file(args.aoi, "Area of interest", "Give a polygon file.")
    if args.tracks:
        extra["TRACKS"] = _existing_file(args.tracks, "Tracks layer", "Give a line file.")
    if args.sensitivity is not None:
        if not 0.0 <= args.sensitivity <= 1.0:
            raise UserError("--sensitivity must be between 0 and 1 (default 0.5).")
        extra["SENSITIVITY"] = args.sensitivity
    for p in (args.csv, args.chart):
        if os.path.exists(p) and not args.overwrite:
            raise UserError("%s already exists. Choose another name or add --overwrite." % p)
    with staged_output(args.output, args.overwrite) as staged:
        results = _run_series(rasters, staged, os.path.abspath(args.csv),
                              os.path.abspath(args.chart), extra, args.quiet)
    print(results["SUMMARY"])
    for p in (args.output, args.csv, args.chart):
        print(os.path.abspath(p))
    return 0


register("series", "count railcars on several dates of a site and compare with the baseline",
         _configure_series, run_series)


# -------------------------------------------------------------------- demo
def _configure_demo(parser):
    parser.add_argument("--out", default="demo_output", metavar="DIR",
                        help="folder for the demo (default demo_output). When it already "
                             "holds a demo, a new dated subfolder is used.")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR itself, replacing an earlier demo there")
    parser.add_argument("--open", action="store_true",
                        help="open QGIS with the demo project and the panel (needs a display)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the scenes")
    parser.add_argument("--quiet", "-q", action="store_true")


DEMO_OUTPUTS = ("images", "detections", "railcars_all_dates.shp", "counts.csv",
                "chart.png", "chart.svg", "demo.qgz", "open_panel.py")


def demo_folder(out, overwrite=False, now=None):
    """Where the demo writes: ``out`` when it is new or empty (or with
    ``overwrite``), else a fresh ``out/demo_YYYYmmdd_HHMMSS`` so an earlier
    demo is never overwritten by surprise."""
    out = os.path.abspath(out)
    if overwrite and os.path.isdir(out):
        for name in DEMO_OUTPUTS:
            p = os.path.join(out, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            for part in output_files(p):
                if os.path.isfile(part):
                    os.remove(part)
        return out
    if not os.path.exists(out) or not os.listdir(out):
        return out
    stamp = (now or datetime.datetime.now()).strftime("demo_%Y%m%d_%H%M%S")
    return os.path.join(out, stamp)


def _write_per_date(all_path, folder, dates):
    """One shapefile per date from the all-dates layer."""
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter, QgsVectorLayer
    os.makedirs(folder, exist_ok=True)
    written = []
    for date in dates:
        layer = QgsVectorLayer(all_path, "railcars", "ogr")
        layer.setSubsetString("\"date\" = '%s'" % date)
        out = os.path.join(folder, "railcars_%s.shp" % date)
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "ESRI Shapefile"
        opts.fileEncoding = "UTF-8"
        err = QgsVectorFileWriter.writeAsVectorFormatV3(
            layer, out, QgsCoordinateTransformContext(), opts)
        if err[0] != QgsVectorFileWriter.WriterError.NoError:
            raise UserError("Could not write %s: %s" % (out, err[1]))
        written.append((date, out))
    return written


def write_demo_project(path, site, rasters, per_date, imported=(), window=None):
    """A QGIS project with the images, one styled detection layer per date
    (Temporal Controller ready) in a group for the site, and the panel's
    state, so the dock opens on the finished analysis."""
    from qgis.core import QgsDateTimeRange, QgsProject, QgsRasterLayer, QgsVectorLayer
    from .gui.dock import (SCOPE, STATE_KEY, STATE_VERSION, RailcarCounterDock, RowState,
                           count_freight, day_range)
    from .qgis_layers import apply_detection_style
    from .core import baseline as bl

    project = QgsProject.instance()
    project.clear()
    images = project.layerTreeRoot().addGroup("Images")
    group = project.layerTreeRoot().insertGroup(0, site)
    rows = {}
    dets = dict(per_date)
    crs = None
    for date, raster_path in sorted(rasters, key=lambda r: r[0], reverse=True):
        r = QgsRasterLayer(raster_path, os.path.splitext(os.path.basename(raster_path))[0])
        if not r.isValid():
            raise UserError("Could not open %s for the demo project." % raster_path)
        RailcarCounterDock._set_raster_temporal(r, date)
        project.addMapLayer(r, False)
        images.addLayer(r)
        crs = crs or r.crs()
        row = RowState(r.id(), include=True, date=date, date_from="name", status="done")
        if date in dets:
            v = QgsVectorLayer(dets[date], "railcars %s" % date, "ogr")
            apply_detection_style(v)
            RailcarCounterDock._set_vector_temporal(v, date)
            project.addMapLayer(v, False)
            group.addLayer(v)
            row.det_layer_id = v.id()
            row.count = count_freight(v)
        rows[r.id()] = row
    ds = sorted(d for d, _p in rasters)
    # Open on the newest date: older images and detections hidden (the
    # panel's table or the Temporal Controller brings them up), legends folded.
    for row in rows.values():
        for lid in (row.layer_id, row.det_layer_id):
            node = project.layerTreeRoot().findLayer(lid) if lid else None
            if node is not None:
                node.setItemVisibilityChecked(row.date == ds[-1])
                node.setExpanded(False)
    project.timeSettings().setTemporalRange(
        QgsDateTimeRange(day_range(ds[0]).begin(), day_range(ds[-1]).end()))
    if crs is not None:
        project.setCrs(crs)
        # Open on the yard: the newest image with its detections.
        from qgis.core import QgsReferencedRectangle
        extent = QgsRasterLayer(sorted(rasters)[-1][1], "x").extent()
        project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, crs))
    state = {"version": STATE_VERSION, "site": site, "sensitivity": 0.5, "aoi": "__0",
             "tracks": "__0", "window": bl.window_to_dict(window or bl.Window()),
             "band": "minmax", "rows": {k: v.to_dict() for k, v in rows.items()},
             "imported": [{"date": p.date, "count": p.count, "note": p.note}
                          for p in imported]}
    project.writeEntry(SCOPE, STATE_KEY, json.dumps(state))
    if not project.write(path):
        raise UserError("Could not write the demo project %s: %s" % (path, project.error()))
    return path


OPEN_PANEL = '''"""Opens the Railcar Counter panel in QGIS (qgis --code open_panel.py),
loading the plugin from this checkout when it is not installed."""
import sys
sys.path.insert(0, %r)
import qgis.utils
from qgis.utils import iface
plugin = qgis.utils.plugins.get("railcar_counter")
if plugin is None:
    import railcar_counter
    plugin = railcar_counter.classFactory(iface)
    plugin.initGui()
    qgis.utils.plugins["railcar_counter"] = plugin
if plugin.dock is None or not plugin.dock.isVisible():
    plugin.toggle_dock()
'''


def run_demo(args):
    from .core import synthetic
    from .core import series_chart
    from .core import baseline as bl

    out = demo_folder(args.out, args.overwrite)
    os.makedirs(out, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    say("Generating %d demo images of %s in %s ..." % (len(DEMO_DATES), DEMO_SITE, out))
    site = synthetic.generate_site(os.path.join(out, "images"), list(DEMO_DATES), args.seed,
                                   name=DEMO_SITE)
    rasters = [(date, path) for path, date, _truth in site]
    truth = {date: t for _path, date, t in site}
    say("Counting railcars on every date ...")
    all_path = os.path.join(out, "railcars_all_dates.shp")
    csv_path = os.path.join(out, "counts.csv")
    chart_path = os.path.join(out, "chart.png")
    results = _run_series([p for _d, p in rasters], all_path, csv_path, chart_path,
                          {}, args.quiet)
    per_date = _write_per_date(all_path, os.path.join(out, "detections"),
                               [d for d, _p in rasters])
    # SVG from the same numbers (the CSV is what was computed).
    points = [bl.Point(r["date"], int(r["count"]), r["source"], note=r.get("note") or "")
              for r in _read_csv(csv_path)]
    series_chart.save(bl.compute(points), os.path.join(out, "chart.svg"), title=DEMO_SITE)
    qgz = write_demo_project(os.path.join(out, "demo.qgz"), "%s (demo)" % DEMO_SITE,
                             rasters, per_date)
    package_parent = os.path.dirname(_package_dir())
    with open(os.path.join(out, "open_panel.py"), "w") as f:
        f.write(OPEN_PANEL % package_parent)

    if not args.quiet:
        print("Date        counted  truth")
        for r in _read_csv(csv_path):
            t = truth.get(r["date"])
            t = _truth_count(t)
            print("%s  %7s  %5s  %s" % (r["date"], r["count"], "" if t is None else t,
                                        r["status"]))
    print(results["SUMMARY"])
    print("Outputs in %s: railcars_all_dates.shp, detections/railcars_<date>.shp, "
          "counts.csv, chart.png, chart.svg, demo.qgz" % out)
    if args.open:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            print("No display here: open %s in QGIS (Project > Open), or run "
                  "qgis --project %s --code %s" % (qgz, qgz, os.path.join(out, "open_panel.py")))
        else:
            qgis_bin = shutil.which("qgis")
            if qgis_bin is None:
                raise UserError("QGIS is not installed (no 'qgis' command). Install it "
                                "(make setup) or open %s in QGIS yourself." % qgz)
            # Not offscreen like the headless QGIS that just counted.
            env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
            subprocess.Popen([qgis_bin, "--project", qgz, "--code",
                              os.path.join(out, "open_panel.py")],
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
            print("QGIS is opening %s with the Railcar Counter panel." % qgz)
    return 0


def _package_dir():
    """The folder Python imports this package from (.build/railcar_counter
    in the checkout, the plugin folder when installed)."""
    pkg = sys.modules[__package__.split(".")[0]]
    return os.path.dirname(os.path.abspath(pkg.__file__))


def _truth_count(t):
    """Freight cars a person could count (locomotives and cars hidden under
    clouds left out) from the generator's truth: a list of TruthCar."""
    if t is None:
        return None
    if isinstance(t, (int, float)):
        return int(t)
    return sum(1 for c in t if c.is_freight() and not getattr(c, "hidden", False))


def _read_csv(path):
    import csv
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


register("demo", "generate a multi-date demo site, count it end to end, write the "
         "shapefiles, CSV, chart and a QGIS project", _configure_demo, run_demo)
