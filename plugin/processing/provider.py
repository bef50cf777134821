"""The "Railcar Counter" group of the Processing toolbox."""
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..qgis_layers import ICON_PATH
from .count_railcars import CountRailcarsAlgorithm
from .count_series import CountSeriesAlgorithm


def _algorithms():
    """Every algorithm of the provider. To add one, import it above and list
    it here."""
    return [
        CountRailcarsAlgorithm(),
        CountSeriesAlgorithm(),
    ]


class RailcarCounterProvider(QgsProcessingProvider):

    def id(self):
        return "railcarcounter"

    def name(self):
        return "Railcar Counter"

    def longName(self):
        return "Railcar Counter: count railcars on satellite and aerial images"

    def icon(self):
        return QIcon(ICON_PATH)

    def svgIconPath(self):
        return ICON_PATH

    def loadAlgorithms(self):
        for alg in _algorithms():
            self.addAlgorithm(alg)
