"""The dock's chart: core/series_chart.py drawn in a Qt canvas."""
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

# backend_qtagg (matplotlib >= 3.5) follows whichever Qt binding is loaded,
# PyQt5 in QGIS 3 and PyQt6 in QGIS 4; older matplotlib only has qt5agg.
try:
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg as FigureCanvas
except ImportError:  # pragma: no cover - matplotlib < 3.5
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg as FigureCanvas
from matplotlib.figure import Figure

from ..core import series_chart


class SeriesChart(QWidget):
    """Counts per date against the baseline. Emits ``dateClicked(iso)`` when
    the analyst clicks a point."""
    dateClicked = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.figure = Figure(figsize=(4.0, 2.8), dpi=100)
        self.canvas = FigureCanvas(self.figure)
        self.canvas.setParent(self)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(200)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._picks = {}
        self._ax = None
        self._marker = None
        self._highlighted = ""
        self.result = None
        self.band = "minmax"
        self.canvas.mpl_connect("pick_event", self._on_pick)
        self.canvas.mpl_connect("resize_event", lambda _e: self._on_resize())

    def plot(self, result, band=None):
        self.result = result
        if band:
            self.band = band
        self._marker = None
        if result is None:
            self.figure.clear()
            self._picks = {}
            self._ax = None
        else:
            self._ax, self._picks = series_chart.draw(self.figure, result, self.band)
            if self._highlighted:
                self.highlight(self._highlighted, redraw=False)
        self.canvas.draw_idle()

    def highlight(self, date, redraw=True):
        """Mark the date selected in the table with a vertical line."""
        import datetime
        self._highlighted = date
        if self._marker is not None:
            try:
                self._marker.remove()
            except ValueError:
                pass
            self._marker = None
        if date and self._ax is not None and any(
                date in dates for dates in self._picks.values()):
            self._marker = self._ax.axvline(datetime.date.fromisoformat(date),
                                            color="#444444", lw=0.8, ls="-", alpha=0.6,
                                            zorder=0)
        if redraw:
            self.canvas.draw_idle()

    def plotted_points(self):
        """[(date, count)] drawn as points, for checks and tests."""
        out = []
        for art, dates in self._picks.items():
            for d, (_x, y) in zip(dates, art.get_offsets()):
                out.append((d, int(round(float(y)))))
        return sorted(out)

    def save(self, path):
        """PNG or SVG (from the suffix) at print size, not the dock's size."""
        if self.result is not None:
            series_chart.save(self.result, path, self.band)

    def _on_resize(self):
        """Drawn again: the legend takes as many columns as the width holds
        (before the first plot the figure is empty)."""
        if self.result is None:
            return
        try:
            self.plot(self.result)
        except ValueError:     # too small to lay out while the dock is resized
            pass

    def _on_pick(self, event):
        dates = self._picks.get(event.artist)
        if dates and len(event.ind):
            self.dateClicked.emit(dates[int(event.ind[0])])
