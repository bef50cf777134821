"""The plugin object QGIS creates through classFactory: registers the
Processing provider and adds the toolbar button and Raster menu entry that
open the dock."""
from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .qgis_layers import ICON_PATH

MENU = "Railcar Counter"
# Whether the analyst left the dock open: it opens again with QGIS.
DOCK_OPEN_KEY = "railcar_counter/dock_open"


class RailcarCounterPlugin:

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.action = None
        self.dock = None

    # Processing --------------------------------------------------------
    def initProcessing(self):  # noqa: N802 - called by QGIS
        """Also called alone by qgis_process, without initGui."""
        if self.provider is None:
            from .processing.provider import RailcarCounterProvider
            self.provider = RailcarCounterProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # GUI ---------------------------------------------------------------
    def initGui(self):  # noqa: N802 - called by QGIS
        self.initProcessing()
        self.action = QAction(QIcon(ICON_PATH), "Railcar Counter", self.iface.mainWindow())
        self.action.setObjectName("railcarCounterAction")
        self.action.setToolTip("Railcar Counter: count railcars on the images of a site")
        self.action.setCheckable(True)
        self.action.triggered.connect(self.toggle_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        if QgsSettings().value(DOCK_OPEN_KEY, False, type=bool):
            # After QGIS has finished building its window.
            QTimer.singleShot(0, self._reopen_dock)

    def _reopen_dock(self):
        if self.action is not None and self.dock is None:
            self.toggle_dock(True)

    def toggle_dock(self, checked=None):
        """Show or hide the dock (the action is checkable: ``checked`` says
        which); the dock is built on first use so loading QGIS stays fast."""
        if self.dock is None:
            from .gui.dock import RailcarCounterDock
            self.dock = RailcarCounterDock(self.iface, parent=self.iface.mainWindow())
            self.dock.setObjectName("RailcarCounterDock")  # lets QGIS remember its place
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._dock_visibility_changed)
            show = True
        else:
            show = self.dock.isHidden() if checked is None else bool(checked)
        self.dock.setVisible(show)
        if show:
            self.dock.raise_()
        if self.action is not None:
            self.action.setChecked(show)

    def _dock_visibility_changed(self, visible):
        # Closed with its own button, or tabbed behind another dock.
        if self.action is not None:
            self.action.setChecked(bool(visible))
        # Remember what the analyst chose, not the hiding of every dock when
        # QGIS closes its window.
        window = self.iface.mainWindow()
        if window is not None and window.isVisible():
            QgsSettings().setValue(DOCK_OPEN_KEY, bool(visible))

    def unload(self):
        if self.dock is not None:
            self.dock.unload()     # cancels a running count, drops project signals
            try:
                self.dock.visibilityChanged.disconnect(self._dock_visibility_changed)
            except (TypeError, RuntimeError):
                pass
            self.dock.close()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
