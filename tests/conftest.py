"""Test set-up: a real QGIS (pytest-qgis 2.1.0, offscreen), the plugin
importable as ``railcar_counter`` whatever the checkout folder is called, and
small georeferenced rasters written with GDAL.

pytest-qgis provides ``qgis_app``, ``qgis_iface``, ``qgis_processing``,
``qgis_new_project`` ...; this file adds ``plugin``, ``processing_ready`` and
raster/vector factories.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("XDG_RUNTIME_DIR"):       # Qt warns without one
    _runtime = os.path.join(tempfile.gettempdir(), "runtime-%d" % os.getuid())
    os.makedirs(_runtime, mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = _runtime

ROOT = Path(__file__).resolve().parent.parent


def _make_package_importable():
    """Expose the repository as the package ``railcar_counter`` through a
    symlink in .build (the Makefile makes the same one), or in a temporary
    folder when the checkout is read-only."""
    for base in (ROOT / ".build", Path(tempfile.gettempdir()) / ("railcar_counter_%d" % os.getuid())):
        link = base / "railcar_counter"
        try:
            base.mkdir(parents=True, exist_ok=True)
            if not (link.is_symlink() and link.resolve() == ROOT):
                tmp = base / (".railcar_counter.%d" % os.getpid())
                if tmp.is_symlink():
                    tmp.unlink()
                tmp.symlink_to(ROOT, target_is_directory=True)
                os.replace(tmp, link)      # atomic: parallel runs do not collide
        except OSError:
            continue
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        return
    raise RuntimeError("Cannot make the plugin importable as railcar_counter")


_make_package_importable()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from osgeo import gdal, ogr, osr  # noqa: E402

gdal.UseExceptions()

PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"


def _complete_iface(iface):
    """pytest-qgis's QgisInterface stub lacks a few QgisInterface methods the
    plugin calls. Give it working versions on the stub's real QMainWindow, so
    tests see a real menu, toolbar and dock area."""
    from qgis.PyQt.QtWidgets import QToolBar

    window = iface.mainWindow()
    if getattr(iface, "_railcar_completed", False):
        return iface

    def raster_menu():
        for action in window.menuBar().actions():
            if action.menu() is not None and action.menu().objectName() == "mRasterMenu":
                return action.menu()
        menu = window.menuBar().addMenu("&Raster")
        menu.setObjectName("mRasterMenu")
        return menu

    def plugin_submenu(name, create=True):
        menu = raster_menu()
        for action in menu.actions():
            if action.menu() is not None and action.menu().title() == name:
                return action.menu()
        return menu.addMenu(name) if create else None

    def addPluginToRasterMenu(name, action):  # noqa: N802
        plugin_submenu(name).addAction(action)

    def removePluginRasterMenu(name, action):  # noqa: N802
        sub = plugin_submenu(name, create=False)
        if sub is None:
            return
        sub.removeAction(action)
        if not sub.actions():
            raster_menu().removeAction(sub.menuAction())

    toolbar = QToolBar("Plugins Toolbar", window)
    toolbar.setObjectName("mPluginToolBar")
    window.addToolBar(toolbar)

    def addToolBarIcon(action):  # noqa: N802
        toolbar.addAction(action)
        return action

    def removeToolBarIcon(action):  # noqa: N802
        toolbar.removeAction(action)

    def addDockWidget(area, dock):  # noqa: N802
        window.addDockWidget(area, dock)

    def removeDockWidget(dock):  # noqa: N802
        window.removeDockWidget(dock)

    for func in (addPluginToRasterMenu, removePluginRasterMenu, addToolBarIcon,
                 removeToolBarIcon, addDockWidget, removeDockWidget):
        setattr(iface, func.__name__, func)
    # The map shows the layer tree's visible layers through a bridge, as in
    # QGIS. The stub put every new layer on the canvas and took one off only
    # when the whole project was cleared, so the canvas went on drawing
    # layers the project had deleted: rare crashes, and edited GeoPackages
    # read short for seconds while it drew them.
    from qgis.core import QgsProject
    from qgis.gui import QgsLayerTreeMapCanvasBridge
    QgsProject.instance().layersAdded.disconnect(iface.addLayers)
    iface._railcar_bridge = QgsLayerTreeMapCanvasBridge(QgsProject.instance().layerTreeRoot(),
                                                        iface.mapCanvas())
    iface.pluginToolBar = lambda: toolbar
    iface.rasterMenu = raster_menu
    iface._railcar_completed = True
    return iface


@pytest.fixture(scope="session", autouse=True)
def iface(qgis_iface):
    """pytest-qgis's iface with the plugin-facing methods it lacks (autouse:
    ``qgis_iface`` is completed for every test too)."""
    yield _complete_iface(qgis_iface)
    # The bridge goes before QGIS exits: left to the interpreter's exit, it
    # outlived the layer tree it watches (a crash after the last test).
    from qgis.PyQt import sip
    sip.delete(qgis_iface._railcar_bridge)


@pytest.fixture()
def plugin(qgis_app, iface, qgis_processing):
    """The plugin as QGIS loads it: classFactory, initGui ... unload. Each
    test starts as with a fresh profile (dock closed)."""
    import railcar_counter
    from qgis.core import QgsSettings
    from railcar_counter.plugin.plugin import DOCK_OPEN_KEY
    QgsSettings().remove(DOCK_OPEN_KEY)
    instance = railcar_counter.classFactory(iface)
    instance.initGui()
    yield instance
    instance.unload()


@pytest.fixture()
def processing_ready(qgis_app, qgis_processing):
    """Processing initialised and the plugin's provider registered, as
    qgis_process does it (initProcessing without the GUI)."""
    if PROCESSING_PLUGINS not in sys.path:
        sys.path.append(PROCESSING_PLUGINS)
    from qgis.core import QgsApplication
    import railcar_counter
    instance = railcar_counter.classFactory(None)
    instance.initProcessing()
    assert QgsApplication.processingRegistry().providerById("railcarcounter") is not None
    yield QgsApplication.processingRegistry().providerById("railcarcounter")
    instance.unload()


# ---------------------------------------------------------------- rasters
UTM52N = 32652          # Tumangang


def write_raster(path, bands, epsg=UTM52N, gsd=0.5, origin=(500000.0, 4700000.0),
                 nodata=None, metadata=None, geotransform=None):
    """Write ``bands`` (array of shape (n, rows, cols) or (rows, cols)) as a
    GeoTIFF with a north-up geotransform of ``gsd`` map units per pixel."""
    bands = np.asarray(bands)
    if bands.ndim == 2:
        bands = bands[None]
    n, rows, cols = bands.shape
    gdal_type = {np.dtype("uint8"): gdal.GDT_Byte, np.dtype("uint16"): gdal.GDT_UInt16,
                 np.dtype("int16"): gdal.GDT_Int16, np.dtype("float32"): gdal.GDT_Float32,
                 np.dtype("float64"): gdal.GDT_Float64}[bands.dtype]
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), cols, rows, n, gdal_type, options=["COMPRESS=DEFLATE", "TILED=YES"])
    ds.SetGeoTransform(geotransform or (origin[0], gsd, 0.0, origin[1], 0.0, -gsd))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(n):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(bands[i])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    if metadata:
        ds.SetMetadata(metadata)
    ds.FlushCache()
    ds = None
    return str(path)


def yard_spec(name, kind="utm", bands=3, dtype="uint8", gsd_m=0.5, n_cars=10, tracks=2):
    """A small, easy, realistic yard (plugin/core/synthetic.py): ``tracks``
    straight east-west tracks about ``n_cars`` cars long, about ``n_cars``
    coupled box and tank cars on each, short shadows, ballast and rails, soil
    around, no look-alikes. Hard scenes are the benchmark's business; these
    check that every path through the plugin counts what is there."""
    from railcar_counter.plugin.core import synthetic
    length_m = 60.0 + n_cars * 17.0
    return synthetic.SceneSpec(
        name=Path(name).stem, seed=1000 + 37 * n_cars + tracks, gsd_m=gsd_m,
        crs="EPSG:%d" % (UTM52N if kind == "utm" else 4326), size_m=(length_m, 50.0 + 5.0 * tracks),
        n_tracks=tracks, track_angle_deg=90.0, n_cars=n_cars * tracks, locomotive_rate=0.0,
        single_car_rate=0.0, car_mix={"box": 0.5, "tank": 0.5}, sun_elevation=55.0,
        sun_azimuth=160.0, haze=0.02,
        roads=0, trucks=0, containers=0, sheds=0, buildings=0, platforms=0,
        dtype=dtype, bands={1: "pan", 3: "rgb", 4: "bgrn"}[bands])


@pytest.fixture()
def raster_factory(tmp_path):
    """Returns make(name, kind="utm"|"geographic", bands=1|3|4, dtype="uint8"|
    "uint16", gsd_m=0.5, n_cars=10, tracks=2, metadata=None) -> (path, truth):
    a generated yard (see yard_spec) and a dict with the number of cars
    ("cars"), their centres in metres east and south of the top-left corner
    ("centres_m", rounded to 0.5 m so that cars on one track share a row),
    the scene's extent in its CRS ("extent"), "epsg" and "gsd_m"."""
    from railcar_counter.plugin.core import synthetic
    from railcar_counter.plugin.core.raster import RasterSource

    def make(name="scene.tif", kind="utm", bands=3, dtype="uint8", gsd_m=0.5,
             n_cars=10, tracks=2, metadata=None):
        path = str(tmp_path / name)
        cars = [c for c in synthetic.generate_scene(
            yard_spec(name, kind, bands, dtype, gsd_m, n_cars, tracks), path) if not c.hidden]
        os.remove(synthetic.truth_path(path))     # a user's folder holds only the image
        ds = gdal.Open(path, gdal.GA_Update)
        ds.SetMetadata(metadata or {})
        ds = None
        src = RasterSource(path)
        (x0, y0), (x1, y1) = src.pixel_to_map(0, 0), src.pixel_to_map(src.width, src.height)
        extent = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        sx = src.gsd_x_m / abs(src.gt[1])          # metres per map unit
        sy = src.gsd_y_m / abs(src.gt[5])
        centres = [(round((c.cx - extent[0]) * sx * 2) / 2, round((extent[3] - c.cy) * sy * 2) / 2)
                   for c in cars]
        epsg = UTM52N if kind == "utm" else 4326
        return path, {"cars": len(cars), "centres_m": centres, "extent": extent,
                      "epsg": epsg, "gsd_m": gsd_m}
    return make


@pytest.fixture
def world_file_jpeg(tmp_path):
    """Returns make(tif) -> path: the GeoTIFF as analysts often get imagery,
    a JPEG with a world file and no CRS."""
    def make(path):
        jpeg = str(tmp_path / (Path(path).stem + ".jpg"))
        gdal.Translate(jpeg, str(path), format="JPEG",
                       creationOptions=["WORLDFILE=YES", "QUALITY=90"])
        for extra in tmp_path.glob(Path(jpeg).name + ".aux.xml"):
            extra.unlink()        # GDAL keeps the CRS there; the world file has none
        return jpeg
    return make


@pytest.fixture
def soft_yard(tmp_path):
    """(sharp, soft, truth): the test yard of test_detector.py as generated
    and a copy blurred by 1.3 px, as soft as a product sold at a finer pixel
    size than its optics resolve; soft is named soft.tif."""
    from railcar_counter.plugin.core import imaging, synthetic
    from test_detector import YARD
    path, truth = synthetic.cached_scene(YARD, str(tmp_path))
    soft = str(tmp_path / "soft.tif")
    src = gdal.Open(path)
    dst = gdal.GetDriverByName("GTiff").CreateCopy(soft, src)
    for b in range(1, src.RasterCount + 1):
        a = src.GetRasterBand(b).ReadAsArray().astype(np.float32)
        dst.GetRasterBand(b).WriteArray(np.clip(np.rint(imaging.gauss_blur(a, 1.3)), 0, 255))
    dst = None
    return path, soft, truth


def write_vector(path, wkts, epsg, geom_type=ogr.wkbPolygon, layer_name=None):
    """Write geometries (WKT) to a GeoPackage or shapefile; returns path."""
    driver = "ESRI Shapefile" if str(path).endswith(".shp") else "GPKG"
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lyr = ds.CreateLayer(layer_name or Path(path).stem, srs, geom_type)
    for wkt in wkts:
        feat = ogr.Feature(lyr.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        lyr.CreateFeature(feat)
    ds = None
    return str(path)


@pytest.fixture()
def vector_factory(tmp_path):
    def make(name, wkts, epsg, geom_type=ogr.wkbPolygon):
        return write_vector(tmp_path / name, wkts, epsg, geom_type)
    return make
