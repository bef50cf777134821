"""The analyst's panel driven for real: the plugin loaded through classFactory,
the dock opened from its action, real raster layers in the QGIS project, the
real detector running in a QgsTask. What is checked is what an analyst sees:
the table, the layers, the chart, the summary, files written."""
import csv
import datetime
import os
import re
import time

import matplotlib.dates as mdates

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QPoint, Qt, QTimer

from railcar_counter.plugin.core import detector, synthetic
from railcar_counter.plugin.gui import dock as dock_mod

COLS = dock_mod


@pytest.fixture()
def project(qgis_app):
    p = QgsProject.instance()
    p.clear()
    yield p
    p.clear()


@pytest.fixture()
def dock(plugin, project, iface, qtbot):
    iface.mainWindow().resize(1366, 768)
    iface.mainWindow().show()
    plugin.toggle_dock()
    d = plugin.dock
    assert d is not None and d.isVisible()
    d.resize(400, 900)
    yield d
    if d.task is not None:
        d.cancel()
        qtbot.waitUntil(lambda: d.task is None, timeout=20000)
    d.close()        # as the analyst leaves it: the next QGIS start opens no panel


def add_raster(path, name=None):
    layer = QgsRasterLayer(path, name or os.path.splitext(os.path.basename(path))[0])
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def table(d):
    """[(include, name, date, count, status)] as shown."""
    out = []
    for i in range(d.table.rowCount()):
        cells = [d.table.item(i, c) for c in range(5)]
        out.append((cells[0].checkState() == Qt.CheckState.Checked, cells[1].text(),
                    cells[2].text(), cells[3].text(), cells[4].text()))
    return out


def wait_done(d, qtbot, timeout=120000):
    qtbot.waitUntil(lambda: d.task is None, timeout=timeout)


def read_features(layer, qtbot):
    """The layer's features, read whole. While the map draws a GeoPackage
    that QGIS has reopened for editing, a read can come back empty for a
    moment (the dock reads again, and so do we)."""
    got = []

    def whole():
        got[:] = list(layer.getFeatures())
        return len(got) == layer.featureCount()
    qtbot.waitUntil(whole, timeout=10000)
    return got


@pytest.fixture()
def site(raster_factory):
    """Three dated images of a yard with 6, 8 and 12 cars per track."""
    paths = []
    for date, n in (("2021-05-01", 6), ("2022-06-01", 8), ("2023-10-05", 12)):
        path, truth = raster_factory("yard_%s.tif" % date, bands=3, n_cars=n, tracks=1)
        paths.append((path, date, truth["cars"]))
    return paths


def test_layers_appear_with_dates_and_follow_the_project(dock, project, raster_factory, qtbot):
    a, _ = raster_factory("tumangang_20220601.tif", n_cars=3, tracks=1)
    b, _ = raster_factory("scene_b.tif", n_cars=3, tracks=1,
                          metadata={"TIFFTAG_DATETIME": "2019:03:10 10:30:00"})
    c, _ = raster_factory("mystery.tif", n_cars=3, tracks=1)
    add_raster(a)
    lb = add_raster(b)
    lc = add_raster(c)
    rows = table(dock)
    assert [r[1:3] for r in rows] == [("scene_b", "2019-03-10"),
                                      ("tumangang_20220601", "2022-06-01"),
                                      ("mystery", dock_mod.NO_DATE)]
    assert rows[2][4] == dock_mod.NO_DATE        # undated clearly marked
    # Renaming to a name with a date gives the layer that date.
    lc.setName("mystery 2020_07_15")
    assert ("mystery 2020_07_15", "2020-07-15") in [r[1:3] for r in table(dock)]
    # Typing a date in the cell
    i = dock.row_index(lb.id())
    dock.table.item(i, COLS.COL_DATE).setText("05.10.2018")
    assert ("scene_b", "2018-10-05") in [r[1:3] for r in table(dock)]
    assert lb.temporalProperties().isActive()
    dock.table.item(dock.row_index(lb.id()), COLS.COL_DATE).setText("not a date")
    assert "not a date" in dock.message_label.text() and "YYYY-MM-DD" in dock.message_label.text()
    # Removing a layer removes its row.
    project.removeMapLayer(lb.id())
    assert [r[1] for r in table(dock)] == ["mystery 2020_07_15", "tumangang_20220601"]


def test_bad_input_says_what_to_do(dock, project, raster_factory, qtbot):
    qtbot.mouseClick(dock.run_button, Qt.MouseButton.LeftButton)
    assert "No raster layers" in dock.message_label.text()
    assert dock.message_label.isVisible()
    c, _ = raster_factory("mystery.tif", n_cars=3, tracks=1)
    add_raster(c)
    qtbot.mouseClick(dock.run_button, Qt.MouseButton.LeftButton)
    assert "No acquisition date for: mystery" in dock.message_label.text()
    assert "YYYY-MM-DD" in dock.message_label.text()
    assert dock.task is None
    qtbot.mouseClick(dock.message_label, Qt.MouseButton.LeftButton)     # read: hide it
    assert not dock.message_label.isVisible()


def test_run_builds_dated_layers_counts_chart_and_summary(dock, project, site, qtbot):
    layers = [add_raster(p) for p, _d, _n in site]
    qtbot.mouseClick(dock.run_button, Qt.MouseButton.LeftButton)
    assert dock.task is not None and not dock.run_button.isEnabled()
    wait_done(dock, qtbot)
    rows = table(dock)
    assert [r[2] for r in rows] == ["2021-05-01", "2022-06-01", "2023-10-05"]
    assert all(r[4] == "done" for r in rows), rows
    counts = [int(r[3]) for r in rows]
    # The panel shows what the detector finds (its accuracy is tested on its own).
    for (path, _d, _n), got in zip(site, counts):
        assert got == detector.count_railcars(path, detector.CountOptions()).count
    group = project.layerTreeRoot().findGroup("Railcar counts")
    assert group is not None
    det_layers = [c.layer() for c in group.findLayers()]
    assert sorted(l.name() for l in det_layers) == [
        "railcars 2021-05-01", "railcars 2022-06-01", "railcars 2023-10-05"]
    for l in det_layers:
        tp = l.temporalProperties()
        assert tp.isActive()
        date = l.name().split()[-1]
        assert tp.fixedTemporalRange().begin().date().toString("yyyy-MM-dd") == date
        assert l.featureCount() >= 1
    for l in layers:
        assert l.temporalProperties().isActive()
    # A corrected date reaches the detections too.
    det0 = project.mapLayer(dock.rows[layers[0].id()].det_layer_id)
    assert dock.set_date(layers[0].id(), "2021-05-02")
    assert det0.name() == "railcars 2021-05-02"
    assert {f["date"] for f in read_features(det0, qtbot)} == {"2021-05-02"}
    # ... and the layer takes its place in date order (newest on top).
    names = lambda: [c.layer().name() for c in group.findLayers()]
    assert names() == ["railcars 2023-10-05", "railcars 2022-06-01", "railcars 2021-05-02"]
    assert dock.set_date(layers[0].id(), "2024-01-01")
    assert names() == ["railcars 2024-01-01", "railcars 2023-10-05", "railcars 2022-06-01"]
    assert dock.set_date(layers[0].id(), "2021-05-01")
    assert names() == ["railcars 2023-10-05", "railcars 2022-06-01", "railcars 2021-05-01"]
    # Moving a layer in the tree must not take it out of the project (QGIS
    # drops a layer whose node leaves the tree, on its next event loop).
    qtbot.wait(50)
    assert names() == ["railcars 2023-10-05", "railcars 2022-06-01", "railcars 2021-05-01"]
    assert [r[4] for r in table(dock)] == ["done"] * 3
    det_layers = [c.layer() for c in group.findLayers()]
    # The Temporal Controller on 2022-06-01 shows that date's image and cars only.
    frame = dock_mod.day_range("2022-06-01")
    shown = sorted(l.name() for l in layers + det_layers
                   if l.temporalProperties().isVisibleInTemporalRange(frame))
    assert shown == ["railcars 2022-06-01", "yard_2022-06-01"]
    assert project.timeSettings().temporalRange().begin().date().toString(
        "yyyy-MM-dd") == "2021-05-01"
    assert dock.chart.plotted_points() == [(r[2], int(r[3])) for r in rows]
    assert dock.summary_label.text() == dock.result.summary
    assert dock.summary_label.text().startswith("2023-10-05: %d railcar" % counts[-1])
    assert dock.progress.value() == 100
    # Selecting a row zooms the map to that date's image.
    canvas = dock.iface.mapCanvas()
    dock.table.selectRow(0)
    ext = canvas.extent()
    img = layers[0].extent()
    assert ext.contains(img.center())
    assert ext.width() < img.width() * 3
    # ... and shows that date's image and detections, the other dates hidden.
    root = project.layerTreeRoot()
    assert [root.findLayer(l.id()).isVisible() for l in layers] == [True, False, False]
    assert root.findLayer(dock.rows[layers[0].id()].det_layer_id).isVisible()
    assert not root.findLayer(dock.rows[layers[2].id()].det_layer_id).isVisible()
    assert dock.chart._marker is not None
    # A click on a chart point selects that date's row (and zooms there).
    canvas = dock.chart.canvas
    canvas.draw()
    x, y = dock.chart._ax.transData.transform(
        (mdates.date2num(datetime.date(2023, 10, 5)), counts[-1]))
    ratio = canvas.devicePixelRatioF() if hasattr(canvas, "devicePixelRatioF") else 1.0
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton,
                     pos=QPoint(int(x / ratio), int(canvas.height() - y / ratio)))
    qtbot.waitUntil(lambda: dock.selected_layer_id() == layers[2].id(), timeout=2000)
    assert root.findLayer(layers[2].id()).isVisible()


def test_nothing_is_cut_off_at_the_narrowest_panel(dock, project, site, qtbot):
    """The panel's content does not scroll sideways, so at the dock's
    narrowest every tab must fit, and the chart's legend must stay inside
    the chart once it has been drawn wider."""
    for p, _d, _n in site:
        add_raster(p)
    dock.run()
    wait_done(dock, qtbot)
    scroll = dock.widget()
    dock.resize(dock.minimumWidth(), 900)
    for k in range(dock.tabs.count()):
        dock.tabs.setCurrentIndex(k)
        qtbot.wait(20)
        assert scroll.widget().width() <= scroll.viewport().width(), dock.tabs.tabText(k)
    canvas = dock.chart.canvas
    canvas.draw()
    legend = dock.chart._ax.get_legend().get_window_extent(canvas.get_renderer())
    assert legend.x1 <= dock.chart.figure.bbox.x1 + 1, (legend, dock.chart.figure.bbox)


def test_editing_a_detection_layer_changes_count_and_chart(dock, project, site, qtbot):
    for p, _d, _n in site:
        add_raster(p)
    dock.run()
    wait_done(dock, qtbot)
    row = dock.rows[[lid for lid, r in dock.rows.items() if r.date == "2023-10-05"][0]]
    det = project.mapLayer(row.det_layer_id)
    before = row.count
    assert det.startEditing()
    # a false freight car (deleting a locomotive would not change the count)
    fid = next(f.id() for f in read_features(det, qtbot) if f["type"] != "locomotive")
    det.deleteFeature(fid)
    qtbot.waitUntil(lambda: row.count == before - 1, timeout=10000)
    f = QgsFeature(det.fields())                      # a missed car drawn, no type
    g = read_features(det, qtbot)[0].geometry()
    g.translate(0, 30)
    f.setGeometry(g)
    det.addFeature(f)
    f2 = QgsFeature(det.fields())                     # a locomotive does not count
    f2.setGeometry(QgsGeometry(g))
    f2["type"] = "locomotive"
    det.addFeature(f2)
    qtbot.waitUntil(lambda: row.count == before, timeout=10000)
    assert det.commitChanges()
    f = QgsFeature(det.fields())
    assert det.startEditing()
    det.addFeature(f)
    det.commitChanges()
    qtbot.waitUntil(lambda: row.count == before + 1, timeout=10000)
    assert ("2023-10-05", before + 1) in dock.chart.plotted_points()
    assert str(before + 1) in dock.summary_label.text()


def test_cancel_stops_quickly_and_keeps_counted_layers(dock, project, raster_factory,
                                                       tmp_path, qtbot):
    small, _ = raster_factory("yard_2020-01-01.tif", n_cars=4, tracks=1)
    add_raster(small)
    # A big yard image (2400 x 2400 px, many seconds to count) counted
    # second: Cancel lands in the middle of it.
    big = str(tmp_path / "big_2021-01-01.tif")
    synthetic.generate_scene(synthetic.speed_spec(2400), big)
    big_layer = add_raster(big)
    ticks = []           # QGIS stays responsive: a 20 ms timer keeps ticking
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.time()))
    timer.start(20)
    dock.run()
    qtbot.waitUntil(lambda: dock.rows[big_layer.id()].status.startswith("counting "),
                    timeout=60000)
    qtbot.wait(1000)
    timer.stop()
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5
    t0 = time.time()
    qtbot.mouseClick(dock.cancel_button, Qt.MouseButton.LeftButton)
    wait_done(dock, qtbot, timeout=5000)
    # The task stops at the detector's next is_canceled poll (between
    # windows, up to ~1.6 s apart on this image on a 2-core machine).
    assert time.time() - t0 < 3.0
    rows = {r[1]: r for r in table(dock)}
    assert rows["yard_2020-01-01"][4] == "done" and rows["yard_2020-01-01"][3]
    assert rows["big_2021-01-01"][4] == "cancelled" and rows["big_2021-01-01"][3] == ""
    assert "Cancelled" in dock.run_label.text()
    group = project.layerTreeRoot().findGroup("Railcar counts")
    assert [c.layer().name() for c in group.findLayers()] == ["railcars 2020-01-01"]
    assert dock.run_button.isEnabled()
    # The unsaved project's detections live in a temporary folder, gone
    # with the project.
    temp_dir = os.path.dirname(group.findLayers()[0].layer().source().split("|")[0])
    assert os.path.isdir(temp_dir)
    project.clear()
    assert not os.path.exists(temp_dir)


def test_import_baseline_settings_and_exports(dock, project, site, qtbot, tmp_path):
    for p, _d, _n in site:
        add_raster(p)
    dock.run()
    wait_done(dock, qtbot)
    hist = tmp_path / "history.csv"
    hist.write_text("date,count,note\n2015-03-01,4,old report\n2016-03-01,5\n")
    assert dock.import_counts(str(hist))
    pts = dict(dock.chart.plotted_points())
    assert pts["2015-03-01"] == 4 and pts["2016-03-01"] == 5
    assert dock.result.stats.n == 4            # 2 imported + 2 earlier images
    assert "2015-2022" in dock.summary_label.text()
    bad = tmp_path / "bad.csv"
    bad.write_text("2015-03-01,4\n2016-02-30,5\n")
    assert not dock.import_counts(str(bad))
    assert "line 2" in dock.message_label.text()
    # Baseline window: last 2 years before the latest date
    dock.window_combo.setCurrentIndex(dock.window_combo.findData("last_years"))
    dock.years_spin.setValue(2)
    dock.end_edit.setDate(dock.end_edit.date().fromString("2023-10-05", "yyyy-MM-dd"))
    assert dock.result.stats.n == 1
    assert "last 2 years before 2023-10-05" in dock.stats_label.toolTip()
    assert "Baseline 2022 (1 date)" in dock.stats_label.text()
    # Exports
    out_csv = dock.export_csv(str(tmp_path / "t.csv"))
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["source"] for r in rows].count("imported") == 2
    assert rows[-1]["status"] and rows[-1]["baseline_n"] == "1"
    for ext in ("png", "svg"):
        p = dock.export_chart(str(tmp_path / ("c." + ext)))
        assert os.path.getsize(p) > 1000
    shp = dock.export_detections(str(tmp_path / "all.shp"))[0]
    lay = QgsVectorLayer(shp, "all", "ogr")
    assert lay.featureCount() == sum(int(r[3]) for r in table(dock)) + sum(
        project.mapLayer(r.det_layer_id).featureCount() - r.count for r in dock.rows.values())
    assert {f["date"] for f in lay.getFeatures()} == {"2021-05-01", "2022-06-01", "2023-10-05"}
    with pytest.raises(dock_mod.InputError, match="already exist"):
        dock.export_detections(shp)                   # never replaced unasked
    assert dock.export_detections(shp, overwrite=True) == [shp]
    written = dock.export_detections(str(tmp_path / "per_date"), per_date=True)
    assert sorted(os.path.basename(p) for p in written) == [
        "railcars_2021-05-01.shp", "railcars_2022-06-01.shp", "railcars_2023-10-05.shp"]
    gpkgs = dock.export_detections(str(tmp_path / "per_date"), per_date=True, fmt="gpkg")
    assert all(QgsVectorLayer(p, "x", "ogr").isValid() for p in gpkgs)


def test_project_save_and_reload_restores_the_panel(dock, project, site, qtbot, tmp_path):
    for p, _d, _n in site:
        add_raster(p)
    dock.sensitivity.setValue(0.65)
    dock.site_edit.setText("Tumangang")
    hist = tmp_path / "history.csv"
    hist.write_text("2015-03-01,4\n")
    dock.import_counts(str(hist))
    dock.run()
    wait_done(dock, qtbot)
    first = sorted(dock.rows, key=lambda k: dock.rows[k].date)[0]
    dock.table.item(dock.row_index(first), dock_mod.COL_INCLUDE).setCheckState(
        Qt.CheckState.Unchecked)
    assert not dock.rows[first].include
    dock.window_combo.setCurrentIndex(dock.window_combo.findData("range"))
    before_table = table(dock)
    before_summary = dock.summary_label.text()
    temp_dir = dock.detections_dir()
    assert not temp_dir.startswith(str(tmp_path))      # unsaved project: a temp folder
    qgz = str(tmp_path / "site.qgz")
    assert project.write(qgz)
    # Saving moved the detections next to the project.
    for row in dock.rows.values():
        assert project.mapLayer(row.det_layer_id).source().startswith(
            str(tmp_path / "railcar_counter" / "detections.gpkg"))
    assert not os.path.exists(temp_dir)               # and left no temporary copy behind
    project.clear()
    assert dock.table.rowCount() == 0 and dock.imported == []
    assert project.read(qgz)
    qtbot.waitUntil(lambda: dock.table.rowCount() == 3, timeout=5000)
    assert table(dock) == before_table
    assert dock.summary_label.text() == before_summary
    assert dock.sensitivity.value() == pytest.approx(0.65)
    assert dock.site_edit.text() == "Tumangang"
    assert dock.window_combo.currentData() == "range"
    assert [p.date for p in dock.imported] == ["2015-03-01"]
    # Links to detection layers survive: editing still updates the count.
    row = [r for r in dock.rows.values() if r.date == "2023-10-05"][0]
    det = project.mapLayer(row.det_layer_id)
    assert det is not None and det.isValid()
    n = row.count
    assert det.startEditing()
    det.deleteFeature(read_features(det, qtbot)[0].id())
    qtbot.waitUntil(lambda: row.count == n - 1, timeout=10000)
    det.rollBack()


def test_run_again_counts_new_images_and_keeps_edits(dock, project, site, raster_factory,
                                                     qtbot, tmp_path):
    for p, _d, _n in site[:2]:
        add_raster(p)
    dock.run()
    wait_done(dock, qtbot)
    ids = {lid: r.det_layer_id for lid, r in dock.rows.items()}
    # The analyst deletes a false car, then adds the newest image and runs.
    row = next(r for r in dock.rows.values() if r.date == "2022-06-01")
    det = project.mapLayer(row.det_layer_id)
    assert det.startEditing()
    det.deleteFeature(read_features(det, qtbot)[0].id())
    det.commitChanges()
    qtbot.waitUntil(lambda: row.status == "edited", timeout=10000)
    edited_count = row.count
    newest = add_raster(site[2][0])
    task = dock.run()
    assert [j.layer_id for j in task.params.jobs] == [newest.id()]
    wait_done(dock, qtbot)
    assert all(dock.rows[lid].det_layer_id == did for lid, did in ids.items())
    assert row.count == edited_count and dock.rows[newest.id()].status == "done"
    # The edited layer is what gets exported.
    shp = dock.export_detections(str(tmp_path / "all.shp"))[0]
    lay = QgsVectorLayer(shp, "all", "ogr")
    assert sum(1 for f in lay.getFeatures() if f["date"] == "2022-06-01") == det.featureCount()
    # Counting everything again is explicit.
    dock.run(recount=True)
    wait_done(dock, qtbot)
    assert all(dock.rows[lid].det_layer_id != did for lid, did in ids.items())
    assert project.mapLayer(ids[next(iter(ids))]) is None       # old layers replaced


def test_web_layers_and_missing_files_are_explained(dock, project, raster_factory, tmp_path,
                                                     qtbot):
    xyz = QgsRasterLayer("type=xyz&url=http://localhost:1/%7Bz%7D/%7Bx%7D/%7By%7D.png"
                         "&zmax=19&zmin=0", "OSM 2023-10-05", "wms")
    assert xyz.isValid()
    project.addMapLayer(xyz)
    (row,) = table(dock)
    assert row[0] is False and row[4] == "not a file"
    dock.set_include(xyz.id(), True)
    dock.run()
    assert "is a wms layer, not an image file" in dock.message_label.text()
    assert "GeoTIFF" in dock.message_label.text()
    project.removeMapLayer(xyz.id())
    path, _ = raster_factory("gone_2021-01-01.tif", n_cars=3, tracks=1)
    add_raster(path)
    os.remove(path)
    dock.run()
    assert "no longer exists" in dock.message_label.text()
    assert dock.task is None


def test_image_without_crs_is_explained_then_counted_with_the_crs_set(
        dock, project, raster_factory, world_file_jpeg, qtbot):
    path, truth = raster_factory("yard.tif", n_cars=6, tracks=1)
    layer = add_raster(world_file_jpeg(path), "yard 2023-10-05")
    assert not layer.crs().isValid()
    dock.run()
    wait_done(dock, qtbot)
    (row,) = table(dock)
    assert row[4] == "error"
    assert "no CRS" in dock.message_label.text()
    assert "Layer Properties" in dock.message_label.text()
    # what the analyst does: Layer Properties > Source > CRS, and run again
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:%d" % truth["epsg"]))
    dock.run()
    wait_done(dock, qtbot)
    (row,) = table(dock)
    assert row[4] == "done" and int(row[3]) > 0
    det = project.mapLayer(dock.rows[layer.id()].det_layer_id)
    assert det.crs().authid() == "EPSG:%d" % truth["epsg"]


def test_area_of_interest_and_map_extent_limit_the_count(dock, project, raster_factory,
                                                         vector_factory, iface, qtbot):
    path, truth = raster_factory("yard_2023-10-05.tif", n_cars=12, tracks=1)
    raster = add_raster(path)
    x0, y0, x1, y1 = truth["extent"]
    half = "POLYGON((%f %f, %f %f, %f %f, %f %f, %f %f))" % (
        x0, y0, (x0 + x1) / 2, y0, (x0 + x1) / 2, y1, x0, y1, x0, y0)
    aoi = QgsVectorLayer(vector_factory("aoi.gpkg", [half], truth["epsg"]), "yard outline", "ogr")
    project.addMapLayer(aoi)
    assert dock.aoi_combo.findText("yard outline") >= 0      # offered as an area
    dock.run()
    wait_done(dock, qtbot)
    whole = dock.rows[raster.id()].count
    dock.set_aoi(aoi.id())
    dock.run(recount=True)
    wait_done(dock, qtbot)
    inside = dock.rows[raster.id()].count
    assert 0 < inside < whole
    # The current map extent over the same half of the image
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(raster.crs())
    canvas.setExtent(aoi.extent())
    dock.set_aoi("extent")
    params = dock.collect_parameters()
    (wkt,) = params.jobs[0].aoi_wkt
    assert QgsGeometry.fromWkt(wkt).boundingBox().width() <= aoi.extent().width() * 1.5


def test_geopackage_image_and_a_map_view_wider_than_the_site(dock, project, raster_factory,
                                                             iface, qtbot, tmp_path):
    """An image kept as a raster table of a GeoPackage counts in the panel;
    with the map extent as the area, a view wider than the images is cut to
    them, so nothing is reported missing. A later image that covers half of
    the site is counted on its half, its row says so, and so does the
    summary: its low count may be the image, not the yard."""
    from osgeo import gdal
    path, truth = raster_factory("yard.tif", n_cars=12, tracks=2)
    gpkg = str(tmp_path / "site.gpkg")
    gdal.Translate(gpkg, path, format="GPKG", creationOptions=["RASTER_TABLE=d20220601"])
    whole = QgsRasterLayer("GPKG:%s:d20220601" % gpkg, "yard 2022-06-01", "gdal")
    assert whole.isValid()
    project.addMapLayer(whole)
    ds = gdal.Open(path)
    half = str(tmp_path / "yard_half.tif")
    gdal.Translate(half, ds, srcWin=[0, 0, ds.RasterXSize // 2, ds.RasterYSize])
    add_raster(half, "yard 2023-10-05")
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(whole.crs())
    wide = whole.extent()
    wide.grow(wide.width())                  # three times the image, all round
    canvas.setExtent(wide)
    dock.set_aoi("extent")
    dock.run()
    wait_done(dock, qtbot)
    rows = {r[1]: r for r in table(dock)}
    assert rows["yard 2022-06-01"][4] == "done" and int(rows["yard 2022-06-01"][3]) > 10
    assert rows["yard 2023-10-05"][4] == "done, 50 % covered", rows
    assert dock.run_label.text() == ("Done: 2 image(s) counted; 1 with a note in the Status "
                                     "column (hover it).")
    assert int(rows["yard 2023-10-05"][3]) < int(rows["yard 2022-06-01"][3])
    assert dock.summary_label.text().startswith("2023-10-05: ")
    assert dock.summary_label.text().endswith(
        "Only 50 % of the area of interest has image data (the rest lies outside the "
        "image or is no data): the count covers that part only.")


def test_the_same_error_on_many_images_is_said_once():
    text = dock_mod._errors_text([("a", "Disk full."), ("b", "Disk full."), ("c", "Disk full."),
                                  ("d", "Disk full."), ("e", "Bad band.")])
    assert text == ("5 images could not be counted. a, b, c and 1 more: Disk full. "
                    "e: Bad band.")


def test_soft_image_row_says_it_was_sharpened(dock, project, soft_yard, qtbot):
    path, soft_path, _ = soft_yard
    sharp = add_raster(path, "yard 2022-06-01")
    soft = add_raster(soft_path, "yard 2023-10-05")
    dock.run()
    wait_done(dock, qtbot)
    rows = {r[1]: r for r in table(dock)}
    assert rows["yard 2022-06-01"][4] == "done"
    assert rows["yard 2023-10-05"][4] == "done, sharpened"
    assert int(rows["yard 2023-10-05"][3]) > 0
    i = [r[1] for r in table(dock)].index("yard 2023-10-05")
    assert "softer than its pixel size" in dock.table.item(i, 4).toolTip()
    assert dock.rows[sharp.id()].note == "" and dock.rows[soft.id()].note


def test_tracks_layer_off_the_image_row_says_it_was_moved(dock, project, qtbot, tmp_path):
    """OpenStreetMap tracks 3.5 m off the image: the panel counts the cars
    on them all the same and its row says the lines were moved, and why."""
    import math
    from osgeo import ogr
    from shapely import affinity, wkt
    from conftest import UTM52N, write_vector
    from test_detector import YARD
    path, _ = synthetic.cached_scene(YARD, str(tmp_path))
    lines = [wkt.loads(w) for w in synthetic.load_scene_info(path)["tracks"]]
    az = math.radians(YARD.track_angle_deg)
    off = [affinity.translate(g, 3.5 * math.cos(az), -3.5 * math.sin(az)).wkt for g in lines]
    tracks = QgsVectorLayer(write_vector(tmp_path / "osm_rails.gpkg", off, UTM52N,
                                         ogr.wkbLineString), "osm rails", "ogr")
    project.addMapLayer(tracks)
    add_raster(path, "yard 2023-10-05")
    dock.tracks_combo.setCurrentIndex(dock.tracks_combo.findData(tracks.id()))
    dock.run()
    wait_done(dock, qtbot)
    (row,) = table(dock)
    assert row[4] == "done, tracks moved" and int(row[3]) > 30, row
    tip = dock.table.item(0, 4).toolTip()
    moved = re.search(r"rail tracks layer lies about ([0-9.]+) m off this image: the cars "
                      r"stand [0-9.]+ m north-west", tip)
    assert moved and abs(float(moved.group(1)) - 3.5) <= 0.5, tip
    if os.environ.get("RAILCAR_SHOT"):
        dock.grab().save(os.environ["RAILCAR_SHOT"])
