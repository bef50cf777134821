"""The analyst's panel: count a site's images across dates and chart them
against the baseline.

The dock stays thin: it collects what the analyst chose into one
RunParameters, starts a CountTask, and shows what comes back. Every number
comes from core/baseline.py; layers are written with plugin/qgis_layers.py.
"""
import datetime
import json
import os
import shutil
import tempfile

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDateTimeRange,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QDate, QDateTime, QSize, QTime, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSizePolicy,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import qgis_layers
from ..core import baseline as bl
from ..core import dates as core_dates
from ..core.errors import InputError
from ..core.raster import raster_source_exists
from .chart import SeriesChart
from .task import CountTask, Job, RunParameters

SCOPE = "RailcarCounter"         # project entry scope
STATE_KEY = "state"
STATE_VERSION = 1

COL_INCLUDE, COL_NAME, COL_DATE, COL_COUNT, COL_STATUS = range(5)
HEADERS = ("", "Layer", "Date", "Cars", "Status")

NO_DATE = "no date: type one"
STATUS_COLOURS = {                # background of the summary label
    "unprecedented": "#fde0dd",
    "low": "#e7d4e8",
    "high": "#fff2cc",
    "normal": "#e5f5e0",
}


MESSAGE_STYLE_WARNING = ("QLabel { color: #8a1c00; background: #fff4e5; border: 1px solid "
                         "#f0b37e; border-radius: 3px; padding: 3px; }")
MESSAGE_STYLE_INFO = ("QLabel { color: #1d4d1d; background: #eef6ee; border: 1px solid "
                      "#a9cfa9; border-radius: 3px; padding: 3px; }")


class RowState:
    """What the dock knows about one raster layer of the project."""

    def __init__(self, layer_id, include=True, date="", date_from="", count=None,
                 status="", det_layer_id="", error="", note="", caveat=""):
        self.layer_id = layer_id
        self.include = include
        self.date = date
        self.date_from = date_from      # typed / temporal / name / file / ""
        self.count = count
        self.status = status
        self.det_layer_id = det_layer_id
        self.error = error
        self.note = note                # how the image was counted (e.g. sharpened)
        self.caveat = caveat            # what its count means (e.g. half the area imaged)

    def to_dict(self):
        return {k: getattr(self, k) for k in ("include", "date", "date_from", "count",
                                              "status", "det_layer_id", "error", "note",
                                              "caveat")}

    @classmethod
    def from_dict(cls, layer_id, d):
        row = cls(layer_id)
        for k, v in (d or {}).items():
            if hasattr(row, k):
                setattr(row, k, v)
        return row


def day_range(iso):
    """The acquisition day as a QgsDateTimeRange [00:00, next day 00:00)."""
    day = datetime.date.fromisoformat(iso)
    nxt = day + datetime.timedelta(days=1)
    begin = QDateTime(QDate(day.year, day.month, day.day), QTime(0, 0, 0))
    end = QDateTime(QDate(nxt.year, nxt.month, nxt.day), QTime(0, 0, 0))
    return QgsDateTimeRange(begin, end, True, False)


def count_freight(layer):
    """Freight cars on a detection layer as it is now (edit buffer included):
    everything but locomotives; a drawn car with no type counts as a car.
    None when the layer could not be read whole: a GeoPackage that QGIS is
    reopening for editing while the map draws it reads as empty for a moment."""
    idx = layer.fields().indexOf("type")
    n = total = 0
    for f in layer.getFeatures():
        total += 1
        value = f.attributes()[idx] if idx >= 0 else None
        if value is None or str(value).strip().lower() != "locomotive":
            n += 1
    expected = layer.featureCount()
    return None if 0 <= total < expected else n


REREAD_LIMIT = 100


class RailcarCounterDock(QgsDockWidget):
    # Asks for a recount after an edit; queued, so a layer signal sent from
    # any thread lands in the dock's own thread and event loop.
    recountRequested = pyqtSignal()

    def __init__(self, iface, parent=None):
        super().__init__(parent)
        self.iface = iface
        # Several signals fire per edit: one recount once they settle.
        self._recount_timer = QTimer(self)
        self._recount_timer.setSingleShot(True)
        self._recount_timer.setInterval(0)
        self._recount_timer.timeout.connect(self.recount)
        self.recountRequested.connect(self._recount_timer.start,
                                      Qt.ConnectionType.QueuedConnection)
        # A layer that could not be read is read again a little later, for
        # up to REREAD_LIMIT tries, 30 s (6 s were allowed until 0.3.8, and
        # on a loaded machine a count once stayed stale after an edit).
        self._reread_timer = QTimer(self)
        self._reread_timer.setSingleShot(True)
        self._reread_timer.setInterval(300)
        self._reread_timer.timeout.connect(self.recount)
        self._rereads = 0
        self.setObjectName("RailcarCounterDock")   # QGIS remembers its place by this
        self.setWindowTitle("Railcar Counter")
        self.project = QgsProject.instance()
        self.rows = {}                 # raster layer id -> RowState
        self.imported = []             # [bl.Point] from CSV
        self.result = None             # bl.Result shown now
        self.task = None
        self._det_to_raster = {}       # detection layer id -> raster layer id
        self._connected_layers = set()
        self._updating = False
        self._restoring = False
        self._detections_dir = ""
        self._build_ui()
        self._connect_project()
        self._load_state()

    # ------------------------------------------------------------------ UI
    def _build_ui(self):
        root = QWidget(self)
        v = QVBoxLayout(root)
        v.setContentsMargins(4, 4, 4, 4)
        v.setSpacing(4)

        self.summary_label = QLabel("No counts yet: add dated images and press Run.")
        self.summary_label.setObjectName("summary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._style_summary("")
        v.addWidget(self.summary_label)

        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setVisible(False)
        self.message_label.setToolTip("Click to hide")
        self.message_label.mousePressEvent = lambda _event: self.clear_message()
        v.addWidget(self.message_label)

        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed
                                   | QAbstractItemView.EditTrigger.SelectedClicked)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_INCLUDE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_DATE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_COUNT, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.ResizeToContents)
        # Long image names keep their start and their date visible.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setMinimumHeight(6 * self.table.verticalHeader().defaultSectionSize())
        self.table.setToolTip("Tick the images to count. Double-click a date to type "
                              "one (YYYY-MM-DD). Select a row to show and zoom to that "
                              "date's image and detections.")
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._on_selection)

        self.chart = SeriesChart()
        self.chart.dateClicked.connect(self.select_date)
        self.stats_label = QLabel("")
        self.stats_label.setWordWrap(True)
        self.stats_label.setStyleSheet("QLabel { color: #333333; }")
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        chart_box = QWidget()
        cv = QVBoxLayout(chart_box)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.setSpacing(2)
        cv.addWidget(self.chart, 1)
        cv.addWidget(self.stats_label)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(chart_box)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        chart_box.setMinimumHeight(260)
        self.splitter.setChildrenCollapsible(False)
        v.addWidget(self.splitter, 1)

        # Run row
        run_row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Count railcars on every ticked image, in the background.")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("%p %")
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)
        v.addLayout(run_row)
        self.run_label = QLabel("")
        self.run_label.setStyleSheet("QLabel { color: #555555; }")
        self.run_label.setWordWrap(True)
        v.addWidget(self.run_label)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_count_tab(), "Count")
        self.tabs.addTab(self._build_baseline_tab(), "Baseline")
        self.tabs.addTab(self._build_export_tab(), "Export")
        self.tabs.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        v.addWidget(self.tabs)
        # Scrolls rather than squeezes when the dock is short (1366 x 768).
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(root)
        root.setMinimumHeight(620)
        self.setWidget(scroll)
        # Never narrower than its content: the content does not scroll sideways.
        self.setMinimumWidth(max(320, root.minimumSizeHint().width()
                                 + scroll.verticalScrollBar().sizeHint().width() + 2))

    def _build_count_tab(self):
        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(4, 4, 4, 4)
        self.site_edit = QLineEdit("Railcar counts")
        self.site_edit.setToolTip("Name of the site: the layer-tree group of the "
                                  "detection layers and the chart title.")
        self.site_edit.editingFinished.connect(self._on_settings_changed)
        self.aoi_combo = QComboBox()
        self.aoi_combo.setToolTip("Only cars inside this area count.")
        self.tracks_combo = QComboBox()
        self.tracks_combo.setToolTip("Rail lines (e.g. from OpenStreetMap) that "
                                     "constrain detection. Without one the tracks "
                                     "are found automatically.")
        self.sensitivity = QDoubleSpinBox()
        self.sensitivity.setRange(0.0, 1.0)
        self.sensitivity.setSingleStep(0.05)
        self.sensitivity.setDecimals(2)
        self.sensitivity.setValue(0.5)
        self.sensitivity.setToolTip("0 = strict (fewer false cars), 1 = finds more "
                                    "(risks more). Same as the Processing algorithm.")
        for combo in (self.aoi_combo, self.tracks_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
            combo.currentIndexChanged.connect(self._on_settings_changed)
        self.sensitivity.valueChanged.connect(self._on_settings_changed)
        f.addRow("Site", self.site_edit)
        f.addRow("Area", self.aoi_combo)
        f.addRow("Tracks", self.tracks_combo)
        f.addRow("Sensitivity", self.sensitivity)
        self._fill_layer_combos()
        return w

    def _build_baseline_tab(self):
        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(4, 4, 4, 4)
        # In a narrow dock the two dates go under their label.
        f.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.window_combo = QComboBox()
        self.window_combo.addItem("Every date before the latest", "before_latest")
        self.window_combo.addItem("Last N years before a date", "last_years")
        self.window_combo.addItem("Date range", "range")
        self.years_spin = QSpinBox()
        self.years_spin.setRange(1, 50)
        self.years_spin.setValue(5)
        self.years_spin.setSuffix(" years")
        self.start_edit = QDateEdit()
        self.end_edit = QDateEdit()
        for e in (self.start_edit, self.end_edit):
            e.setCalendarPopup(True)
            e.setDisplayFormat("yyyy-MM-dd")
            e.setDate(QDate.currentDate())
        self.start_edit.setDate(QDate.currentDate().addYears(-5))
        self.end_edit.setToolTip("End of the window (last N years: the date itself is "
                                 "not in the window).")
        self.band_combo = QComboBox()
        self.band_combo.addItem("min\u2013max", "minmax")
        self.band_combo.addItem("mean \u00b1 std", "std")
        dates_row = QHBoxLayout()
        dates_row.addWidget(self.start_edit)
        dates_row.addWidget(QLabel("to"))
        dates_row.addWidget(self.end_edit)
        self.import_button = QPushButton("Import counts\u2026")
        self.import_button.setToolTip("Historical counts from a CSV file with lines "
                                      "'date,count[,note]'. They join the baseline.")
        self.import_button.clicked.connect(self._import_dialog)
        self.clear_import_button = QPushButton("Clear imported")
        self.clear_import_button.clicked.connect(self.clear_imported)
        imp_row = QHBoxLayout()
        imp_row.addWidget(self.import_button)
        imp_row.addWidget(self.clear_import_button)
        f.addRow("Window", self.window_combo)
        f.addRow("Years", self.years_spin)
        f.addRow("From", dates_row)
        f.addRow("Band", self.band_combo)
        f.addRow(imp_row)
        for sig in (self.window_combo.currentIndexChanged, self.years_spin.valueChanged,
                    self.start_edit.dateChanged, self.end_edit.dateChanged,
                    self.band_combo.currentIndexChanged):
            sig.connect(self._on_baseline_changed)
        self._enable_window_widgets()
        return w

    def _build_export_tab(self):
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(4, 4, 4, 4)
        chart_btn = QToolButton()
        chart_btn.setText("Chart")
        chart_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        m = QMenu(chart_btn)
        m.addAction("Save chart as PNG\u2026", lambda: self._export_chart_dialog("png"))
        m.addAction("Save chart as SVG\u2026", lambda: self._export_chart_dialog("svg"))
        chart_btn.setMenu(m)
        csv_btn = QPushButton("Table CSV\u2026")
        csv_btn.clicked.connect(self._export_csv_dialog)
        det_btn = QToolButton()
        det_btn.setText("Detections")
        det_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        m2 = QMenu(det_btn)
        m2.addAction("All dates in one file\u2026", lambda: self._export_detections_dialog(False))
        m2.addAction("One file per date\u2026", lambda: self._export_detections_dialog(True))
        det_btn.setMenu(m2)
        for b in (chart_btn, csv_btn, det_btn):
            h.addWidget(b)
        h.addStretch(1)
        self._export_menus = (m, m2)
        return w

    def _style_summary(self, status):
        bg = STATUS_COLOURS.get(status, "#f0f0f0")
        self.summary_label.setStyleSheet(
            "QLabel#summary { font-weight: bold; font-size: 11pt; background: %s;"
            " border: 1px solid #c8c8c8; border-radius: 3px; padding: 4px; }" % bg)

    def showEvent(self, event):  # noqa: N802 - Qt
        super().showEvent(event)
        # QGIS docks open at their minimum width; widen once to a readable
        # 400 px (later the analyst's own width is kept).
        window = self.parentWidget()
        if not getattr(self, "_widened", False) and isinstance(window, QMainWindow) \
                and not self.isFloating() and self.width() < 400:
            self._widened = True
            window.resizeDocks([self], [400], Qt.Orientation.Horizontal)

    def sizeHint(self):  # noqa: N802 - Qt
        # QGIS opens a new dock at its size hint: wide enough for the table
        # and a readable chart on a 1366 x 768 screen.
        return QSize(400, 650)

    # ------------------------------------------------------------ messages
    def show_message(self, text, level=Qgis.MessageLevel.Warning):
        """Shown in the dock (always) and in QGIS's message bar (when there
        is one): what is wrong and what to do."""
        self.message_label.setText(text)
        self.message_label.setStyleSheet(
            MESSAGE_STYLE_INFO if level == Qgis.MessageLevel.Info else MESSAGE_STYLE_WARNING)
        self.message_label.setVisible(bool(text))
        if text and self.iface is not None and level != Qgis.MessageLevel.Info:
            try:
                self.iface.messageBar().pushMessage("Railcar Counter", text, level, 8)
            except Exception:
                pass

    def clear_message(self):
        self.message_label.setText("")
        self.message_label.setVisible(False)

    # -------------------------------------------------------- project sync
    def _connect_project(self):
        p = self.project
        p.layersAdded.connect(self._on_layers_added)
        p.layersWillBeRemoved.connect(self._on_layers_removed)
        p.writeProject.connect(self._on_write_project)
        p.readProject.connect(self._on_read_project)
        p.cleared.connect(self._on_project_cleared)
        # QGIS clears the project while it quits; a dock still listening then
        # touches widgets already gone (and QGIS crashes) when unload was skipped.
        QgsApplication.instance().aboutToQuit.connect(self.unload)

    def _disconnect_project(self):
        p = self.project
        for sig, slot in ((p.layersAdded, self._on_layers_added),
                          (p.layersWillBeRemoved, self._on_layers_removed),
                          (p.writeProject, self._on_write_project),
                          (p.readProject, self._on_read_project),
                          (p.cleared, self._on_project_cleared),

                          (QgsApplication.instance().aboutToQuit, self.unload)):
            try:
                sig.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        for lid in list(self._connected_layers):
            layer = p.mapLayer(lid)
            if layer is not None:
                self._disconnect_layer(layer)
        self._connected_layers.clear()

    def unload(self):
        """Called by the plugin on unload: stop work, let go of signals."""
        if self.task is not None:
            try:
                self.task.cancel()
            except RuntimeError:
                pass
        self._disconnect_project()

    def _raster_layers(self):
        return [l for l in self.project.mapLayers().values()
                if isinstance(l, QgsRasterLayer)]

    def _det_layer(self, row):
        if row.det_layer_id:
            layer = self.project.mapLayer(row.det_layer_id)
            if isinstance(layer, QgsVectorLayer):
                return layer
        return None

    def _on_layers_added(self, layers):
        if self._restoring:
            return
        changed = False
        for layer in layers:
            if isinstance(layer, QgsRasterLayer) and layer.id() not in self.rows:
                self.rows[layer.id()] = self._new_row(layer)
                self._connect_layer(layer)
                changed = True
        self._fill_layer_combos()
        if changed:
            self.refresh()

    def _on_layers_removed(self, layer_ids):
        changed = False
        for lid in layer_ids:
            if lid in self.rows:
                del self.rows[lid]
                changed = True
            if lid in self._det_to_raster:
                rid = self._det_to_raster.pop(lid)
                row = self.rows.get(rid)
                if row is not None and row.det_layer_id == lid:
                    # Detections removed by the analyst: the count goes with them.
                    row.det_layer_id = ""
                    row.count = None
                    row.status = "detections removed"
                changed = True
            self._connected_layers.discard(lid)
        QTimer.singleShot(0, self._fill_layer_combos)
        if changed:
            self.refresh()

    def _connect_layer(self, layer):
        if layer.id() in self._connected_layers:
            return
        layer.nameChanged.connect(self._on_layer_renamed)
        self._connected_layers.add(layer.id())

    def _disconnect_layer(self, layer):
        try:
            layer.nameChanged.disconnect(self._on_layer_renamed)
        except (TypeError, RuntimeError):
            pass

    def _on_layer_renamed(self):
        layer = self.sender()
        row = self.rows.get(layer.id()) if layer is not None else None
        if row is not None and row.date_from in ("", "name"):
            # The date may have come from (or be in) the new name.
            row.date, row.date_from = self._find_date(layer)
        self._fill_layer_combos()
        self.refresh()

    def _find_date(self, layer):
        """(iso, where it came from): temporal properties the analyst set,
        then the layer name, then the file name and its metadata."""
        tp = layer.temporalProperties()
        if tp is not None and tp.isActive():
            try:
                mode = tp.mode()
                if mode == Qgis.RasterTemporalMode.FixedTemporalRange:
                    begin = tp.fixedTemporalRange().begin()
                    if begin.isValid():
                        return begin.date().toString("yyyy-MM-dd"), "temporal"
            except AttributeError:
                pass
        iso = core_dates.date_from_text(layer.name())
        if iso:
            return iso, "name"
        if layer.providerType() == "gdal":
            iso = core_dates.raster_date(layer.source())
            if iso:
                return iso, "file"
        return "", ""

    def _new_row(self, layer):
        date, date_from = self._find_date(layer)
        row = RowState(layer.id(), include=True, date=date, date_from=date_from)
        if layer.providerType() != "gdal":
            row.include = False
            row.status = "not a file"
        return row

    def _sync_rows(self):
        """Rows for every raster in the project, none for removed ones."""
        present = {l.id(): l for l in self._raster_layers()}
        for lid in list(self.rows):
            if lid not in present:
                del self.rows[lid]
        for lid, layer in present.items():
            if lid not in self.rows:
                self.rows[lid] = self._new_row(layer)
            self._connect_layer(layer)

    # ----------------------------------------------------------- the table
    def _sorted_rows(self):
        def key(row):
            layer = self.project.mapLayer(row.layer_id)
            return (row.date == "", row.date, layer.name() if layer else "")
        return sorted(self.rows.values(), key=key)

    def refresh(self):
        """Table, baseline, chart and summary from the current state."""
        self._updating = True
        try:
            selected = self.selected_layer_id()
            rows = self._sorted_rows()
            self.table.setRowCount(len(rows))
            for i, row in enumerate(rows):
                layer = self.project.mapLayer(row.layer_id)
                name = layer.name() if layer else row.layer_id
                inc = QTableWidgetItem()
                inc.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled
                             | Qt.ItemFlag.ItemIsSelectable)
                inc.setCheckState(Qt.CheckState.Checked if row.include
                                  else Qt.CheckState.Unchecked)
                inc.setData(Qt.ItemDataRole.UserRole, row.layer_id)
                inc.setToolTip("Count this image")
                name_item = QTableWidgetItem(name)
                name_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                name_item.setToolTip(layer.source() if layer else "")
                date_item = QTableWidgetItem(row.date or NO_DATE)
                date_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                                   | Qt.ItemFlag.ItemIsEditable)
                if not row.date:
                    date_item.setForeground(Qt.GlobalColor.darkRed)
                    date_item.setToolTip("No acquisition date found in the name, the "
                                         "file or its metadata. Double-click and type "
                                         "YYYY-MM-DD.")
                else:
                    date_item.setToolTip("Date from %s. Double-click to change it." % {
                        "typed": "what you typed", "temporal": "the layer's temporal "
                        "properties", "name": "the layer name", "file": "the file name "
                        "or metadata"}.get(row.date_from, "the layer"))
                count_item = QTableWidgetItem("" if row.count is None else str(row.count))
                count_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                count_item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight
                                                | Qt.AlignmentFlag.AlignVCenter))
                det = self._det_layer(row)
                if det is not None:
                    locos = det.featureCount() - (row.count or 0)
                    count_item.setToolTip("%s freight car(s)%s; locomotives are not "
                                          "counted." % (row.count, ", %d locomotive(s)"
                                                        % locos if locos > 0 else ""))
                status_item = QTableWidgetItem(row.status or ("" if row.date else NO_DATE))
                status_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                status_item.setToolTip(row.error or row.note or row.status)
                if row.error:
                    status_item.setForeground(Qt.GlobalColor.darkRed)
                for col, item in enumerate((inc, name_item, date_item, count_item, status_item)):
                    self.table.setItem(i, col, item)
            if selected:
                self._select_row_of(selected, zoom=False)
        finally:
            self._updating = False
        self._update_baseline()

    def row_index(self, layer_id):
        for i in range(self.table.rowCount()):
            item = self.table.item(i, COL_INCLUDE)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == layer_id:
                return i
        return -1

    def selected_layer_id(self):
        items = self.table.selectedItems()
        if not items:
            return ""
        item = self.table.item(items[0].row(), COL_INCLUDE)
        return item.data(Qt.ItemDataRole.UserRole) if item else ""

    def _on_item_changed(self, item):
        if self._updating:
            return
        lid = self.table.item(item.row(), COL_INCLUDE).data(Qt.ItemDataRole.UserRole)
        row = self.rows.get(lid)
        if row is None:
            return
        if item.column() == COL_INCLUDE:
            row.include = item.checkState() == Qt.CheckState.Checked
            self._mark_dirty()
            self.refresh()
        elif item.column() == COL_DATE:
            self.set_date(lid, item.text())

    def set_date(self, layer_id, text):
        """The analyst typed a date for a layer ('' clears it)."""
        row = self.rows.get(layer_id)
        if row is None:
            return False
        text = (text or "").strip()
        if text in ("", NO_DATE):
            row.date, row.date_from = "", ""
            self.refresh()
            return True
        iso = core_dates.date_from_text(text)
        if not iso:
            self.show_message("'%s' is not a date. Type it as YYYY-MM-DD, for example "
                              "2023-10-05." % text)
            self.refresh()
            return False
        self.clear_message()
        row.date, row.date_from = iso, "typed"
        layer = self.project.mapLayer(layer_id)
        if layer is not None:
            self._set_raster_temporal(layer, iso)
        det = self._det_layer(row)
        if det is not None:
            self._set_vector_temporal(det, iso)
            det.setName("railcars %s" % iso)
            _set_date_field(det, iso)
            self._move_to_date_position(det)
        self._mark_dirty()
        self.refresh()
        return True

    def set_include(self, layer_id, include):
        row = self.rows.get(layer_id)
        if row is not None:
            row.include = bool(include)
            self.refresh()

    # ----------------------------------------------------- combos/settings
    def _fill_layer_combos(self):
        try:
            self.aoi_combo
        except AttributeError:
            return
        for combo, first, geom in (
                (self.aoi_combo, ["Whole image", "Current map extent"],
                 QgsWkbTypes.GeometryType.PolygonGeometry),
                (self.tracks_combo, ["Find tracks automatically"],
                 QgsWkbTypes.GeometryType.LineGeometry)):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for i, text in enumerate(first):
                combo.addItem(text, "__%d" % i)
            for layer in sorted(self.project.mapLayers().values(), key=lambda l: l.name()):
                if isinstance(layer, QgsVectorLayer) and layer.geometryType() == geom \
                        and layer.id() not in self._det_to_raster:
                    combo.addItem(layer.name(), layer.id())
            idx = combo.findData(current) if current is not None else -1
            combo.setCurrentIndex(max(idx, 0))
            combo.blockSignals(False)

    def set_aoi(self, key):
        """'' / 'extent' / a polygon layer id."""
        data = {"": "__0", "extent": "__1"}.get(key, key)
        self.aoi_combo.setCurrentIndex(max(0, self.aoi_combo.findData(data)))

    def set_tracks(self, layer_id):
        self.tracks_combo.setCurrentIndex(max(0, self.tracks_combo.findData(layer_id or "__0")))

    def _on_settings_changed(self, *args):
        self._mark_dirty()

    def _enable_window_widgets(self):
        mode = self.window_combo.currentData()
        self.years_spin.setEnabled(mode == "last_years")
        self.start_edit.setEnabled(mode == "range")
        self.end_edit.setEnabled(mode in ("range", "last_years"))

    def window(self):
        mode = self.window_combo.currentData()
        w = bl.Window(mode=mode, years=self.years_spin.value())
        if mode in ("range", "last_years"):
            w.end = self.end_edit.date().toString("yyyy-MM-dd")
        if mode == "range":
            w.start = self.start_edit.date().toString("yyyy-MM-dd")
        return w

    def set_window(self, window):
        self.window_combo.blockSignals(True)
        self.window_combo.setCurrentIndex(max(0, self.window_combo.findData(window.mode)))
        self.window_combo.blockSignals(False)
        self.years_spin.setValue(int(window.years))
        if window.start:
            self.start_edit.setDate(QDate.fromString(window.start, "yyyy-MM-dd"))
        if window.end:
            self.end_edit.setDate(QDate.fromString(window.end, "yyyy-MM-dd"))
        self._on_baseline_changed()

    def _on_baseline_changed(self, *args):
        self._enable_window_widgets()
        self._mark_dirty()
        self._update_baseline()

    def _mark_dirty(self):
        if not self._restoring:
            self.project.setDirty(True)

    # ------------------------------------------------------------ baseline
    def points(self):
        pts = []
        for row in self.rows.values():
            if row.include and row.date and row.count is not None:
                layer = self.project.mapLayer(row.layer_id)
                pts.append(bl.Point(row.date, int(row.count), bl.IMAGERY,
                                    note=row.caveat, label=layer.name() if layer else ""))
        return pts + list(self.imported)

    def _update_baseline(self):
        try:
            self.result = bl.compute(self.points(), self.window())
        except InputError as exc:
            self.show_message(str(exc))
            return
        res = self.result
        self.summary_label.setText(res.summary)
        self._style_summary(res.latest.status if res.latest else "")
        if res.window.mode == "before_latest" and res.latest is not None:
            # The greyed dates show what "before the latest" means now, and
            # are sensible starting values when the analyst picks a window.
            for edit, iso in ((self.start_edit, res.stats.first or res.latest.date),
                              (self.end_edit, res.latest.date)):
                edit.blockSignals(True)
                edit.setDate(QDate.fromString(iso, "yyyy-MM-dd"))
                edit.blockSignals(False)
        s = res.stats
        lines = []
        if s.n:
            lines.append("Baseline %s (%d date%s): mean %.1f \u00b7 median %s \u00b7 "
                         "min %s \u00b7 max %s \u00b7 std %.1f \u00b7 MAD %s" % (
                             s.years_text(), s.n, "" if s.n == 1 else "s", s.mean,
                             bl._num(s.median), bl._num(s.min), bl._num(s.max), s.std,
                             bl._num(s.mad)))
        else:
            lines.append("Baseline: no dates in the window yet.")
        latest = res.latest
        if latest is not None and latest.score is not None and not latest.in_baseline:
            lines.append("Latest: %s \u00d7 max \u00b7 %s \u00d7 mean \u00b7 robust score "
                         "%.1f" % (bl.ratio_text(latest.ratio_max), bl.ratio_text(latest.ratio_mean),
                                    latest.score if abs(latest.score) >= 0.05 else 0.0))
        self.stats_label.setText("\n".join(lines))
        self.stats_label.setToolTip(
            "Baseline window: %s.\nRobust score: distance from the baseline median in "
            "MADs (x1.4826).\nA date breaks the baseline above the maximum with a score "
            "of 3.5 or more, or below the minimum with -3.5 or less." % res.window.describe())
        self.chart.plot(res, self.band_combo.currentData())

    # ------------------------------------------------------------ imported
    def import_counts(self, path):
        try:
            pts = bl.read_counts_csv(path)
        except InputError as exc:
            self.show_message(str(exc))
            return False
        known = {p.date: i for i, p in enumerate(self.imported)}
        for p in pts:      # a second file replaces counts of the same dates
            if p.date in known:
                self.imported[known[p.date]] = p
            else:
                self.imported.append(p)
        self.clear_message()
        self.show_message("Imported %d historical count(s) from %s." % (
            len(pts), os.path.basename(path)), Qgis.MessageLevel.Info)
        self._mark_dirty()
        self._update_baseline()
        return True

    def clear_imported(self):
        self.imported = []
        self._mark_dirty()
        self._update_baseline()

    def _import_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import historical counts", "",
                                              "CSV (*.csv *.txt);;All files (*)")
        if path:
            self.import_counts(path)

    # ----------------------------------------------------------------- run
    def collect_parameters(self):
        """RunParameters for the included layers, or raise InputError saying
        what to fix."""
        self._sync_rows()
        included = [r for r in self._sorted_rows() if r.include]
        if not self._raster_layers():
            raise InputError("No raster layers in the project. Add the site's images "
                             "(Layer > Add Layer > Add Raster Layer) and press Run.")
        if not included:
            raise InputError("No image is ticked. Tick the images to count in the "
                             "first column of the table.")
        undated = [r for r in included if not r.date]
        if undated:
            names = ", ".join(self.project.mapLayer(r.layer_id).name() for r in undated)
            raise InputError("No acquisition date for: %s. Double-click the Date cell "
                             "and type it as YYYY-MM-DD, or untick the layer." % names)
        aoi_key = self.aoi_combo.currentData()
        aoi_layer = None
        if aoi_key not in (None, "__0", "__1"):
            aoi_layer = self.project.mapLayer(aoi_key)
            if aoi_layer is None:
                raise InputError("The area-of-interest layer is gone. Choose another "
                                 "area.")
        tracks_key = self.tracks_combo.currentData()
        tracks_layer = None
        if tracks_key not in (None, "__0"):
            tracks_layer = self.project.mapLayer(tracks_key)
        view = self._site_view(included) if aoi_key == "__1" and self.iface else None
        jobs = []
        for row in included:
            layer = self.project.mapLayer(row.layer_id)
            try:
                path = qgis_layers.raster_file_path(layer)
            except InputError as exc:
                row.status, row.error = "not a file", str(exc)
                raise
            if not raster_source_exists(path):
                row.status = "file missing"
                row.error = ("The file %s no longer exists. Fix the layer's source or "
                             "untick it." % path)
                raise InputError(row.error)
            crs = layer.crs()
            if aoi_key == "__1":
                aoi = [self._view_wkt(view, crs)] if view is not None else []
            else:
                aoi = qgis_layers.layer_wkts(aoi_layer, crs,
                                             geometry_type=QgsWkbTypes.GeometryType.PolygonGeometry,
                                             what="area of interest")
                if aoi_layer is not None and not aoi:
                    raise InputError("The area-of-interest layer '%s' has no polygons. "
                                     "Draw the yard's outline or choose 'Whole image'."
                                     % aoi_layer.name())
            tracks = qgis_layers.layer_wkts(tracks_layer, crs,
                                            geometry_type=QgsWkbTypes.GeometryType.LineGeometry,
                                            what="tracks")
            jobs.append(Job(row.layer_id, layer.name(), path, row.date, aoi, tracks,
                            qgis_layers.raster_crs_wkt(layer)))
        return RunParameters(jobs, float(self.sensitivity.value()),
                             self.site_edit.text().strip() or "Railcar counts")

    def _site_view(self, rows):
        """The map extent as the area of interest (canvas CRS), cut to where
        the ticked images lie: a view wider than the site is not the site,
        and an image that covers less of it than the others is then
        reported (coverage)."""
        canvas = self.iface.mapCanvas()
        dest = canvas.mapSettings().destinationCrs()
        site = QgsRectangle()
        for r in rows:
            layer = self.project.mapLayer(r.layer_id)
            site.combineExtentWith(self._rect_in(layer.extent(), layer.crs(), dest))
        view = canvas.extent().intersect(site) if not site.isEmpty() else canvas.extent()
        return view if not view.isEmpty() else canvas.extent()   # off the images: said later

    def _view_wkt(self, view, crs):
        """``view`` (canvas CRS) as WKT in ``crs``."""
        dest = self.iface.mapCanvas().mapSettings().destinationCrs()
        return QgsGeometry.fromRect(self._rect_in(view, dest, crs)).asWkt()

    def _rect_in(self, rect, src, dest):
        """``rect`` in ``src`` as the rectangle that holds it in ``dest``."""
        if src == dest:
            return rect
        return QgsCoordinateTransform(src, dest, self.project).transformBoundingBox(rect)

    def is_running(self):
        return self.task is not None

    def run(self, recount=None):
        """Start counting in the background. Returns the task or None.

        Images already counted keep their detections (and the analyst's
        edits) unless ``recount``: None (the Run button) counts the new
        images, or asks before counting everything again when all are
        counted; True counts all; False only the new ones."""
        if self.task is not None:
            return None
        self.clear_message()
        try:
            params = self.collect_parameters()
        except InputError as exc:
            self.show_message(str(exc))
            self.refresh()
            return None
        new = [j for j in params.jobs if self._det_layer(self.rows[j.layer_id]) is None]
        if recount is None and not new:
            edited = sum(1 for j in params.jobs
                         if self.rows[j.layer_id].status == "edited")
            recount = self._ask(
                "All %d ticked images are counted. Count them again with the current "
                "settings? This replaces their detection layers%s." % (
                    len(params.jobs), ", including your edits to %d of them" % edited
                    if edited else ""))
            if not recount:
                return None
        if not recount:
            params.jobs = new
            if not new:
                self.show_message("Every ticked image is already counted.", Qgis.MessageLevel.Info)
                return None
        for job in params.jobs:
            row = self.rows[job.layer_id]
            row.status, row.error, row.note, row.caveat = "waiting", "", "", ""
        self.refresh()
        task = CountTask(params, self._task_finished)
        task.layerStarted.connect(self._on_layer_started)
        task.layerProgress.connect(self._on_layer_progress)
        task.layerFinished.connect(self._on_layer_finished)
        task.progressChanged.connect(self._on_progress)
        self.task = task
        self._task_total = len(params.jobs)
        self._task_done = 0
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.run_label.setText("Counting %d image(s)\u2026" % len(params.jobs))
        QgsApplication.taskManager().addTask(task)
        return task

    def _ask(self, question):
        answer = QMessageBox.question(self, "Railcar Counter", question)
        return answer == QMessageBox.StandardButton.Yes

    def cancel(self):
        if self.task is not None:
            self.run_label.setText("Cancelling\u2026")
            self.cancel_button.setEnabled(False)
            self.task.cancel()

    def _set_status(self, layer_id, text):
        row = self.rows.get(layer_id)
        if row is None:
            return
        row.status = text
        i = self.row_index(layer_id)
        if i >= 0:
            self._updating = True
            self.table.item(i, COL_STATUS).setText(text)
            self._updating = False

    def _on_layer_started(self, layer_id):
        layer = self.project.mapLayer(layer_id)
        self._set_status(layer_id, "counting")
        self.run_label.setText("Counting %d of %d: %s" % (
            self._task_done + 1, self._task_total, layer.name() if layer else ""))

    def _on_layer_progress(self, layer_id, percent):
        self._set_status(layer_id, "counting %d %%" % int(percent))

    def _on_layer_finished(self, layer_id):
        self._task_done += 1
        self._set_status(layer_id, "counted")

    def _on_progress(self, value):
        self.progress.setValue(int(value))

    def _task_finished(self, task, ok):
        """Main thread: build a detection layer for every finished image,
        also after a Cancel (those counted keep their results)."""
        errors = []
        built = 0
        for outcome in task.outcomes:
            row = self.rows.get(outcome.job.layer_id)
            if row is None:          # raster removed while counting
                continue
            if outcome.error:
                row.status, row.error, row.count = "error", outcome.error, None
                errors.append((outcome.job.name, outcome.error))
                continue
            try:
                self._add_detection_layer(row, outcome.job, outcome.result,
                                          task.params.site)
                built += 1
            except InputError as exc:
                row.status, row.error = "error", str(exc)
                errors.append((outcome.job.name, str(exc)))
        finished_ids = {o.job.layer_id for o in task.outcomes}
        for job in task.params.jobs:
            row = self.rows.get(job.layer_id)
            if row is not None and job.layer_id not in finished_ids:
                row.status = "cancelled" if task.canceled_by_user else "not counted"
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if task.canceled_by_user:
            self.run_label.setText("Cancelled: %d of %d image(s) counted and kept."
                                   % (built, len(task.params.jobs)))
        else:
            self.progress.setValue(100)
            noted = sum(1 for o in task.outcomes if not o.error and o.result is not None
                        and o.result.notes)
            self.run_label.setText("Done: %d image(s) counted%s." % (
                built, "; %d with a note in the Status column (hover it)" % noted
                if noted else ""))
        self._set_project_time_range()
        self._mark_dirty()
        self.refresh()
        if errors:
            self.show_message(_errors_text(errors))

    # ------------------------------------------------------ result layers
    def detections_dir(self):
        """Where detection layers are written: next to the project when it
        has been saved (so they travel with it), else a temporary folder."""
        home = self.project.absolutePath()
        if home:
            return os.path.join(home, "railcar_counter")
        if not self._detections_dir:
            self._detections_dir = tempfile.mkdtemp(prefix="railcar_counter_")
        return self._detections_dir

    def _move_detections_next_to_project(self, *args):
        """Counted before the project had a file: when it is saved, copy the
        detection layers from the temporary folder next to the project and
        point the layers there, so they travel with it. QGIS emits
        writeProject before it writes the layers' sources, so the new
        sources are the ones saved."""
        home = self.project.absolutePath()
        temp = self._detections_dir
        if not home or not temp:
            return
        folder = os.path.join(home, "railcar_counter")
        left = []
        for row in self.rows.values():
            layer = self._det_layer(row)
            if layer is None or not layer.source().startswith(temp):
                continue
            if layer.isEditable():
                left.append(layer.name())
                continue
            os.makedirs(folder, exist_ok=True)
            table = layer.source().split("layername=")[-1]
            dest = os.path.join(folder, "detections.gpkg")
            opts = QgsVectorFileWriter.SaveVectorOptions()
            opts.driverName = "GPKG"
            opts.layerName = table
            opts.actionOnExistingFile = (
                QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
                if os.path.exists(dest) else
                QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile)
            err = QgsVectorFileWriter.writeAsVectorFormatV3(
                layer, dest, self.project.transformContext(), opts)
            if err[0] != QgsVectorFileWriter.WriterError.NoError:
                left.append(layer.name())
                continue
            layer.setDataSource("%s|layername=%s" % (dest, table), layer.name(), "ogr")
        if left:
            self.show_message(
                "Detections of %s stay in %s: save your edits (toggle editing off) and "
                "save the project again to keep them with the project."
                % (", ".join(left), temp))
        else:
            self._drop_temporary_detections()

    def _drop_temporary_detections(self):
        """Delete the temporary folder of an unsaved project's detections
        once no layer of the project reads from it any more."""
        if self._detections_dir:
            shutil.rmtree(self._detections_dir, ignore_errors=True)
        self._detections_dir = ""

    def _site_group(self, site):
        root = self.project.layerTreeRoot()
        group = root.findGroup(site)
        if group is None:
            group = root.insertGroup(0, site)
        return group

    def _add_detection_layer(self, row, job, result, site):
        raster = self.project.mapLayer(row.layer_id)
        old = self._det_layer(row)
        if old is not None:
            self._det_to_raster.pop(old.id(), None)
            self.project.removeMapLayer(old.id())
        for d in result.detections:
            d.date = row.date
            d.source = job.name
        crs = raster.crs() if raster is not None else QgsCoordinateReferenceSystem.fromWkt(
            result.crs_wkt)
        mem = qgis_layers.detections_memory_layer(result.detections, crs,
                                                  "railcars %s" % row.date)
        folder = self.detections_dir()
        os.makedirs(folder, exist_ok=True)
        gpkg = os.path.join(folder, "detections.gpkg")
        table = "railcars_%s_%s" % (row.date.replace("-", ""), _safe(row.layer_id)[-12:])
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "GPKG"
        opts.layerName = table
        opts.fileEncoding = "UTF-8"
        opts.actionOnExistingFile = (
            QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
            if os.path.exists(gpkg) else
            QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile)
        err = QgsVectorFileWriter.writeAsVectorFormatV3(
            mem, gpkg, self.project.transformContext(), opts)
        if err[0] != QgsVectorFileWriter.WriterError.NoError:
            raise InputError("Could not write the detections to %s (%s). Check that the "
                             "folder is writable." % (gpkg, err[1]))
        layer = QgsVectorLayer("%s|layername=%s" % (gpkg, table), "railcars %s" % row.date,
                               "ogr")
        if not layer.isValid():
            raise InputError("Could not open the detections written to %s." % gpkg)
        qgis_layers.apply_detection_style(layer)
        self._set_vector_temporal(layer, row.date)
        if raster is not None:
            self._set_raster_temporal(raster, row.date)
        self.project.addMapLayer(layer, False)
        group = self._site_group(site)
        group.insertLayer(self._date_position(group, row.date, layer.id()), layer)
        row.det_layer_id = layer.id()
        n = count_freight(layer)
        row.count = n if n is not None else result.count
        row.status = ", ".join(
            ["done"] + (["sharpened"] if result.sharpened else [])
            + (["tracks moved"] if result.track_note else [])
            + (["%d %% covered" % int(100 * result.coverage)] if result.coverage_note else []))
        row.error = ""
        row.note = result.notes
        row.caveat = result.coverage_note
        self._watch_detection_layer(layer, row.layer_id)
        return layer

    def _date_position(self, group, date, layer_id):
        """Where a detection layer of ``date`` goes in its site group: newest
        date on top, like the Temporal Controller's last frame."""
        pos = 0
        for child in group.children():
            child_id = getattr(child, "layerId", lambda: "")()
            if child_id == layer_id:
                continue
            other = self._det_to_raster.get(child_id)
            other_row = self.rows.get(other) if other else None
            if other_row is not None and other_row.date > date:
                pos += 1
        return pos

    def _move_to_date_position(self, layer):
        """After a date was retyped, put the layer back in date order."""
        node = self.project.layerTreeRoot().findLayer(layer.id())
        group = node.parent() if node is not None else None
        if group is None:
            return
        pos = self._date_position(group, self.rows[self._det_to_raster[layer.id()]].date,
                                  layer.id())
        index = group.children().index(node)
        if index == pos:
            return
        # The clone goes in before the node comes out: QGIS takes a layer out
        # of the project once no node of the tree shows it.
        group.insertChildNode(pos if pos < index else pos + 1, node.clone())
        group.removeChildNode(node)

    def _watch_detection_layer(self, layer, raster_id):
        self._det_to_raster[layer.id()] = raster_id
        for sig in (layer.featureAdded, layer.featuresDeleted, layer.afterCommitChanges,
                    layer.afterRollBack, layer.attributeValueChanged, layer.dataChanged):
            sig.connect(self._schedule_recount)

    def _schedule_recount(self, *args):
        self.recountRequested.emit()

    def recount(self):
        """Counts from the detection layers as they are now (edits included)."""
        changed = unread = False
        for row in self.rows.values():
            layer = self._det_layer(row)
            if layer is not None:
                n = count_freight(layer)
                if n is None:
                    unread = True
                elif n != row.count:
                    row.count = n
                    row.status = "edited"
                    changed = True
        self._rereads = self._rereads + 1 if unread else 0
        if unread and self._rereads <= REREAD_LIMIT:
            self._reread_timer.start()
        if changed:
            self.refresh()

    @staticmethod
    def _set_vector_temporal(layer, iso):
        tp = layer.temporalProperties()
        tp.setMode(Qgis.VectorTemporalMode.FixedTemporalRange)
        tp.setFixedTemporalRange(day_range(iso))
        tp.setIsActive(True)

    @staticmethod
    def _set_raster_temporal(layer, iso):
        tp = layer.temporalProperties()
        tp.setMode(Qgis.RasterTemporalMode.FixedTemporalRange)
        tp.setFixedTemporalRange(day_range(iso))
        tp.setIsActive(True)

    def _set_project_time_range(self):
        dates = sorted(r.date for r in self.rows.values() if r.date and r.det_layer_id)
        if not dates:
            return
        rng = QgsDateTimeRange(day_range(dates[0]).begin(), day_range(dates[-1]).end())
        self.project.timeSettings().setTemporalRange(rng)

    # ------------------------------------------------------------ navigate
    def select_date(self, iso):
        """Select the row of that date (chart click) and zoom to it."""
        for row in self._sorted_rows():
            if row.date == iso:
                self._select_row_of(row.layer_id, zoom=True)
                return True
        return False

    def _select_row_of(self, layer_id, zoom=True):
        i = self.row_index(layer_id)
        if i < 0:
            return
        if not zoom:
            self.table.blockSignals(True)
        self.table.selectRow(i)
        if not zoom:
            self.table.blockSignals(False)

    def _on_selection(self):
        if self._updating:
            return
        lid = self.selected_layer_id()
        row = self.rows.get(lid)
        self.chart.highlight(row.date if row is not None else "")
        if lid:
            self.zoom_to(lid)

    def zoom_extent(self, layer_id, dest_crs):
        """The image's extent joined with its detections', in ``dest_crs``."""
        row = self.rows.get(layer_id)
        rect = QgsRectangle()
        rect.setMinimal()
        layers = [self.project.mapLayer(layer_id)]
        if row is not None:
            layers.append(self._det_layer(row))
        for layer in layers:
            if layer is None or layer.extent().isEmpty():
                continue
            ext = layer.extent()
            if layer.crs() != dest_crs and dest_crs.isValid():
                ext = QgsCoordinateTransform(layer.crs(), dest_crs,
                                             self.project).transformBoundingBox(ext)
            rect.combineExtentWith(ext)
        return rect

    def show_only_date(self, layer_id):
        """Make the chosen date's image and detections the visible ones
        among the table's layers, so zooming to a date shows that date (the
        Temporal Controller does this itself when it is on)."""
        root = self.project.layerTreeRoot()
        chosen = self.rows.get(layer_id)
        for row in self.rows.values():
            visible = chosen is not None and row.date == chosen.date
            for lid in (row.layer_id, row.det_layer_id):
                node = root.findLayer(lid) if lid else None
                if node is not None:
                    node.setItemVisibilityChecked(visible)

    def zoom_to(self, layer_id):
        if self.iface is None:
            return
        self.show_only_date(layer_id)
        canvas = self.iface.mapCanvas()
        rect = self.zoom_extent(layer_id, canvas.mapSettings().destinationCrs())
        if rect.isEmpty():
            return
        canvas.setExtent(rect)
        canvas.refresh()

    # -------------------------------------------------------------- export
    def export_csv(self, path):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(bl.to_csv(self.result or bl.compute([])))
        return path

    def export_chart(self, path):
        from ..core import series_chart
        series_chart.save(self.result or bl.compute([]), path,
                          self.band_combo.currentData(), self.site_edit.text())
        return path

    def detection_layers(self):
        """[(date, layer)] sorted by date."""
        out = []
        for row in self._sorted_rows():
            layer = self._det_layer(row)
            if layer is not None and row.include:
                out.append((row.date, layer))
        return out

    def export_targets(self, path, per_date=False, fmt="shp"):
        """[(file, [(date, layer)])] that export_detections would write."""
        layers = self.detection_layers()
        if not layers:
            raise InputError("No detections to export yet. Run the count first.")
        if per_date:
            return [(os.path.join(path, "railcars_%s.%s" % (date, fmt)), [(date, layer)])
                    for date, layer in layers]
        return [(path, layers)]

    def export_detections(self, path, per_date=False, fmt="shp", overwrite=False):
        """Write the detection layers as they are now (the analyst's edits
        included): all dates into the file ``path`` (.shp or .gpkg, with a
        date field), or with ``per_date`` one ``fmt`` file per date into the
        folder ``path``. Returns the files written. Existing files are
        replaced only with ``overwrite`` (after the analyst agreed)."""
        targets = self.export_targets(path, per_date, fmt)
        existing = [out for out, _g in targets if os.path.exists(out)]
        if existing and not overwrite:
            raise InputError("%s already exist(s). Choose another name or folder."
                             % ", ".join(existing))
        if per_date:
            os.makedirs(path, exist_ok=True)
        written = []
        for out, _group in targets:
            _remove_vector(out)
        for out, group in targets:
            mem = self._merged_layer(group)
            opts = QgsVectorFileWriter.SaveVectorOptions()
            opts.driverName = "GPKG" if out.lower().endswith(".gpkg") else "ESRI Shapefile"
            opts.fileEncoding = "UTF-8"
            opts.layerName = os.path.splitext(os.path.basename(out))[0]
            err = QgsVectorFileWriter.writeAsVectorFormatV3(
                mem, out, self.project.transformContext(), opts)
            if err[0] != QgsVectorFileWriter.WriterError.NoError:
                raise InputError("Could not write %s (%s). Choose a writable folder."
                                 % (out, err[1]))
            written.append(out)
        return written

    def _merged_layer(self, group):
        crs = group[0][1].crs()
        mem = QgsVectorLayer("Polygon", "railcars", "memory")
        mem.setCrs(crs)
        mem.dataProvider().addAttributes(qgis_layers.detection_fields().toList())
        mem.updateFields()
        fields = mem.fields()
        feats = []
        for date, layer in group:
            tr = None
            if layer.crs() != crs:
                tr = QgsCoordinateTransform(layer.crs(), crs, self.project)
            for f in layer.getFeatures():
                g = QgsGeometry(f.geometry())
                if tr is not None:
                    g.transform(tr)
                nf = QgsFeature(fields)
                nf.setGeometry(g)
                for name in fields.names():
                    idx = layer.fields().indexOf(name)
                    if idx >= 0:
                        nf[name] = f.attributes()[idx]
                nf["date"] = date    # a drawn car has no date of its own
                if not nf["type"]:
                    nf["type"] = "unknown"
                feats.append(nf)
        mem.dataProvider().addFeatures(feats)
        mem.updateExtents()
        return mem

    def _ask_overwrite(self, paths):
        existing = [p for p in paths if os.path.exists(p)]
        if not existing:
            return True
        answer = QMessageBox.question(
            self, "Railcar Counter", "%s already exist(s). Replace?" % ", ".join(existing))
        return answer == QMessageBox.StandardButton.Yes

    def _export_chart_dialog(self, fmt):
        path, _ = QFileDialog.getSaveFileName(self, "Save chart", "railcar_chart.%s" % fmt,
                                              "%s (*.%s)" % (fmt.upper(), fmt))
        if path:
            if not path.lower().endswith("." + fmt):
                path += "." + fmt
            self.export_chart(path)

    def _export_csv_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save table", "railcar_counts.csv",
                                              "CSV (*.csv)")
        if path:
            if not path.lower().endswith(".csv"):
                path += ".csv"
            self.export_csv(path)

    def _export_detections_dialog(self, per_date):
        try:
            if per_date:
                folder = QFileDialog.getExistingDirectory(self, "Folder for one file per date")
                if not folder:
                    return
                fmt, ok = _choose_format(self)
                if not ok:
                    return
                outs = [out for out, _g in self.export_targets(folder, True, fmt)]
                if not self._ask_overwrite(outs):
                    return
                written = self.export_detections(folder, per_date=True, fmt=fmt,
                                                 overwrite=True)
            else:
                path, chosen = QFileDialog.getSaveFileName(
                    self, "Save detections", "railcars.gpkg",
                    "GeoPackage (*.gpkg);;ESRI Shapefile (*.shp)")
                if not path:
                    return
                if os.path.splitext(path)[1].lower() not in (".gpkg", ".shp"):
                    path += ".shp" if "shp" in chosen else ".gpkg"
                # The file dialog has already asked before replacing.
                written = self.export_detections(path, overwrite=True)
            self.show_message("Wrote %s." % ", ".join(written), Qgis.MessageLevel.Info)
        except InputError as exc:
            self.show_message(str(exc))

    # --------------------------------------------------------------- state
    def state(self):
        return {
            "version": STATE_VERSION,
            "site": self.site_edit.text(),
            "sensitivity": self.sensitivity.value(),
            "aoi": self.aoi_combo.currentData(),
            "tracks": self.tracks_combo.currentData(),
            "window": bl.window_to_dict(self.window()),
            "band": self.band_combo.currentData(),
            "rows": {lid: r.to_dict() for lid, r in self.rows.items()},
            "imported": [{"date": p.date, "count": p.count, "note": p.note}
                         for p in self.imported],
        }

    def apply_state(self, state):
        self._restoring = True
        try:
            self.rows = {}
            self._det_to_raster = {}
            self.imported = []
            state = state or {}
            self.site_edit.setText(state.get("site") or "Railcar counts")
            self.sensitivity.setValue(float(state.get("sensitivity", 0.5)))
            self.imported = [bl.Point(d["date"], int(d["count"]), bl.IMPORTED,
                                      d.get("note", ""))
                             for d in state.get("imported", [])]
            for lid, d in (state.get("rows") or {}).items():
                layer = self.project.mapLayer(lid)
                if isinstance(layer, QgsRasterLayer):
                    self.rows[lid] = RowState.from_dict(lid, d)
                    det = self._det_layer(self.rows[lid])
                    if det is not None:
                        self._watch_detection_layer(det, lid)
                        n = count_freight(det)
                        if n is not None:
                            self.rows[lid].count = n
                    elif self.rows[lid].det_layer_id:
                        self.rows[lid].det_layer_id = ""
                        self.rows[lid].count = None
                        self.rows[lid].status = "detections missing"
            self._sync_rows()
            self._fill_layer_combos()
            aoi = state.get("aoi")
            if aoi:
                self.aoi_combo.setCurrentIndex(max(0, self.aoi_combo.findData(aoi)))
            tracks = state.get("tracks")
            if tracks:
                self.tracks_combo.setCurrentIndex(max(0, self.tracks_combo.findData(tracks)))
            band = state.get("band")
            if band:
                self.band_combo.setCurrentIndex(max(0, self.band_combo.findData(band)))
            self.set_window(bl.window_from_dict(state.get("window")))
        finally:
            self._restoring = False
        self.refresh()

    def _load_state(self):
        text, ok = self.project.readEntry(SCOPE, STATE_KEY, "")
        state = None
        if ok and text:
            try:
                state = json.loads(text)
            except ValueError:
                state = None
        self.apply_state(state)

    def _on_write_project(self, *args):
        self._move_detections_next_to_project()
        # Stored as one JSON entry: plain to read and to diff in the .qgs.
        self.project.writeEntry(SCOPE, STATE_KEY, json.dumps(self.state()))

    def _on_read_project(self, *args):
        self._load_state()

    def _on_project_cleared(self):
        if self.task is not None:
            self.task.cancel()
        self._drop_temporary_detections()
        self.apply_state(None)


def _set_date_field(layer, iso):
    """Write a corrected date into every detection of ``layer`` (saved at
    once, or into the edit buffer when the analyst is editing)."""
    idx = layer.fields().indexOf("date")
    if idx < 0:
        return
    if layer.isEditable():
        for f in layer.getFeatures():
            layer.changeAttributeValue(f.id(), idx, iso)
    else:
        layer.dataProvider().changeAttributeValues(
            {f.id(): {idx: iso} for f in layer.getFeatures()})
        layer.reload()


def _errors_text(errors):
    """One short message for [(image name, error)]: the same error is said
    once with the images it hit (the table's tooltips hold each one)."""
    by_message = {}
    for name, message in errors:
        by_message.setdefault(message, []).append(name)
    parts = []
    for message, names in by_message.items():
        shown = ", ".join(names[:3]) + (" and %d more" % (len(names) - 3)
                                        if len(names) > 3 else "")
        parts.append("%s: %s" % (shown, message))
    return "%d image%s could not be counted. %s" % (
        len(errors), "" if len(errors) == 1 else "s", " ".join(parts))


def _safe(text):
    return "".join(c if c.isalnum() else "_" for c in text)


def _remove_vector(path):
    """Remove a vector file and a shapefile's sidecars (after the analyst
    agreed to replace it)."""
    base, ext = os.path.splitext(path)
    exts = [".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx"] \
        if ext.lower() == ".shp" else [ext]
    for e in exts:
        if os.path.exists(base + e):
            os.remove(base + e)


def _choose_format(parent):
    box = QMessageBox(parent)
    box.setWindowTitle("Railcar Counter")
    box.setText("File format for the detections?")
    gpkg = box.addButton("GeoPackage", QMessageBox.ButtonRole.AcceptRole)
    shp = box.addButton("Shapefile", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if clicked is gpkg:
        return "gpkg", True
    if clicked is shp:
        return "shp", True
    return "", False
