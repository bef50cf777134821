"""Railcar Counter: a QGIS plugin that counts railcars on satellite and aerial
images and charts the counts of a site against its history.

This file is what QGIS loads. It must not import QGIS at import time, so the
pure code under plugin/core can be used (and tested) without it.
"""


def classFactory(iface):  # noqa: N802 - name fixed by QGIS
    """Called by QGIS to create the plugin."""
    from .plugin.plugin import RailcarCounterPlugin
    return RailcarCounterPlugin(iface)
