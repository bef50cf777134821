"""The plugin as QGIS loads it: classFactory, initGui, unload, reload."""
import configparser
from pathlib import Path

from qgis.core import QgsApplication

ROOT = Path(__file__).resolve().parent.parent


def _registry():
    return QgsApplication.processingRegistry()


def _raster_menu_actions(iface, title="Railcar Counter"):
    for action in iface.rasterMenu().actions():
        if action.menu() is not None and action.menu().title() == title:
            return action.menu().actions()
    return []


def test_metadata_is_complete():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version",
                "author", "email", "repository", "tracker", "icon"):
        assert general.get(key), key
    assert general["name"] == "Railcar Counter"
    assert general["hasProcessingProvider"] == "yes"
    assert (ROOT / general["icon"]).exists()
    assert "<" not in general["about"]      # no HTML in the plugin repository


def test_core_imports_without_qgis():
    """The package and its pure core load without QGIS or Qt, so scripts
    and the detector run anywhere GDAL and numpy do."""
    import subprocess
    import sys
    import railcar_counter
    code = ("import sys, railcar_counter, railcar_counter.plugin.core.detector, "
            "railcar_counter.plugin.core.dates; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    base = str(Path(railcar_counter.__path__[0]).parent)
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": base, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_init_gui_adds_button_menu_and_provider(plugin, iface):
    action = plugin.action
    assert action is not None and not action.icon().isNull()
    assert action in iface.pluginToolBar().actions()
    assert action in _raster_menu_actions(iface)
    provider = _registry().providerById("railcarcounter")
    assert provider is not None
    assert provider.name() == "Railcar Counter"
    assert not provider.icon().isNull()
    assert _registry().algorithmById("railcarcounter:countrailcars") is not None


def test_unload_removes_everything(iface):
    import railcar_counter
    instance = railcar_counter.classFactory(iface)
    instance.initGui()
    action = instance.action
    instance.unload()
    assert _registry().providerById("railcarcounter") is None
    assert _registry().algorithmById("railcarcounter:countrailcars") is None
    assert action not in iface.pluginToolBar().actions()
    assert _raster_menu_actions(iface) == []


def test_reload_without_restart(iface):
    """What Plugin Reloader and the Plugin Manager do: unload, then load a
    new instance in the same QGIS."""
    import railcar_counter
    for _ in range(3):
        instance = railcar_counter.classFactory(iface)
        instance.initGui()
        assert _registry().algorithmById("railcarcounter:countrailcars") is not None
        assert len(_raster_menu_actions(iface)) == 1
        assert iface.pluginToolBar().actions().count(instance.action) == 1
        instance.unload()
    assert _registry().providerById("railcarcounter") is None


def test_processing_only_load(processing_ready):
    """qgis_process calls initProcessing without initGui."""
    assert processing_ready.id() == "railcarcounter"
    alg = _registry().algorithmById("railcarcounter:countrailcars")
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == ["INPUT", "AOI", "TRACKS", "SENSITIVITY", "DATE", "PIXEL_SIZE",
                     "OUTPUT"]
    from qgis.core import QgsProcessingParameterDefinition
    advanced = [p.name() for p in alg.parameterDefinitions()
                if p.flags() & QgsProcessingParameterDefinition.Flag.FlagAdvanced]
    assert advanced == ["PIXEL_SIZE"]     # the dialog shows it folded away
    assert {o.name() for o in alg.outputDefinitions()} >= {"OUTPUT", "COUNT", "LOCOMOTIVES"}


def test_toolbar_button_opens_and_closes_dock(plugin, iface, qtbot):
    """The button toggles the panel, docked on the right."""
    from qgis.PyQt.QtCore import Qt
    window = iface.mainWindow()
    window.show()
    try:
        plugin.action.trigger()
        dock = plugin.dock
        assert dock is not None
        qtbot.waitUntil(dock.isVisible)
        assert plugin.action.isChecked()
        assert window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea
        plugin.action.trigger()
        qtbot.waitUntil(lambda: not dock.isVisible())
        assert not plugin.action.isChecked()
        plugin.action.trigger()
        qtbot.waitUntil(dock.isVisible)
        assert plugin.dock is dock          # built once, reused
        dock.close()                         # its own close button
        assert not plugin.action.isChecked()
    finally:
        window.hide()


def test_dock_left_open_opens_again(iface, qtbot):
    """A dock open when QGIS closed opens again at the next start."""
    import railcar_counter
    from qgis.core import QgsSettings
    from railcar_counter.plugin.plugin import DOCK_OPEN_KEY
    window = iface.mainWindow()
    window.show()
    first = railcar_counter.classFactory(iface)
    first.initGui()
    try:
        first.action.trigger()
        qtbot.waitUntil(first.dock.isVisible)
        assert QgsSettings().value(DOCK_OPEN_KEY, False, type=bool)
    finally:
        window.hide()              # QGIS closing: hides every dock
        first.unload()
    assert QgsSettings().value(DOCK_OPEN_KEY, False, type=bool)
    second = railcar_counter.classFactory(iface)
    second.initGui()
    try:
        qtbot.waitUntil(lambda: second.dock is not None)
        assert second.action.isChecked()
    finally:
        second.unload()
        QgsSettings().setValue(DOCK_OPEN_KEY, False)
